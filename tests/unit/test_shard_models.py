from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import PermanentError
from core.models.shards import (
    SHARD_TYPE_NAMES,
    STRUCTURED_DATA_MODELS,
    MeetingData,
    OpportunityData,
    Shard,
    deterministic_shard_id,
    structured_data_json_schema,
    validate_structured_data,
)

MINIMAL: dict[str, dict[str, Any]] = {
    "Opportunity": {"name": "Acme renewal"},
    "Account": {"name": "Acme"},
    "Contact": {},
    "Lead": {},
    "Document": {"title": "Proposal.pdf"},
    "Email": {"from": {"email": "rep@seller.com"}},
    "Message": {},
    "Meeting": {},
    "CalendarEvent": {"startTime": "2025-02-01T10:00:00Z"},
    "Activity": {
        "activityType": "email",
        "sourceShardId": "shard-1",
        "activityDate": "2025-02-01T10:00:00Z",
    },
    "Interaction": {"fromContactId": "c-1", "interactionType": "email"},
}

# sha256 of each type's JSON schema. A failure here means a model changed: bump its
# SCHEMA_VERSION (so ensure_shard_types updates the stored definition) and update this.
SCHEMA_FINGERPRINTS: dict[str, tuple[str, str]] = {
    "Opportunity": ("1.0", "d89234568475d093"),
    "Account": ("1.0", "c04f877668a9504e"),
    "Contact": ("1.0", "e572d469f1f76840"),
    "Lead": ("1.0", "689e2ccfe30d6eea"),
    "Document": ("1.0", "6fc832775a4d220a"),
    "Email": ("1.0", "a2727c7724985283"),
    "Message": ("1.0", "5e5a21e94cec3d10"),
    "Meeting": ("1.0", "277d1778f92f0835"),
    "CalendarEvent": ("1.0", "1047a7429291d89e"),
    "Activity": ("1.0", "58e5ccbd1e3d81de"),
    "Interaction": ("1.0", "2ce8fc147925e06f"),
}


def _field_errors(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, str]:
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in exc.value.errors()}


def test_every_seed_shard_type_is_defined() -> None:
    assert set(SHARD_TYPE_NAMES) == {
        "Opportunity",
        "Account",
        "Contact",
        "Lead",
        "Document",
        "Email",
        "Message",
        "Meeting",
        "CalendarEvent",
        "Activity",
        "Interaction",
    }
    for name, model in STRUCTURED_DATA_MODELS.items():
        assert name == model.SHARD_TYPE_NAME
        assert model.SCHEMA_VERSION.count(".") == 1


@pytest.mark.parametrize("name", list(MINIMAL))
def test_minimal_record_validates_and_schema_generates(name: str) -> None:
    validate_structured_data(name, MINIMAL[name])
    schema = structured_data_json_schema(name)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is True
    assert all(key[0].islower() and "_" not in key for key in schema["properties"])


def test_opportunity_schema_has_the_ml_fields_camel_cased() -> None:
    properties = structured_data_json_schema("Opportunity")["properties"]
    for field in (
        "daysInStage",
        "daysSinceLastActivity",
        "dealVelocity",
        "competitorCount",
        "stakeholderCount",
        "documentCount",
        "emailCount",
        "meetingCount",
        "callCount",
        "messageCount",
        "closeDate",
        "lastActivityDate",
        "industryId",
    ):
        assert field in properties, field
    assert "name" in structured_data_json_schema("Opportunity")["required"]


def test_vector_text_fields_exist_on_their_models() -> None:
    expected = {
        "Document": "extractedText",
        "Email": "bodyPlainText",
        "Meeting": "fullTranscript",
        "Message": "text",
    }
    for name, model in STRUCTURED_DATA_MODELS.items():
        assert expected.get(name) == model.VECTOR_TEXT_FIELD
        if model.VECTOR_TEXT_FIELD:
            assert model.VECTOR_TEXT_FIELD in structured_data_json_schema(name)["properties"]


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(ValidationError) as exc:
        validate_structured_data("Opportunity", {"amount": 10})
    assert "name" in _field_errors(exc)
    with pytest.raises(ValidationError) as exc:
        validate_structured_data("Email", {"subject": "hi"})
    assert "from" in _field_errors(exc)
    with pytest.raises(ValidationError) as exc:
        validate_structured_data("CalendarEvent", {"title": "x"})
    assert "startTime" in _field_errors(exc)


