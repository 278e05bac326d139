"""The CRM processor's rules, in process: outcomes, replay after a crash, duplicates,
permanent failures, and the consumer's backoff."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core import containers
from core.adapters.local.sqlite_bus import SqliteBus
from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.errors import TransientError
from core.integrations.repository import IntegrationConfigCache, IntegrationRepository
from core.messaging import topology
from core.messaging.consumer import ATTEMPT_PROPERTY, InboundMessage, consume
from core.messaging.topology import TOPOLOGY, SubscriptionSpec, TopicSpec, subscription_path
from core.models import crm_events
from core.models.events import decode_envelope
from core.models.integration import ConnectionConfig, SyncConfig, TenantIntegration
from core.models.shards import deterministic_shard_id
from core.processing.crm import CrmMappingProcessor
from core.providers.registry import default_custom_transforms, default_entity_mappings

TENANT = "t1"
INTEGRATION = "crm"
NOW = datetime(2025, 7, 1, 12, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW


class FlakyBus:
    """Delegates to a real bus; fails the next `fail_sends` sends like a broker outage."""

    def __init__(self, bus: SqliteBus) -> None:
        self.bus = bus
        self.fail_sends = 0

    def send(self, entity: str, messages: Any) -> None:
        if self.fail_sends:
            self.fail_sends -= 1
            raise TransientError("broker unavailable", resource=entity)
        self.bus.send(entity, messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)


@pytest.fixture
def world(tmp_path: Path):
    store = SqliteDocumentStore(tmp_path / "store.sqlite")
    bus = SqliteBus(tmp_path / "bus.sqlite")
    for topic in TOPOLOGY.topics:
        bus.create_topic(TopicSpec(topic.name, (*topic.subscriptions, SubscriptionSpec("all"))))
    IntegrationRepository(store).create(
        TenantIntegration(
            id=INTEGRATION,
            tenant_id=TENANT,
            integration_type_id="files",
            name="crm",
            connection=ConnectionConfig(auth_type="custom", settings={"path": str(tmp_path)}),
            sync_config=SyncConfig(entity_mappings=default_entity_mappings("files")),
            custom_transforms=default_custom_transforms("files"),
        )
    )
    flaky = FlakyBus(bus)
    processor = CrmMappingProcessor(
        store, flaky, FixedClock(), IntegrationConfigCache(IntegrationRepository(store))
    )
    yield store, flaky, processor
    bus.close()


def opportunity(**overrides: Any) -> dict[str, Any]:
    record = {
        "attributes": {"type": "Opportunity"},
        "Id": "0065g00000AAAAAAA1",
        "Name": "Acme - Expansion",
        "AccountId": "0015g00000AAAAAAA1",
        "StageName": "Qualification",
        "Amount": 50000,
        "Probability": 20,
        "CloseDate": "2025-09-30",
        "CreatedDate": "2025-05-01T10:00:00.000+0000",
        "LastModifiedDate": "2025-06-01T10:00:00.000+0000",
        "OpportunityContactRoles": {
            "totalSize": 1,
            "done": True,
            "records": [{"ContactId": "0035g00000AAAAAAA1", "Role": "Champion", "IsPrimary": True}],
        },
    }
    record.update(overrides)
    return record


def raw_event(record: dict[str, Any], key: str) -> Any:
    payload = crm_events.DataRaw(
        integration_id=INTEGRATION,
        tenant_id=TENANT,
        entity_type="Opportunity",
        raw_data=record,
        external_id=record["Id"],
        idempotency_key=key,
        correlation_id=f"corr-{key}",
    )
    return crm_events.make_event(crm_events.DATA_RAW, payload, source="test")


def published(bus: FlakyBus) -> Counter[str]:
    seen: Counter[str] = Counter()
    for topic in TOPOLOGY.topics:
        entity = subscription_path(topic.name, "all")
        while batch := bus.bus.receive(entity, max_messages=100):
            for message in batch:
                envelope = decode_envelope(message.body)
                seen[envelope.type] += 1
                if envelope.type == crm_events.DATA_MAPPED:
                    seen[f"mapped:{envelope.data['operation']}"] += 1
                bus.bus.complete(message)
    return seen


def test_create_then_significant_update_then_unchanged(world) -> None:
    store, bus, processor = world
    assert processor.process(raw_event(opportunity(), "k1")).created == 1
    created = published(bus)
    assert created[crm_events.OPPORTUNITY_CREATED] == 1
    assert created[crm_events.SHARD_CREATED] == 1
    shard_id = deterministic_shard_id(TENANT, INTEGRATION, "Opportunity", "0065g00000AAAAAAA1")
    shard = store.get(containers.SHARDS.name, TENANT, shard_id)
    assert shard is not None
    data = shard["structuredData"]
    assert (data["stage"], data["status"], data["emailCount"], data["stakeholderCount"]) == (
        "Qualification",
        "open",
        0,
        1,
    )
    assert data["daysInStage"] == 61
    assert {r["type"] for r in shard["relationships"]} == {"account", "contact"}

    result = processor.process(raw_event(opportunity(StageName="Closed Won"), "k2"))
    assert result.updated == 1
    events = published(bus)
    assert events[crm_events.OPPORTUNITY_UPDATED] == 1
    shard = store.get(containers.SHARDS.name, TENANT, shard_id)
    assert shard is not None
    assert shard["lastChange"]["changedFields"] == ["stage", "status"]
    assert [s["stage"] for s in shard["structuredData"]["stageHistory"]] == [
        "Qualification",
        "Closed Won",
    ]

    assert processor.process(raw_event(opportunity(StageName="Closed Won"), "k3")).unchanged == 1
    again = published(bus)
    assert again[crm_events.OPPORTUNITY_UPDATED] == 0
    assert again["mapped:unchanged"] == 1


def test_the_events_of_one_message_carry_the_processors_clock_time(world) -> None:
    _, bus, processor = world
    processor.process(raw_event(opportunity(), "k1"))
    times: Counter[datetime] = Counter()
    for topic in TOPOLOGY.topics:
        for message in bus.bus.receive(subscription_path(topic.name, "all"), max_messages=100):
            times[decode_envelope(message.body).time] += 1
    assert times == {NOW: 3}


def test_a_crash_between_the_shard_write_and_the_events_replays_the_outcome(world) -> None:
    store, bus, processor = world
    bus.fail_sends = 1
    event = raw_event(opportunity(), "crash-1")
    with pytest.raises(TransientError):
        processor.process(event)
    assert published(bus) == Counter()
    assert store.count(containers.SHARDS.name, partition_key=TENANT) == 1

    assert processor.process(event).created == 1
    events = published(bus)
    assert events[crm_events.OPPORTUNITY_CREATED] == 1
    assert events["mapped:created"] == 1


def test_a_duplicate_delivery_has_no_effects(world) -> None:
    _store, bus, processor = world
    event = raw_event(opportunity(), "dup-1")
    processor.process(event)
    first = published(bus)
    for _ in range(2):
        assert processor.process(event).duplicates == 1
    assert published(bus) == Counter()
    assert first[crm_events.SHARD_CREATED] == 1


def test_a_record_that_fails_validation_is_quarantined_with_the_field(world) -> None:
    store, bus, processor = world
    result = processor.process(raw_event(opportunity(CloseDate="someday"), "bad-1"))
    assert result.failed == 1
    assert store.count(containers.SHARDS.name, partition_key=TENANT) == 0
    (entry,) = store.query(containers.QUARANTINE.name, partition_key=TENANT).items
    assert entry["fieldErrors"][0]["field"] == "closeDate"
    assert entry["fieldErrors"][0]["value"] == "someday"
    assert entry["rawData"]["CloseDate"] == "someday"
    assert published(bus)[crm_events.DATA_MAPPING_FAILED] == 1


def test_an_unmapped_entity_type_is_a_permanent_failure_for_every_record(world) -> None:
    store, _bus, processor = world
    payload = crm_events.DataRaw(
        integration_id=INTEGRATION,
        tenant_id=TENANT,
        entity_type="Invoice",
        raw_data={"Id": "a0X1"},
        external_id="a0X1",
        idempotency_key="inv-1",
        correlation_id="c",
    )
    result = processor.process(crm_events.make_event(crm_events.DATA_RAW, payload, source="t"))
    assert result.failed == 1
    (entry,) = store.query(containers.QUARANTINE.name, partition_key=TENANT).items
    assert "Invoice" in entry["error"]


def test_transient_failures_are_rescheduled_with_backoff_then_given_up(world) -> None:
    _, bus, _ = world
    envelope = raw_event(opportunity(), "t-1")
    given_up: list[int] = []

    def failing(envelope: Any, attempt: int) -> None:
        raise TransientError("store throttled", retry_after=3.0)

    message = InboundMessage(body=envelope.to_json_bytes(), message_id="m-1")
    outcome = consume(
        message,
        entity=topology.INTEGRATION_DATA_RAW,
        bus=bus,
        handler=failing,
        give_up=lambda e, error, attempts: given_up.append(attempts),
        rng=random.Random(1),
    )
    assert outcome == "rescheduled"
    depth = bus.depth(topology.INTEGRATION_DATA_RAW)
    assert depth.scheduled == 1
    final = InboundMessage(
        body=envelope.to_json_bytes(),
        message_id="m-1:retry-3",
        application_properties={ATTEMPT_PROPERTY: 3},
    )
    assert (
        consume(
            final,
            entity=topology.INTEGRATION_DATA_RAW,
            bus=bus,
            handler=failing,
            give_up=lambda e, error, attempts: given_up.append(attempts),
        )
        == "gave_up"
    )
    assert given_up == [4]
    assert json.loads(final.body)["id"] == envelope.id
