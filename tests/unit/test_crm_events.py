from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import PermanentError
from core.messaging.topology import SUB_SYNC_TRACKING, TOPOLOGY
from core.models import crm_events
from core.models import crm_events as ev
from core.models.events import decode_envelope
from core.models.integration import SyncCounters

CORRELATION = "sync-task-1-1735689600000"


def _raw(**overrides: Any) -> ev.DataRaw:
    return ev.DataRaw.model_validate(
        {
            "integrationId": "int-1",
            "tenantId": "tenant-1",
            "entityType": "Opportunity",
            "rawData": {"Id": "006A", "Name": "Acme", "Amount": "10"},
            "externalId": "006A",
            "syncTaskId": "task-1",
            "idempotencyKey": "int-1-006A-task-1",
            "correlationId": CORRELATION,
            "metadata": {"page": 1},
        }
        | overrides
    )


def test_event_type_names_follow_the_seeds() -> None:
    assert ev.DATA_RAW == "integration.data.raw"
    assert ev.DATA_RAW_BATCH == "integration.data.raw.batch"
    assert ev.DATA_MAPPED == "integration.data.mapped"
    assert ev.DATA_MAPPING_FAILED == "integration.data.mapping.failed"
    assert ev.OPPORTUNITY_UPDATED == "integration.opportunity.updated"
    assert ev.OPPORTUNITIES_UPDATED_BATCH == "integration.opportunities.updated.batch"
    assert ev.ML_FIELD_AGGREGATION_RECALCULATE == "ml_field_aggregation.recalculate"
    assert len(set(ev.PAYLOAD_MODELS)) == 14


def test_sync_tracking_subscribes_to_event_types_defined_here() -> None:
    topic = next(t for t in TOPOLOGY.topics if t.name == "integration-events")
    tracking = next(s for s in topic.subscriptions if s.name == SUB_SYNC_TRACKING)
    assert set(tracking.filter["eventType"]) <= set(ev.PAYLOAD_MODELS)


def test_make_event_wraps_a_payload_in_the_envelope() -> None:
    envelope = ev.make_event(ev.DATA_RAW, _raw(), source="sync-worker")
    assert envelope.type == "integration.data.raw"
    assert envelope.tenant_id == "tenant-1"
    assert envelope.correlation_id == CORRELATION
    assert envelope.data["rawData"]["Name"] == "Acme"
    assert envelope.data["idempotencyKey"] == "int-1-006A-task-1"
    received = decode_envelope(envelope.to_json_bytes())
    assert ev.parse_payload(received) == _raw()


def test_make_event_refuses_a_mismatched_payload_or_ids() -> None:
    with pytest.raises(ValueError, match="takes a DataMapped payload, not DataRaw"):
        ev.make_event(ev.DATA_MAPPED, _raw(), source="s")
    with pytest.raises(ValueError, match="unknown event type"):
        ev.make_event("integration.data.cooked", _raw(), source="s")
    with pytest.raises(ValueError, match="tenantId 'tenant-2' disagrees"):
        ev.make_event(ev.DATA_RAW, _raw(), source="s", tenant_id="tenant-2")
    with pytest.raises(ValueError, match="correlationId 'other' disagrees"):
        ev.make_event(ev.DATA_RAW, _raw(), source="s", correlation_id="other")
    recalc = ev.MlFieldAggregationRecalculate(
        opportunity_id="o-1", tenant_id="tenant-1", reason="periodic_recalculation"
    )
    with pytest.raises(ValueError, match="correlationId is required"):
        ev.make_event(ev.ML_FIELD_AGGREGATION_RECALCULATE, recalc, source="s")
    envelope = ev.make_event(
        ev.ML_FIELD_AGGREGATION_RECALCULATE,
        recalc,
        source="s",
        correlation_id="nightly-2025-01-01",
        causation_id="evt-0",
    )
    assert envelope.correlation_id == "nightly-2025-01-01"
    assert envelope.causation_id == "evt-0"


