from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import PermanentError
from core.models.integration import (
    EntityMapping,
    FieldMapping,
    IntegrationType,
    SyncConfig,
    SyncExecution,
    SyncFrequency,
    TenantIntegration,
)


def _errors(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str, str]]:
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.value.errors()]


def _integration() -> dict[str, Any]:
    return {
        "id": "int-1",
        "tenantId": "tenant-1",
        "integrationTypeId": "salesforce",
        "name": "Salesforce production",
        "status": "connected",
        "connection": {
            "authType": "oauth2",
            "instanceUrl": "https://acme.my.salesforce.com",
            "secretRefs": {"accessToken": "tenant-1--int-1--accessToken"},
            "settings": {"tokenUrl": "https://login.salesforce.com/services/oauth2/token"},
        },
        "syncConfig": {
            "direction": "inbound",
            "frequency": {"type": "interval", "intervalMinutes": 15},
            "entityMappings": [
                {
                    "entityType": "Opportunity",
                    "shardTypeName": "Opportunity",
                    "fieldMappings": [
                        {"source": "Name", "target": "name", "required": True},
                        {"source": "Amount", "target": "amount", "transform": "stringToNumber"},
                        {
                            "source": "CloseDate",
                            "target": "closeDate",
                            "transform": "dateToISO",
                            "transformOptions": {"format": "date"},
                        },
                        {
                            "source": "StageName",
                            "target": "stage",
                            "transform": "int-1:salesforceStageToInternal",
                        },
                        {
                            "source": "Account.Industry",
                            "target": "industry",
                            "valueMap": {"Tech": "Technology"},
                            "default": None,
                        },
                        {"source": "Region__c", "target": "region__c"},
                        {"target": "currency", "default": "EUR"},
                    ],
                    "filters": [{"field": "IsDeleted", "operator": "eq", "value": False}],
                },
                {"entityType": "Account", "shardTypeName": "Account", "enabled": False},
            ],
        },
        "customTransforms": [
            {
                "name": "salesforceStageToInternal",
                "kind": "lookup",
                "table": {"Prospecting": "qualify"},
                "unmatched": "keep",
            }
        ],
    }


def test_a_full_tenant_integration_validates_and_round_trips() -> None:
    integration = TenantIntegration.model_validate(_integration())
    mapping = integration.sync_config.entity_mappings[0]
    assert mapping.shard_type_id == "Opportunity"
    assert mapping.field_mappings[3].transform_integration_id == "int-1"
    assert mapping.field_mappings[3].transform_name == "salesforceStageToInternal"
    assert mapping.field_mappings[1].transform_integration_id is None
    assert integration.custom_transforms[0].name == "salesforceStageToInternal"
    document = integration.to_document()
    assert document["syncConfig"]["frequency"]["intervalMinutes"] == 15
    assert TenantIntegration.model_validate(document).to_document() == document


def test_entity_mapping_lookup() -> None:
    integration = TenantIntegration.model_validate(_integration())
    assert integration.entity_mapping("opportunity").shard_type_name == "Opportunity"
    with pytest.raises(PermanentError, match="'Lead'"):
        integration.entity_mapping("Lead")
    with pytest.raises(PermanentError, match=r"no enabled entity mapping.*'Account'"):
        integration.entity_mapping("Account")


def test_store_bookkeeping_is_dropped_but_typos_are_refused() -> None:
    stored = _integration() | {"_etag": "e", "_ts": 1, "_rid": "r", "_self": "s"}
    assert TenantIntegration.model_validate(stored).etag == "e"
    with pytest.raises(ValidationError) as exc:
        TenantIntegration.model_validate(_integration() | {"synConfig": {}})
    assert [loc for loc, _ in _errors(exc)] == ["synConfig"]