def test_out_of_range_values_are_named() -> None:
    with pytest.raises(ValidationError) as exc:
        validate_structured_data(
            "Opportunity",
            {"name": "n", "probability": 150, "documentCount": -1, "status": "maybe"},
        )
    errors = _field_errors(exc)
    assert set(errors) == {"probability", "documentCount", "status"}
    with pytest.raises(ValidationError) as exc:
        validate_structured_data("Email", {"from": {"email": "a@b.c"}, "sentiment": 2})
    assert set(_field_errors(exc)) == {"sentiment"}


def test_camel_case_out_and_both_spellings_in() -> None:
    from_python = OpportunityData(name="n", days_in_stage=3, close_date=date(2025, 3, 1))
    from_json = validate_structured_data(
        "Opportunity", {"name": "n", "daysInStage": 3, "closeDate": "2025-03-01"}
    )
    assert from_python.to_data() == from_json.to_data()
    assert from_json.to_data() == {
        "name": "n",
        "daysInStage": 3,
        "closeDate": "2025-03-01",
        "contactRoles": [],
        "stageHistory": [],
    }


def test_custom_fields_are_kept() -> None:
    data = validate_structured_data(
        "Opportunity", {"name": "n", "region__c": "EMEA", "customFields": {"tier": 1}}
    )
    dumped = data.to_data()
    assert dumped["region__c"] == "EMEA"
    assert dumped["customFields"] == {"tier": 1}


def test_case_variant_of_a_declared_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"'CloseDate'.*'closeDate'"):
        validate_structured_data("Opportunity", {"name": "n", "CloseDate": "2025-01-01"})


def test_instants_are_utc_and_close_date_is_a_calendar_day() -> None:
    data = validate_structured_data(
        "Opportunity",
        {
            "name": "n",
            "closeDate": "2025-03-01T23:30:00-02:00",
            "lastActivityDate": "2025-02-01T10:00:00",
            "stageHistory": [{"stage": "Qualify", "enteredAt": "2025-01-01T00:00:00+01:00"}],
        },
    )
    assert isinstance(data, OpportunityData)
    assert data.close_date == date(2025, 3, 2)
    assert data.last_activity_date == datetime(2025, 2, 1, 10, tzinfo=UTC)
    assert data.stage_history[0].entered_at == datetime(2024, 12, 31, 23, tzinfo=UTC)
    assert data.to_data()["lastActivityDate"] == "2025-02-01T10:00:00Z"
    minus_two = timezone(timedelta(hours=-2))
    from_python = OpportunityData(
        name="n", close_date=datetime(2025, 3, 1, 23, 30, tzinfo=minus_two)
    )
    assert from_python.close_date == date(2025, 3, 2)


def test_meeting_kind_is_the_type_field() -> None:
    call = validate_structured_data("Meeting", {"type": "call"})
    assert isinstance(call, MeetingData)
    assert call.kind == "call"
    assert validate_structured_data("Meeting", {}).to_data()["type"] == "meeting"
    with pytest.raises(ValidationError) as exc:
        validate_structured_data("Meeting", {"type": "webinar"})
    assert set(_field_errors(exc)) == {"type"}


def test_unknown_shard_type_is_permanent() -> None:
    with pytest.raises(PermanentError, match="'Invoice'"):
        validate_structured_data("Invoice", {})