def test_batch_sizes_must_count_their_items() -> None:
    record = {"rawData": {}, "externalId": "1", "idempotencyKey": "k1"}
    batch = {
        "integrationId": "int-1",
        "tenantId": "t",
        "entityType": "Opportunity",
        "records": [record, record | {"externalId": "2", "idempotencyKey": "k2"}],
        "correlationId": CORRELATION,
        "batchSize": 2,
    }
    assert len(ev.DataRawBatch.model_validate(batch).records) == 2
    with pytest.raises(ValidationError, match="batchSize 3 != 2 records"):
        ev.DataRawBatch.model_validate(batch | {"batchSize": 3})
    with pytest.raises(ValidationError) as exc:
        ev.DataRawBatch.model_validate(batch | {"records": [{"rawData": {}, "externalId": "1"}]})
    assert [e["loc"] for e in exc.value.errors()] == [("records", 0, "idempotencyKey")]
    with pytest.raises(ValidationError, match="batchSize 1 != 2 opportunityIds"):
        ev.OpportunitiesUpdatedBatch.model_validate(
            {
                "integrationId": "int-1",
                "tenantId": "t",
                "opportunityIds": ["o-1", "o-2"],
                "correlationId": CORRELATION,
                "batchSize": 1,
            }
        )


def test_opportunity_events() -> None:
    base = {
        "integrationId": "int-1",
        "tenantId": "t",
        "opportunityId": "shard-1",
        "correlationId": CORRELATION,
    }
    assert ev.OpportunityCreated.model_validate(base).shard_id == "shard-1"
    with pytest.raises(ValidationError, match="shardId 'shard-2' != opportunityId 'shard-1'"):
        ev.OpportunityCreated.model_validate(base | {"shardId": "shard-2"})
    with pytest.raises(ValidationError) as exc:
        ev.OpportunityUpdated.model_validate(base | {"changedFields": []})
    assert [e["loc"] for e in exc.value.errors()] == [("changedFields",)]
    updated = ev.OpportunityUpdated.model_validate(
        base
        | {"changedFields": ["stage"], "changes": {"stage": {"old": "Qualify", "new": "Propose"}}}
    )
    assert updated.model_dump(mode="json")["changes"]["stage"] == {
        "old": "Qualify",
        "new": "Propose",
    }