@pytest.mark.parametrize(
    ("frequency", "location", "message"),
    [
        ({"type": "interval"}, "", "intervalMinutes is required"),
        ({"type": "interval", "intervalMinutes": 4}, "intervalMinutes", "greater than or equal"),
        ({"type": "interval", "intervalMinutes": 10081}, "intervalMinutes", "less than or equal"),
        ({"type": "cron"}, "", "cron is required"),
        ({"type": "cron", "cron": "61 * * * *"}, "cron", "not a valid cron"),
        ({"type": "cron", "cron": "0 0 2 * * *"}, "cron", "must have 5 fields"),
        ({"type": "cron", "cron": "* * * * *"}, "cron", "more often than every 5 minutes"),
        ({"type": "cron", "cron": "0,2 * * * *"}, "cron", "more often than every 5 minutes"),
        ({"type": "manual", "cron": "0 2 * * *"}, "", "cron is only allowed"),
        ({"type": "cron", "cron": "0 2 * * *", "intervalMinutes": 60}, "", "intervalMinutes"),
        ({"type": "cron", "cron": "0 2 * * *", "timezone": "Mars/Base"}, "timezone", "IANA"),
        ({"type": "hourly"}, "type", "Input should be"),
    ],
)
def test_bad_sync_frequency_is_named(
    frequency: dict[str, Any], location: str, message: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        SyncFrequency.model_validate(frequency)
    [(loc, msg)] = _errors(exc)
    assert loc == location
    assert message in msg


@pytest.mark.parametrize(
    "frequency",
    [
        {"type": "manual"},
        {"type": "interval", "intervalMinutes": 5},
        {"type": "interval", "intervalMinutes": 10080},
        {"type": "cron", "cron": "0 2 * * *", "timezone": "Europe/Paris"},
        {"type": "cron", "cron": "*/15 * * * 1-5"},
        {"type": "cron", "cron": "@daily"},
    ],
)
def test_good_sync_frequency(frequency: dict[str, Any]) -> None:
    SyncFrequency.model_validate(frequency)


def test_frequency_errors_are_located_inside_the_integration() -> None:
    document = _integration()
    document["syncConfig"]["frequency"] = {"type": "cron", "cron": "nonsense"}
    with pytest.raises(ValidationError) as exc:
        TenantIntegration.model_validate(document)
    [(loc, msg)] = _errors(exc)
    assert loc == "syncConfig.frequency.cron"
    assert "'nonsense'" in msg


def test_unknown_shard_type_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValidationError) as exc:
        EntityMapping.model_validate({"entityType": "Invoice", "shardTypeName": "Invoice"})
    [(loc, msg)] = _errors(exc)
    assert loc == "shardTypeName"
    assert "'Invoice'" in msg
    assert "Opportunity" in msg


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            {"shardTypeName": "Account", "shardTypeId": "Contact", "enabled": False},
            "shardTypeId 'Contact' does not match shardTypeName 'Account'",
        ),
        (
            {
                "shardTypeName": "Account",
                "fieldMappings": [
                    {"source": "Name", "target": "name"},
                    {"source": "Legal_Name__c", "target": "name"},
                ],
            },
            "fieldMappings[1]: target 'name' is already mapped by fieldMappings[0]",
        ),
        (
            {
                "shardTypeName": "Account",
                "fieldMappings": [
                    {"source": "Name", "target": "name"},
                    {"source": "Industry", "target": "Industry"},
                ],
            },
            "fieldMappings[1]: target 'Industry' differs from the Account field 'industry'",
        ),
        (
            {
                "shardTypeName": "Opportunity",
                "fieldMappings": [{"source": "A", "target": "amount"}],
            },
            "no mapping targets the required Opportunity field(s) name",
        ),
    ],
)
def test_inconsistent_entity_mapping_is_explained(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=None) as exc:
        EntityMapping.model_validate({"entityType": "X"} | mapping)
    assert message in str(exc.value)


