"""IntegrationService rules, on the embedded SQLite store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core import containers
from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.errors import ConflictError, NotFoundError
from core.integrations.repository import IntegrationConfigCache, IntegrationRepository
from core.integrations.service import (
    AUTH_TYPES,
    IntegrationService,
    InvalidInputError,
    custom_fields_of,
)
from core.mapping import ValidationMode
from core.providers.registry import (
    KNOWN_PROVIDERS,
    default_custom_transforms,
    default_entity_mappings,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"


class FixedClock:
    def now(self) -> datetime:
        return NOW


@pytest.fixture
def store(tmp_path: Path) -> SqliteDocumentStore:
    return SqliteDocumentStore(tmp_path / "store.sqlite")


@pytest.fixture
def cache(store: SqliteDocumentStore) -> IntegrationConfigCache:
    return IntegrationConfigCache(IntegrationRepository(store))


@pytest.fixture
def service(store: SqliteDocumentStore, cache: IntegrationConfigCache) -> IntegrationService:
    return IntegrationService(store, FixedClock(), cache, validation_mode="lenient")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "crm"
    directory.mkdir()
    (directory / "Opportunity.ndjson").write_text('{"Id": "006A", "Name": "Big deal"}\n')
    return directory


def _files_body(data_dir: Path, **extra: Any) -> dict[str, Any]:
    return {"provider": "files", "name": "Demo CRM", "config": {"path": str(data_dir)}, **extra}


def _problems(caught: pytest.ExceptionInfo[InvalidInputError]) -> dict[str, str]:
    return {problem.field: problem.message for problem in caught.value.problems}


OPPORTUNITY_MAPPINGS = [
    {"source": "Name", "target": "name", "required": True},
    {"source": "Amount", "target": "amount"},
    {"source": "StageName", "target": "stage", "transform": "trim"},
]


# --- create ------------------------------------------------------------------------------


def test_every_known_provider_has_an_auth_type() -> None:
    assert set(KNOWN_PROVIDERS) <= set(AUTH_TYPES)


def test_create_files_integration_takes_the_providers_defaults(
    service: IntegrationService, store: SqliteDocumentStore, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir, syncConfig={"syncMode": "full"}))

    assert uuid.UUID(integration.id).version == 4
    assert integration.tenant_id == TENANT
    assert integration.integration_type_id == "files"
    assert integration.connection.auth_type == "custom"
    assert integration.connection.settings == {"path": str(data_dir)}
    assert integration.connection.secret_refs == {}
    assert integration.config_version == 1
    assert integration.created_at == integration.updated_at == NOW
    assert integration.sync_config.sync_mode == "full"
    defaults = default_entity_mappings("files", {"path": str(data_dir)})
    assert integration.sync_config.entity_mappings == defaults
    assert [
        t.model_dump(by_alias=True, exclude_defaults=True) for t in integration.custom_transforms
    ] == default_custom_transforms("files")
    stored = store.get(containers.INTEGRATIONS.name, TENANT, integration.id)
    assert stored is not None
    assert stored["integrationTypeId"] == "files"
    assert store.get(containers.INTEGRATIONS.name, OTHER_TENANT, integration.id) is None


def test_create_with_own_mappings_and_custom_fields(
    service: IntegrationService, data_dir: Path
) -> None:
    mappings = [
        {
            "entityType": "Opportunity",
            "shardTypeName": "Opportunity",
            "fieldMappings": [
                *OPPORTUNITY_MAPPINGS,
                {"source": "Region__c", "target": "region"},
            ],
            "customFields": ["region"],
        }
    ]
    integration = service.create(
        TENANT, _files_body(data_dir, entityMappings=mappings, customTransforms=[])
    )
    [mapping] = integration.sync_config.entity_mappings
    assert [m.target for m in mapping.field_mappings] == ["name", "amount", "stage", "region"]
    assert custom_fields_of(mapping) == ["region"]
    assert integration.custom_transforms == []


def test_create_refuses_an_undeclared_target_not_listed_as_custom_field(
    service: IntegrationService, data_dir: Path
) -> None:
    mappings = [
        {
            "entityType": "Opportunity",
            "shardTypeName": "Opportunity",
            "fieldMappings": [*OPPORTUNITY_MAPPINGS, {"source": "Amount", "target": "amout"}],
        }
    ]
    with pytest.raises(InvalidInputError) as caught:
        service.create(TENANT, _files_body(data_dir, entityMappings=mappings))
    problems = _problems(caught)
    assert list(problems) == ["entityMappings[0].fieldMappings[3].target"]
    assert "did you mean 'amount'" in problems["entityMappings[0].fieldMappings[3].target"]


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"provider": "hubspotty", "name": "x"}, "provider", "unknown provider 'hubspotty'"),
        ({"provider": "files"}, "name", "Field required"),
        ({"provider": "files", "name": " "}, "name", "at least 1 character"),
        ({"provider": "files", "name": "x", "config": {}}, "config", "config.path"),
        (
            {"provider": "files", "name": "x", "config": {"path": "/no/such/dir/at/all"}},
            "config",
            "is not a directory",
        ),
        ({"provider": "files", "name": "x", "colour": "red"}, "colour", "Extra inputs"),
        (
            {"provider": "files", "name": "x", "syncConfig": {"entityMappings": []}},
            "syncConfig.entityMappings",
            "top-level entityMappings",
        ),
        (
            {"provider": "files", "name": "x", "syncConfig": {"frequency": {"type": "cron"}}},
            "syncConfig.frequency",
            "cron is required",
        ),
        (
            {"provider": "files", "name": "x", "entityMappings": [{"entityType": "Deal"}]},
            "entityMappings[0].shardTypeName",
            "Field required",
        ),
    ],
)
def test_create_rejects_bad_bodies_naming_the_field(
    service: IntegrationService, store: SqliteDocumentStore, body: Any, field: str, needle: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        service.create(TENANT, body)
    problems = _problems(caught)
    assert field in problems, problems
    assert needle in problems[field]
    assert store.count(containers.INTEGRATIONS.name, partition_key=TENANT) == 0


def test_create_refuses_credentials_inline_naming_each(
    service: IntegrationService, data_dir: Path
) -> None:
    config = {"path": str(data_dir), "apiKey": "sk-live-1234", "oauth": {"client_secret": "s3"}}
    with pytest.raises(InvalidInputError) as caught:
        service.create(TENANT, _files_body(data_dir) | {"config": config})
    problems = _problems(caught)
    assert set(problems) == {"config.apiKey", "config.oauth.client_secret"}
    assert all("secret store" in message for message in problems.values())
    assert "sk-live-1234" not in str(caught.value)
    assert "s3" not in str(caught.value)


def test_create_reports_a_broken_custom_transform_by_index(
    service: IntegrationService, data_dir: Path
) -> None:
    transforms = [
        {"name": "ok", "kind": "template", "template": "x-$value"},
        {"name": "broken", "kind": "regexReplace", "pattern": "(unclosed"},
    ]
    with pytest.raises(InvalidInputError) as caught:
        service.create(TENANT, _files_body(data_dir, customTransforms=transforms))
    problems = _problems(caught)
    assert list(problems) == ["customTransforms[1]"]
    assert "invalid pattern" in problems["customTransforms[1]"]


def test_create_refuses_a_non_object_body(service: IntegrationService) -> None:
    with pytest.raises(InvalidInputError) as caught:
        service.create(TENANT, ["files"])
    assert _problems(caught) == {"body": "expected a JSON object"}


# --- reads -------------------------------------------------------------------------------


def test_list_is_per_tenant_and_pages(service: IntegrationService, data_dir: Path) -> None:
    created = {service.create(TENANT, _files_body(data_dir)).id for _ in range(5)}
    service.create(OTHER_TENANT, _files_body(data_dir))

    seen: list[str] = []
    continuation = None
    pages = 0
    while True:
        items, continuation = service.list_integrations(TENANT, limit=2, continuation=continuation)
        pages += 1
        seen += [item.id for item in items]
        if continuation is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(created)


def test_get_of_another_tenants_integration_is_not_found(
    service: IntegrationService, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    assert service.get(TENANT, integration.id).id == integration.id
    with pytest.raises(NotFoundError):
        service.get(OTHER_TENANT, integration.id)
    with pytest.raises(NotFoundError):
        service.field_mappings(OTHER_TENANT, integration.id, "Opportunity")


def test_field_mappings_are_found_case_insensitively(
    service: IntegrationService, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    assert service.field_mappings(TENANT, integration.id, "opportunity").entity_type == (
        "Opportunity"
    )
    with pytest.raises(NotFoundError, match="no mapping for entity type 'Widget'"):
        service.field_mappings(TENANT, integration.id, "Widget")


def test_transform_functions_describe_builtins_and_an_integrations_own(
    service: IntegrationService, data_dir: Path
) -> None:
    builtins = {t.name: t for t in service.transform_functions(TENANT)}
    assert {"dateToISO", "stringToNumber", "trim", "nullToDefault"} <= set(builtins)
    assert all(t.description and not t.custom for t in builtins.values())
    assert builtins["roundToDecimals"].options_schema["properties"]["decimals"]["maximum"] == 12

    integration = service.create(TENANT, _files_body(data_dir))
    own = {t.name: t for t in service.transform_functions(TENANT, integration.id)}
    assert own[f"{integration.id}:salesforceStageToStatus"].custom
    with pytest.raises(NotFoundError):
        service.transform_functions(OTHER_TENANT, integration.id)


# --- field mappings ----------------------------------------------------------------------


def test_put_field_mappings_reports_every_bad_field_by_path(
    service: IntegrationService, store: SqliteDocumentStore, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    body = {
        "fieldMappings": [
            {"source": "Name", "target": "name"},
            {"source": "Amount", "target": "amount", "transform": "toMoney"},
            {"source": "Stage", "target": "stagee"},
            {"source": "a..b", "target": "description"},
            {
                "source": "P",
                "target": "probability",
                "transform": "roundToDecimals",
                "transformOptions": {"decimals": 99},
            },
            {"source": "S", "target": "status", "valueMap": {"Won": "victorious"}},
        ]
    }
    with pytest.raises(InvalidInputError) as caught:
        service.replace_field_mappings(TENANT, integration.id, "Opportunity", body)
    problems = _problems(caught)
    assert set(problems) == {
        "fieldMappings[1].transform",
        "fieldMappings[2].target",
        "fieldMappings[3].source",
        "fieldMappings[4].transformOptions",
        "fieldMappings[5].valueMap",
    }
    assert "unknown transform 'toMoney'" in problems["fieldMappings[1].transform"]
    assert "dateToISO" in problems["fieldMappings[1].transform"]
    assert "did you mean 'stage'" in problems["fieldMappings[2].target"]
    unchanged = service.get(TENANT, integration.id)
    assert unchanged.config_version == 1
    assert unchanged.sync_config == integration.sync_config


def test_put_field_mappings_needs_the_required_fields(
    service: IntegrationService, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    with pytest.raises(InvalidInputError) as caught:
        service.replace_field_mappings(
            TENANT,
            integration.id,
            "Opportunity",
            {"fieldMappings": [{"source": "Amount", "target": "amount"}]},
        )
    problems = _problems(caught)
    assert "fieldMappings" in problems
    assert "required Opportunity field(s) name" in problems["fieldMappings"]


def test_put_field_mappings_checks_custom_fields(
    service: IntegrationService, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    body = {
        "fieldMappings": [{"source": "Name", "target": "name"}],
        "customFields": ["amount", "region"],
    }
    with pytest.raises(InvalidInputError) as caught:
        service.replace_field_mappings(TENANT, integration.id, "Opportunity", body)
    problems = _problems(caught)
    assert "declared Opportunity field" in problems["customFields[0]"]
    assert "no field mapping targets 'region'" in problems["customFields[1]"]


def test_good_put_bumps_the_version_invalidates_the_cache_and_round_trips(
    service: IntegrationService, cache: IntegrationConfigCache, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    assert cache.get(TENANT, integration.id).integration.config_version == 1
    body = {
        "fieldMappings": [*OPPORTUNITY_MAPPINGS, {"source": "Region__c", "target": "region"}],
        "customFields": ["region"],
        "filters": [{"field": "IsDeleted", "operator": "eq", "value": False}],
    }
    updated, mapping = service.replace_field_mappings(TENANT, integration.id, "opportunity", body)

    assert updated.config_version == 2
    assert mapping.entity_type == "Opportunity"
    assert [m.target for m in mapping.field_mappings] == ["name", "amount", "stage", "region"]
    assert mapping.filters[0].field == "IsDeleted"
    assert custom_fields_of(mapping) == ["region"]
    assert cache.get(TENANT, integration.id).integration.config_version == 2
    other_types = [m.entity_type for m in updated.sync_config.entity_mappings]
    assert other_types == ["Account", "Contact", "Opportunity", "Lead"]

    # what a read returns (with its computed customFields) can be written back as it is
    read_back = mapping.model_dump(by_alias=True) | {
        "customFields": custom_fields_of(mapping),
        "configVersion": updated.config_version,
    }
    updated, again = service.replace_field_mappings(
        TENANT, integration.id, "Opportunity", read_back
    )
    assert updated.config_version == 3
    assert again == mapping

    # ... but not over a newer version, and not under another entity type
    with pytest.raises(ConflictError, match="is at configVersion 3, not 2"):
        service.replace_field_mappings(TENANT, integration.id, "Opportunity", read_back)
    with pytest.raises(InvalidInputError) as caught:
        service.replace_field_mappings(
            TENANT, integration.id, "Account", read_back | {"configVersion": 3}
        )
    assert "does not match" in _problems(caught)["entityType"]
    assert service.get(TENANT, integration.id).config_version == 3


def test_put_field_mappings_for_a_new_entity_type_needs_its_shard_type(
    service: IntegrationService, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    body: dict[str, Any] = {"fieldMappings": [{"source": "Name", "target": "name"}]}
    with pytest.raises(InvalidInputError) as caught:
        service.replace_field_mappings(TENANT, integration.id, "Partner", body)
    assert "shardTypeName" in _problems(caught)

    with pytest.raises(InvalidInputError) as caught:
        service.replace_field_mappings(
            TENANT, integration.id, "Partner", body | {"shardTypeName": "Widget"}
        )
    assert "unknown shard type 'Widget'" in _problems(caught)["shardTypeName"]

    updated, mapping = service.replace_field_mappings(
        TENANT, integration.id, "Partner", body | {"shardTypeName": "Account"}
    )
    assert mapping.shard_type_name == "Account"
    assert updated.sync_config.entity_mappings[-1].entity_type == "Partner"


def test_put_field_mappings_of_another_tenant_is_not_found(
    service: IntegrationService, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    with pytest.raises(NotFoundError):
        service.replace_field_mappings(
            OTHER_TENANT,
            integration.id,
            "Opportunity",
            {"fieldMappings": OPPORTUNITY_MAPPINGS},
        )


# --- sync config -------------------------------------------------------------------------


def test_sync_config_put_keeps_mappings_when_omitted_and_validates_them_when_given(
    service: IntegrationService, cache: IntegrationConfigCache, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    cache.get(TENANT, integration.id)
    schedule = {"syncMode": "full", "frequency": {"type": "interval", "intervalMinutes": 30}}
    updated = service.replace_sync_config(TENANT, integration.id, schedule)
    assert updated.config_version == 2
    assert updated.sync_config.frequency.interval_minutes == 30
    assert updated.sync_config.entity_mappings == integration.sync_config.entity_mappings
    assert cache.get(TENANT, integration.id).integration.sync_config.sync_mode == "full"

    bad_mappings = schedule | {
        "entityMappings": [
            {
                "entityType": "Opportunity",
                "shardTypeName": "Opportunity",
                "fieldMappings": [
                    {"source": "Name", "target": "name", "transform": "shout"},
                ],
            }
        ]
    }
    with pytest.raises(InvalidInputError) as caught:
        service.replace_sync_config(TENANT, integration.id, bad_mappings)
    assert "entityMappings[0].fieldMappings[0].transform" in _problems(caught)

    with pytest.raises(InvalidInputError) as caught:
        service.replace_sync_config(
            TENANT, integration.id, {"frequency": {"type": "interval", "intervalMinutes": 1}}
        )
    assert "frequency.intervalMinutes" in _problems(caught)
    assert service.get(TENANT, integration.id).config_version == 2

    with pytest.raises(ConflictError):
        service.replace_sync_config(TENANT, integration.id, schedule | {"configVersion": 1})

    only_opportunities = schedule | {
        "entityMappings": [
            {
                "entityType": "Opportunity",
                "shardTypeName": "Opportunity",
                "fieldMappings": OPPORTUNITY_MAPPINGS,
            }
        ]
    }
    updated = service.replace_sync_config(TENANT, integration.id, only_opportunities)
    assert [m.entity_type for m in updated.sync_config.entity_mappings] == ["Opportunity"]


# --- mapping test ------------------------------------------------------------------------


def test_try_mapping_maps_a_sample_with_the_stored_mapping_and_stores_nothing(
    service: IntegrationService, store: SqliteDocumentStore, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    before = store.get(containers.INTEGRATIONS.name, TENANT, integration.id)
    sample = {
        "Id": "006A",
        "Name": "Big deal",
        "StageName": "Closed Won",
        "Amount": "lots",
        "CloseDate": "2025-03-31",
    }
    trial = service.try_mapping(TENANT, integration.id, "Opportunity", {"sample": sample})

    assert trial.entity_mapping.entity_type == "Opportunity"
    assert trial.result.data["name"] == "Big deal"
    assert trial.result.data["status"] == "won"
    assert [(e.field, e.source) for e in trial.result.errors] == [("amount", "Amount")]
    assert trial.mode is ValidationMode.LENIENT
    assert trial.outcomes[ValidationMode.STRICT].accepted is False
    assert trial.outcomes[ValidationMode.LENIENT].accepted is True
    assert "amount" not in trial.outcomes[ValidationMode.LENIENT].data
    assert trial.outcomes[ValidationMode.AUDIT].data["amount"] == "lots"
    assert store.get(containers.INTEGRATIONS.name, TENANT, integration.id) == before
    assert store.count(containers.SHARDS.name) == 0


def test_try_mapping_with_an_unsaved_mapping_validates_it_like_a_put(
    service: IntegrationService, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    body = {
        "sample": {"Name": "Deal", "Amount": "1,200.50"},
        "fieldMappings": [
            {"source": "Name", "target": "name"},
            {"source": "Amount", "target": "amount", "transform": "stringToNumber"},
        ],
    }
    trial = service.try_mapping(TENANT, integration.id, "Opportunity", body)
    assert trial.result.data == {"name": "Deal", "amount": 1200.5}
    assert trial.result.errors == []

    body["fieldMappings"][1]["transform"] = "toMoney"
    with pytest.raises(InvalidInputError) as caught:
        service.try_mapping(TENANT, integration.id, "Opportunity", body)
    assert "fieldMappings[1].transform" in _problems(caught)

    with pytest.raises(InvalidInputError) as caught:
        service.try_mapping(TENANT, integration.id, "Opportunity", {"sample": "not an object"})
    assert "sample" in _problems(caught)
    assert service.get(TENANT, integration.id).config_version == 1


# --- sync requests -----------------------------------------------------------------------


def test_sync_request_checks_entity_types_against_enabled_mappings(
    service: IntegrationService, data_dir: Path
) -> None:
    integration = service.create(TENANT, _files_body(data_dir))
    assert service.sync_request(TENANT, integration.id, None) == (None, [])
    assert service.sync_request(
        TENANT, integration.id, {"mode": "full", "entityTypes": ["opportunity", "Opportunity"]}
    ) == ("full", ["Opportunity"])

    service.replace_field_mappings(
        TENANT,
        integration.id,
        "Lead",
        {"enabled": False, "fieldMappings": [{"source": "Name", "target": "name"}]},
    )
    with pytest.raises(InvalidInputError) as caught:
        service.sync_request(TENANT, integration.id, {"entityTypes": ["Lead", "Widget"]})
    problems = _problems(caught)
    assert set(problems) == {"entityTypes[0]", "entityTypes[1]"}
    assert "Lead" not in problems["entityTypes[0]"].split("enabled:")[1]
    with pytest.raises(InvalidInputError) as caught:
        service.sync_request(TENANT, integration.id, {"mode": "sometimes"})
    assert "mode" in _problems(caught)


def test_an_invalid_stored_integration_does_not_hide_the_others(tmp_path) -> None:
    from core.adapters.local.sqlite_store import SqliteDocumentStore
    from core.containers import INTEGRATIONS
    from core.integrations.repository import IntegrationRepository

    store = SqliteDocumentStore(tmp_path / "store.sqlite")
    store.upsert(INTEGRATIONS.name, {"id": "broken", "tenantId": "t1", "enabled": True})
    store.upsert(
        INTEGRATIONS.name,
        {
            "id": "ok",
            "tenantId": "t1",
            "enabled": True,
            "integrationTypeId": "files",
            "name": "fine",
            "connection": {"authType": "custom", "settings": {"path": str(tmp_path)}},
        },
    )
    assert [i.id for i in IntegrationRepository(store).list_enabled()] == ["ok"]