def test_sync_lifecycle_payloads_carry_counters() -> None:
    completed = ev.SyncCompleted(
        integration_id="int-1",
        tenant_id="t",
        sync_task_id="task-1",
        correlation_id=CORRELATION,
        status="partial",
        counters=SyncCounters(total=2, processed=2, created=1, failed=1),
        completed_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    envelope = ev.make_event(ev.SYNC_COMPLETED, completed, source="sync-tracking")
    assert envelope.data["counters"]["failed"] == 1
    assert envelope.data["completedAt"] == "2025-01-01T00:00:00Z"


def test_parse_payload_names_bad_fields_as_a_permanent_error() -> None:
    envelope = ev.make_event(ev.DATA_RAW, _raw(), source="s")
    broken = envelope.model_copy(update={"data": envelope.data | {"rawData": "not-an-object"}})
    with pytest.raises(PermanentError, match=r"integration.data.raw.*rawData: .*dictionary"):
        ev.parse_payload(broken)
    unknown = envelope.model_copy(update={"type": "integration.data.cooked"})
    with pytest.raises(PermanentError, match="unknown event type"):
        ev.parse_payload(unknown)
    other_tenant = envelope.model_copy(update={"tenant_id": "tenant-2"})
    with pytest.raises(PermanentError, match=r"data\.tenantId 'tenant-1' differs"):
        ev.parse_payload(other_tenant)


def test_fields_from_a_newer_minor_version_are_kept() -> None:
    envelope = ev.make_event(
        ev.SHARD_CREATED, _shard_created(), source="s", correlation_id=CORRELATION
    )
    body = json.loads(envelope.to_json_bytes())
    body["schemaVersion"] = "1.7"
    body["data"]["embeddingModel"] = "v3"
    payload = ev.parse_payload(decode_envelope(json.dumps(body)))
    assert payload.model_dump(by_alias=True)["embeddingModel"] == "v3"


def _shard_created() -> ev.ShardCreated:
    return ev.ShardCreated(
        shard_id="s-1", tenant_id="t", shard_type_id="Email", shard_type_name="Email"
    )


def test_sync_correlation_id_format() -> None:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    assert ev.sync_correlation_id("task-1", at) == "sync-task-1-1735689600000"
    with pytest.raises(ValueError, match="sync_task_id"):
        ev.sync_correlation_id("", at)


def test_event_message_is_the_same_wire_form_receivers_validate() -> None:
    from core.models.events import decode_envelope

    payload = crm_events.ShardCreated(
        shard_id="s1", tenant_id="t1", shard_type_id="Opportunity", shard_type_name="Opportunity"
    )
    writer = crm_events.EventWriter(
        source="test", tenant_id="t1", correlation_id="c1", causation_id="e0"
    )
    message = writer.message(
        crm_events.SHARD_CREATED, payload, "k1:shard.created", shard_type_name="Opportunity"
    )
    envelope = decode_envelope(message.body)
    reference = crm_events.make_event(
        crm_events.SHARD_CREATED, payload, source="test", correlation_id="c1", causation_id="e0"
    ).to_message(message_id="k1:shard.created", shard_type_name="Opportunity")
    assert envelope.id == message.message_id == "k1:shard.created"
    assert envelope.model_dump(exclude={"id", "time"}) == decode_envelope(
        reference.body
    ).model_dump(exclude={"id", "time"})
    assert message.application_properties == reference.application_properties
    assert (message.correlation_id, message.subject) == (
        reference.correlation_id,
        reference.subject,
    )
    with pytest.raises(ValueError, match="payload"):
        writer.message(crm_events.DATA_MAPPED, payload, "m")
    other_tenant = crm_events.EventWriter(source="test", tenant_id="t2", correlation_id="c1")
    with pytest.raises(ValueError, match="tenantId 't2' disagrees"):
        other_tenant.message(crm_events.SHARD_CREATED, payload, "m")


def test_events_of_one_writer_differ_only_in_their_own_fields() -> None:
    from core.models.events import decode_envelope

    writer = crm_events.EventWriter(
        source="test",
        tenant_id="t1",
        correlation_id="c1",
        causation_id="e0",
        time="2026-11-22T17:00:00+00:00",
    )
    first, second = (
        decode_envelope(
            writer.message(
                crm_events.SHARD_CREATED,
                crm_events.ShardCreated(
                    shard_id=shard_id, tenant_id="t1", shard_type_id="Lead", shard_type_name="Lead"
                ),
                f"{shard_id}:shard.created",
            ).body
        )
        for shard_id in ("s1", "s2")
    )
    assert (first.id, first.data["shardId"]) == ("s1:shard.created", "s1")
    assert (second.id, second.data["shardId"]) == ("s2:shard.created", "s2")
    assert first.model_dump(exclude={"id", "data"}) == second.model_dump(exclude={"id", "data"})
    assert first.time.isoformat() == "2026-11-22T17:00:00+00:00"


def test_event_message_keeps_non_ascii_text() -> None:
    from core.models.events import decode_envelope

    payload = crm_events.ShardCreated(
        shard_id="s1", tenant_id="t1", shard_type_id="Account", shard_type_name="Société Générale"
    )
    writer = crm_events.EventWriter(source="t", tenant_id="t1", correlation_id="c1")
    message = writer.message(crm_events.SHARD_CREATED, payload, "m1")
    assert decode_envelope(message.body).data["shardTypeName"] == "Société Générale"
