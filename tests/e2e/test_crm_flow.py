"""The CRM data flow end to end through the local host: sync, re-sync, a stage change,
malformed records, and duplicate deliveries (issue acceptance)."""

from __future__ import annotations

from collections import Counter

import pytest

from core import containers
from core.messaging import topology
from core.models import crm_events
from core.ports import Filter
from samples.demo.generate import generate
from tests.e2e.conftest import wait_for
from tests.e2e.crm_support import (
    INTEGRATION,
    TENANT,
    CrmWorld,
    check_sync_resync_and_a_stage_change,
    read_ndjson,
    write_ndjson,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def world(tmp_path, start_host):
    source = tmp_path / "source"
    generate(source)
    world = CrmWorld(tmp_path / "data", source)
    world.create_integration()
    world.host = start_host(env={"LOCAL_CONCURRENCY": "2"}, data_dir=world.data_dir)
    world.observe()
    yield world
    world.close()


def _types(events) -> Counter[str]:
    return Counter(event.type for event in events)


def test_sync_resync_and_a_stage_change(world):
    assert len(read_ndjson(world.source_dir / "Opportunity.ndjson")) >= 2000
    assert len(read_ndjson(world.source_dir / "Account.ndjson")) >= 500
    assert len(read_ndjson(world.source_dir / "Contact.ndjson")) >= 3000
    check_sync_resync_and_a_stage_change(world)


def test_malformed_records_are_quarantined_and_the_sync_is_partial(tmp_path, start_host):
    source = tmp_path / "source"
    generate(source)
    opportunities = read_ndjson(source / "Opportunity.ndjson")
    broken = {}
    for index in range(0, len(opportunities), 100):
        record = opportunities[index]
        if index % 300 == 0:
            record["CloseDate"] = "not-a-date"
            broken[record["Id"]] = "closeDate"
        elif index % 300 == 100:
            record["Amount"] = "lots"
            broken[record["Id"]] = "amount"
        else:
            record.pop("Name")
            broken[record["Id"]] = "name"
    write_ndjson(source / "Opportunity.ndjson", opportunities)
    world = CrmWorld(tmp_path / "data", source)
    world.create_integration()
    start_host(env={"LOCAL_CONCURRENCY": "2"}, data_dir=world.data_dir)
    world.observe()
    execution = world.sync()
    counters = execution.counters
    assert execution.status == "partial"
    assert counters.failed == len(broken) == len(opportunities) // 100
    assert counters.processed == counters.total
    assert (
        counters.processed
        == counters.created + counters.updated + counters.unchanged + counters.failed
    )
    quarantined = world.store.query(
        containers.QUARANTINE.name, partition_key=TENANT, limit=1000
    ).items
    assert {q["externalId"]: q for q in quarantined}.keys() == broken.keys()
    for entry in quarantined:
        fields = {error["field"] for error in entry["fieldErrors"]}
        assert broken[entry["externalId"]] in fields, entry
        assert entry["rawData"]["Id"] == entry["externalId"]
    world.close()


def test_duplicate_deliveries_of_a_raw_event_have_one_effect(tmp_path, start_host):
    source = tmp_path / "source"
    generate(source, opportunities=3, accounts=2, contacts=3, leads=1)
    world = CrmWorld(tmp_path / "data", source)
    world.create_integration()
    start_host(env={"LOCAL_CONCURRENCY": "4"}, data_dir=world.data_dir)
    world.observe()
    record = read_ndjson(source / "Opportunity.ndjson")[0]
    payload = crm_events.DataRaw(
        integration_id=INTEGRATION,
        tenant_id=TENANT,
        entity_type="Opportunity",
        raw_data=record,
        external_id=record["Id"],
        sync_task_id=None,
        idempotency_key=f"{INTEGRATION}-{record['Id']}-webhook-1",
        correlation_id="webhook-1",
    )
    event = crm_events.make_event(crm_events.DATA_RAW, payload, source="test")
    messages = [event.to_message(message_id=f"delivery-{n}") for n in range(3)]
    world.bus.send(topology.INTEGRATION_DATA_RAW, messages)
    wait_for(
        lambda: (
            world.bus.depth(topology.INTEGRATION_DATA_RAW).active == 0
            and world.bus.depth(topology.INTEGRATION_DATA_RAW).locked == 0
        )
    )
    shards = world.store.query(
        containers.SHARDS.name,
        partition_key=TENANT,
        filters=[Filter("externalId", "==", record["Id"])],
    ).items
    assert len(shards) == 1
    world.wait_for_events(crm_events.OPPORTUNITY_CREATED, 1)
    world.drain_events()
    seen = _types(world.events)
    assert seen[crm_events.OPPORTUNITY_CREATED] == 1
    assert seen[crm_events.SHARD_CREATED] == 1
    assert seen[crm_events.DATA_MAPPED] == 1
    world.close()