def _stored_shard() -> dict[str, Any]:
    return {
        "id": "s-1",
        "tenantId": "t-1",
        "shardTypeId": "Opportunity",
        "shardTypeName": "Opportunity",
        "schemaVersion": "1.0",
        "structuredData": {"name": "Acme", "amount": 10.5},
        "relationships": [
            {
                "type": "account",
                "targetShardId": "s-2",
                "targetShardTypeName": "Account",
                "metadata": {"confidence": 90, "strategy": "participant_matching", "x": 1},
            }
        ],
        "externalId": "006A",
        "integrationSource": {"integrationId": "i-1", "entityType": "Opportunity"},
        "lastSyncedAt": "2025-01-01T00:00:00Z",
        "syncStatus": "synced",
        "createdAt": "2025-01-01T00:00:00Z",
        "updatedAt": "2025-01-01T00:00:00Z",
        "_etag": "e1",
        "_ts": 1735689600,
        "_rid": "cosmos-bookkeeping",
        "_self": "dbs/x",
    }


def test_shard_document_round_trip() -> None:
    shard = Shard.model_validate(_stored_shard())
    assert shard.etag == "e1"
    assert shard.relationships[0].metadata.confidence == 90
    document = shard.to_document()
    assert not {"_etag", "_ts", "_rid"} & document.keys()
    assert document["relationships"][0]["metadata"]["x"] == 1
    assert Shard.model_validate(document).to_document() == document
    assert isinstance(shard.structured(), OpportunityData)


def test_shard_document_rejects_unknown_fields_and_bad_relationships() -> None:
    document = _stored_shard() | {"structuredDat": {}}
    with pytest.raises(ValidationError) as exc:
        Shard.model_validate(document)
    assert "structuredDat" in _field_errors(exc)
    document = _stored_shard()
    document["relationships"][0]["targetShardId"] = ""
    with pytest.raises(ValidationError) as exc:
        Shard.model_validate(document)
    assert "relationships.0.targetShardId" in _field_errors(exc)


def test_deterministic_id_is_stable_and_distinct() -> None:
    base = ("tenant-a", "integration-1", "Opportunity", "006A")
    first = deterministic_shard_id(*base)
    assert first == deterministic_shard_id(*base)
    assert uuid.UUID(first).version == 5
    variants = [
        ("tenant-b", "integration-1", "Opportunity", "006A"),
        ("tenant-a", "integration-2", "Opportunity", "006A"),
        ("tenant-a", "integration-1", "Account", "006A"),
        ("tenant-a", "integration-1", "Opportunity", "006B"),
        ("tenant-a", "integration-1", "Opportunity", "006a"),
    ]
    ids = {deterministic_shard_id(*v) for v in variants}
    assert len(ids) == len(variants)
    assert first not in ids


def test_deterministic_id_parts_cannot_bleed_into_each_other() -> None:
    assert deterministic_shard_id("t", "a/b", "c", "x") != deterministic_shard_id(
        "t", "a", "b/c", "x"
    )
    assert deterministic_shard_id("t", "i-1", "e", "x-y") != deterministic_shard_id(
        "t", "i", "1-e", "x-y"
    )


def test_deterministic_id_ignores_entity_type_case() -> None:
    assert deterministic_shard_id("t", "i", "Opportunity", "1") == deterministic_shard_id(
        "t", "i", " opportunity", "1"
    )


@pytest.mark.parametrize("position", range(4))
def test_deterministic_id_refuses_empty_parts(position: int) -> None:
    parts = ["t", "i", "Opportunity", "1"]
    parts[position] = " "
    names = ["tenant_id", "integration_id", "entity_type", "external_id"]
    with pytest.raises(ValueError, match=names[position]):
        deterministic_shard_id(*parts)


def _fingerprint(name: str) -> str:
    schema = structured_data_json_schema(name)
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:16]


def test_schema_changes_come_with_a_version_bump() -> None:
    current = {
        name: (model.SCHEMA_VERSION, _fingerprint(name))
        for name, model in STRUCTURED_DATA_MODELS.items()
    }
    unbumped = [
        name
        for name, (version, digest) in current.items()
        if name in SCHEMA_FINGERPRINTS
        and SCHEMA_FINGERPRINTS[name][0] == version
        and SCHEMA_FINGERPRINTS[name][1] != digest
    ]
    assert not unbumped, f"schema changed without a SCHEMA_VERSION bump: {unbumped}"
    assert current == SCHEMA_FINGERPRINTS, f"update SCHEMA_FINGERPRINTS to {current}"