def test_targets_may_use_python_names() -> None:
    mapping = EntityMapping.model_validate(
        {
            "entityType": "message",
            "shardTypeName": "Email",
            "fieldMappings": [
                {"source": "sender", "target": "from_"},
                {"source": "sentDateTime", "target": "sent_at"},
            ],
        }
    )
    assert [m.target for m in mapping.field_mappings] == ["from_", "sent_at"]
    with pytest.raises(ValidationError, match="'sentAt' is already mapped"):
        EntityMapping.model_validate(
            {
                "entityType": "message",
                "shardTypeName": "Email",
                "fieldMappings": [
                    {"source": "sender", "target": "from"},
                    {"source": "sentDateTime", "target": "sent_at"},
                    {"source": "sentAt", "target": "sentAt"},
                ],
            }
        )


@pytest.mark.parametrize(
    ("mapping", "location", "message"),
    [
        ({"source": "", "target": "industry"}, "source", "at least 1 character"),
        ({"target": "industry"}, "", "needs a source or a default"),
        ({"source": "A", "target": "close date"}, "target", "not a field name"),
        ({"source": "A", "target": "customFields.region"}, "target", "not a field name"),
        ({"source": "A", "target": "a", "transform": "to lower"}, "transform", "transform name"),
        ({"source": "A", "target": "a", "transform": "x:y:z"}, "transform", "transform name"),
        ({"source": "A", "target": "a", "transformOptions": {"d": 2}}, "", "transformOptions"),
        ({"source": "A", "target": "a", "valueMap": ["x"]}, "valueMap", "dictionary"),
        ({"source": "A", "target": "a", "transfrom": "trim"}, "transfrom", "Extra inputs"),
    ],
)
def test_bad_field_mapping_is_named(mapping: dict[str, Any], location: str, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        FieldMapping.model_validate(mapping)
    [(loc, msg)] = _errors(exc)
    assert loc == location
    assert message in msg


def test_filters_check_their_value_against_the_operator() -> None:
    base = {"entityType": "Opportunity", "shardTypeName": "Opportunity", "enabled": False}
    with pytest.raises(ValidationError, match="operator in needs a list"):
        EntityMapping.model_validate(
            base | {"filters": [{"field": "StageName", "operator": "in", "value": "Won"}]}
        )
    EntityMapping.model_validate(
        base | {"filters": [{"field": "StageName", "operator": "in", "value": ["Won"]}]}
    )


def test_one_mapping_per_entity_type() -> None:
    with pytest.raises(ValidationError, match=r"entityMappings\[1\].*'opportunity'.*\[0\]"):
        SyncConfig.model_validate(
            {
                "entityMappings": [
                    {"entityType": "Opportunity", "shardTypeName": "Opportunity", "enabled": False},
                    {"entityType": "opportunity", "shardTypeName": "Opportunity", "enabled": False},
                ]
            }
        )


def test_secret_references_must_belong_to_this_tenant_and_integration() -> None:
    document = _integration()
    document["connection"]["secretRefs"] = {"accessToken": "tenant-2--int-1--accessToken"}
    with pytest.raises(
        ValidationError, match=r"connection.secretRefs.accessToken.*tenant-1--int-1--"
    ):
        TenantIntegration.model_validate(document)


@pytest.mark.parametrize(
    "settings",
    [
        {"clientSecret": "s3cr3t"},
        {"nested": {"api_key": "k"}},
        {"accounts": [{"password": "p"}]},
        {"refresh-token": "r"},
    ],
)
def test_credentials_cannot_be_stored_inline(settings: dict[str, Any]) -> None:
    document = _integration()
    document["connection"]["settings"] = settings
    with pytest.raises(ValidationError) as exc:
        TenantIntegration.model_validate(document)
    [(loc, msg)] = _errors(exc)
    assert loc == "connection.settings"
    assert "secret store" in msg


def test_custom_transforms_must_belong_to_this_integration() -> None:
    document = _integration()
    mappings = document["syncConfig"]["entityMappings"][0]["fieldMappings"]
    mappings[3]["transform"] = "int-9:salesforceStageToInternal"
    with pytest.raises(
        ValidationError, match=r"entityMappings\[0\].fieldMappings\[3\].*'int-9'.*'int-1'"
    ):
        TenantIntegration.model_validate(document)


def test_catalog_default_mappings_must_be_supported_entities() -> None:
    entry = {
        "id": "hubspot",
        "name": "HubSpot",
        "category": "crm",
        "authType": "oauth2",
        "capabilities": {"webhooks": True, "incrementalSync": True},
        "supportedEntities": ["deals", "companies"],
        "defaultEntityMappings": [
            {
                "entityType": "deals",
                "shardTypeName": "Opportunity",
                "fieldMappings": [{"source": "properties.dealname", "target": "name"}],
            }
        ],
    }
    assert IntegrationType.model_validate(entry).capabilities.webhooks
    broken = copy.deepcopy(entry)
    broken["defaultEntityMappings"][0]["entityType"] = "tickets"
    with pytest.raises(ValidationError, match=r"defaultEntityMappings\[0\].*'tickets'"):
        IntegrationType.model_validate(broken)
    with pytest.raises(ValidationError) as exc:
        IntegrationType.model_validate(entry | {"id": "Hub Spot"})
    assert [loc for loc, _ in _errors(exc)] == ["id"]


def _execution(**counters: int) -> SyncExecution:
    return SyncExecution.model_validate(
        {
            "id": "sync-1",
            "tenantId": "tenant-1",
            "integrationId": "int-1",
            "correlationId": "sync-sync-1-1735689600000",
            "trigger": "scheduled",
            "counters": counters,
        }
    )


def test_sync_execution_counts_outcomes() -> None:
    execution = _execution(total=4)
    for outcome in ("created", "updated", "unchanged"):
        execution.counters.record(outcome)  # type: ignore[arg-type]
    assert not execution.is_finished
    execution.counters.record("failed")
    assert execution.counters.model_dump() == {
        "total": 4,
        "processed": 4,
        "created": 1,
        "updated": 1,
        "unchanged": 1,
        "failed": 1,
    }
    assert not execution.is_finished
    execution.publishing_complete = True
    assert execution.is_finished
    assert execution.final_status() == "partial"


def test_sync_execution_final_status() -> None:
    assert _execution(total=2, processed=2, created=2).final_status() == "completed"
    assert _execution(total=2, processed=2, failed=2).final_status() == "failed"
    assert _execution().final_status() == "completed"


def test_sync_execution_rejects_negative_counters_and_unknown_status() -> None:
    with pytest.raises(ValidationError) as exc:
        _execution(failed=-1)
    assert [loc for loc, _ in _errors(exc)] == ["counters.failed"]
    document = _execution().to_document() | {"status": "done"}
    with pytest.raises(ValidationError) as exc:
        SyncExecution.model_validate(document)
    assert [loc for loc, _ in _errors(exc)] == ["status"]


def test_transforms_must_resolve_to_a_built_in_or_a_custom_transform() -> None:
    document = _integration()
    mappings = document["syncConfig"]["entityMappings"][0]["fieldMappings"]
    mappings[3]["transform"] = "salesforceStageToInternal"
    TenantIntegration.model_validate(document)
    mappings[3]["transform"] = "stageToInternal"
    with pytest.raises(
        ValidationError, match=r"fieldMappings\[3\]: transform 'stageToInternal' is neither"
    ):
        TenantIntegration.model_validate(document)
    mappings[3]["transform"] = "int-1:trim"
    with pytest.raises(ValidationError, match=r"'int-1:trim' is neither a built-in"):
        TenantIntegration.model_validate(document)


def test_custom_transform_configs_are_compiled_on_write() -> None:
    document = _integration()
    document["customTransforms"].append(
        {"name": "bad", "kind": "regexReplace", "pattern": "(", "replacement": ""}
    )
    with pytest.raises(ValidationError, match=r"customTransforms\.bad"):
        TenantIntegration.model_validate(document)
    document = _integration()
    document["customTransforms"].append({"name": "trim", "kind": "lookup", "table": {"a": "b"}})
    with pytest.raises(ValidationError, match="taken by a built-in"):
        TenantIntegration.model_validate(document)
