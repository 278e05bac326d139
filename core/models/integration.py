"""Integration configuration and sync bookkeeping (seeds 2.3, 2.5, 5.x, 10.x; 001 tenant
configuration; ARCHITECTURE.md Storage and Security).

* `IntegrationType`: a catalog entry (what a provider can do, its default mappings).
* `TenantIntegration`: one tenant's connection to one provider, stored in `integrations`;
  it holds secret *references* only, never credentials.
* `SyncConfig` / `EntityMapping` / `FieldMapping`: what to sync and how raw records map
  onto shards. Transforms are implemented in `core/mapping`; here a field mapping names one
  (a built-in or one of the integration's `customTransforms`, which `core/mapping`
  compiles when the integration is validated). Source-path grammar and value coercion are
  checked by `core.mapping.validate_mapping_config`.
* `SyncExecution`: one sync run in `sync_executions`, with live counters and status.

Config is validated when it is written, with errors that name the field, so that a broken
mapping is refused by the API instead of failing every record later.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import ConfigDict, Field, field_validator, model_validator

from core.errors import PermanentError
from core.mapping import BUILTIN_TRANSFORMS, CustomTransformConfig, validate_custom_transforms
from core.models.shards import (
    SHARD_TYPE_NAMES,
    CamelModel,
    Count,
    StoredDocument,
    UtcDateTime,
    structured_data_model,
)

MIN_SYNC_INTERVAL_MINUTES = 5
MAX_SYNC_INTERVAL_MINUTES = 7 * 24 * 60
_CRON_SAMPLE_RUNS = 50

_SLUG = r"^[a-z0-9][a-z0-9_-]*$"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRANSFORM_NAME = re.compile(r"^(?:(?P<integration>[^:\s]+):)?(?P<name>[A-Za-z][A-Za-z0-9_]*)$")
_CREDENTIAL_SUFFIXES = (
    "password",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "credential",
    "credentials",
)


class ConfigModel(CamelModel):
    """Config from admins and the API: an unknown key is a typo, so it is an error."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------
# Field and entity mappings
# --------------------------------------------------------------------------------------


class FieldMapping(ConfigModel):
    """One raw field onto one `structuredData` field; the same fields as
    `core.mapping.FieldSpec`, which compiles them (path grammar, transform resolution,
    value/default coercion are checked there by `validate_mapping_config`).

    `source` is a path in the raw record (`Account.Industry`, `lines[0].amount`); without
    one, `default` is the value. `target` is a field of the shard type (camelCase or
    snake_case) or a custom field. `transform` names a built-in (`dateToISO`) or one of
    this integration's custom transforms (`name` or `{integrationId}:{name}`). `valueMap`
    maps raw values (as strings) to shard values; `default` applies when the value is
    null or missing.
    """

    source: str | None = Field(default=None, min_length=1)
    target: str
    transform: str | None = None
    transform_options: dict[str, Any] = Field(default_factory=dict)
    default: Any = None
    required: bool = False
    value_map: dict[str, Any] | None = None

    @field_validator("target")
    @classmethod
    def _target_is_a_field_name(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(
                f"target {value!r} is not a field name "
                "(letters, digits, underscore; not starting with a digit)"
            )
        return value

    @field_validator("transform")
    @classmethod
    def _transform_name(cls, value: str | None) -> str | None:
        if value is not None and not _TRANSFORM_NAME.match(value):
            raise ValueError(
                f"transform {value!r} is neither a transform name (e.g. dateToISO) "
                "nor '{integrationId}:{name}'"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> FieldMapping:
        if self.source is None and self.default is None:
            raise ValueError(f"target {self.target!r}: a mapping needs a source or a default")
        if self.transform_options and self.transform is None:
            raise ValueError("transformOptions is set but transform is not")
        return self

    @property
    def transform_integration_id(self) -> str | None:
        """The integration named by a `{integrationId}:{name}` transform; None otherwise."""
        match = _TRANSFORM_NAME.match(self.transform or "")
        return match.group("integration") if match else None

    @property
    def transform_name(self) -> str | None:
        """The transform's name without its integration prefix."""
        match = _TRANSFORM_NAME.match(self.transform or "")
        return match.group("name") if match else None


FilterOperator = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists"]


class SyncFilter(ConfigModel):
    """A condition on raw records of one entity type (e.g. only open opportunities)."""

    field: str = Field(min_length=1)
    operator: FilterOperator
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> SyncFilter:
        if self.operator in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"filter on {self.field!r}: operator {self.operator} needs a list")
        if self.operator == "exists" and not isinstance(self.value, bool | None):
            raise ValueError(f"filter on {self.field!r}: operator exists takes true/false")
        return self


class EntityMapping(ConfigModel):
    """How one provider entity type (`Opportunity`, `deals`) becomes shards of one type."""

    entity_type: str = Field(min_length=1)
    shard_type_name: str
    shard_type_id: str | None = Field(
        default=None, description="Shard type ids equal names here; defaults to the name"
    )
    enabled: bool = True
    field_mappings: list[FieldMapping] = Field(default_factory=list)
    filters: list[SyncFilter] = Field(default_factory=list)
    frequency: SyncFrequency | None = Field(
        default=None,
        description="This entity type's own schedule; the sync config's frequency when unset",
    )

    @field_validator("shard_type_name")
    @classmethod
    def _known_shard_type(cls, value: str) -> str:
        if value not in SHARD_TYPE_NAMES:
            raise ValueError(f"unknown shard type {value!r} (known: {', '.join(SHARD_TYPE_NAMES)})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EntityMapping:
        if self.shard_type_id is None:
            self.shard_type_id = self.shard_type_name
        elif self.shard_type_id != self.shard_type_name:
            raise ValueError(
                f"shardTypeId {self.shard_type_id!r} does not match "
                f"shardTypeName {self.shard_type_name!r}"
            )
        model = structured_data_model(self.shard_type_name)
        alias_of = {name: info.alias or name for name, info in model.model_fields.items()}
        alias_of |= {alias: alias for alias in alias_of.values()}
        declared = {key.casefold(): alias for key, alias in alias_of.items()}
        seen: dict[str, int] = {}
        for index, mapping in enumerate(self.field_mappings):
            where = f"fieldMappings[{index}]"
            key = alias_of.get(mapping.target, mapping.target)
            if key in seen:
                raise ValueError(
                    f"{where}: target {mapping.target!r} is already mapped by "
                    f"fieldMappings[{seen[key]}]"
                )
            seen[key] = index
            known = declared.get(mapping.target.casefold())
            if known is not None and key != known:
                raise ValueError(
                    f"{where}: target {mapping.target!r} differs from the "
                    f"{self.shard_type_name} field {known!r} only by case"
                )
        if self.enabled:
            missing = [
                alias_of[name]
                for name, info in model.model_fields.items()
                if info.is_required() and alias_of[name] not in seen
            ]
            if missing:
                raise ValueError(
                    f"fieldMappings: no mapping targets the required {self.shard_type_name} "
                    f"field(s) {', '.join(missing)}"
                )
        return self


# --------------------------------------------------------------------------------------
# Sync configuration
# --------------------------------------------------------------------------------------


class SyncFrequency(ConfigModel):
    """`manual`: only on demand (webhooks still apply); `interval`: every N minutes;
    `cron`: a 5-field cron expression (or @hourly/@daily/...) in `timezone`."""

    type: Literal["manual", "interval", "cron"] = "manual"
    interval_minutes: int | None = Field(
        default=None, ge=MIN_SYNC_INTERVAL_MINUTES, le=MAX_SYNC_INTERVAL_MINUTES
    )
    cron: str | None = None
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.startswith("@") and len(value.split()) != 5:
            raise ValueError(
                f"cron {value!r} must have 5 fields (minute hour day-of-month month day-of-week)"
            )
        if not croniter.is_valid(value):
            raise ValueError(f"cron {value!r} is not a valid cron expression")
        runs = croniter(value, datetime(2025, 1, 1, tzinfo=UTC))
        previous = runs.get_next(datetime)
        for _ in range(_CRON_SAMPLE_RUNS):
            current = runs.get_next(datetime)
            if current - previous < timedelta(minutes=MIN_SYNC_INTERVAL_MINUTES):
                raise ValueError(
                    f"cron {value!r} runs more often than every {MIN_SYNC_INTERVAL_MINUTES} minutes"
                )
            previous = current
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {value!r} is not an IANA time zone name") from None
        return value

    @model_validator(mode="after")
    def _fields_match_type(self) -> SyncFrequency:
        if self.type == "interval" and self.interval_minutes is None:
            raise ValueError("intervalMinutes is required when type is 'interval'")
        if self.type == "cron" and self.cron is None:
            raise ValueError("cron is required when type is 'cron'")
        if self.type != "interval" and self.interval_minutes is not None:
            raise ValueError("intervalMinutes is only allowed when type is 'interval'")
        if self.type != "cron" and self.cron is not None:
            raise ValueError("cron is only allowed when type is 'cron'")
        return self


class SyncConfig(ConfigModel):
    enabled: bool = True
    direction: Literal["inbound", "outbound", "bidirectional"] = "inbound"
    sync_mode: Literal["incremental", "full"] = "incremental"
    frequency: SyncFrequency = Field(default_factory=lambda: SyncFrequency())
    entity_mappings: list[EntityMapping] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_mapping_per_entity_type(self) -> SyncConfig:
        seen: dict[str, int] = {}
        for index, mapping in enumerate(self.entity_mappings):
            key = mapping.entity_type.strip().casefold()
            if key in seen:
                raise ValueError(
                    f"entityMappings[{index}]: entity type {mapping.entity_type!r} is already "
                    f"mapped by entityMappings[{seen[key]}]"
                )
            seen[key] = index
        return self


# --------------------------------------------------------------------------------------
# Catalog and tenant integrations
# --------------------------------------------------------------------------------------


AuthType = Literal["oauth2", "api_key", "basic", "custom"]


class AdapterCapabilities(ConfigModel):
    incremental_sync: bool = False
    webhooks: bool = False
    bidirectional_sync: bool = False
    bulk_operations: bool = False
    change_data_capture: bool = False
    field_level_security: bool = False


class RateLimits(ConfigModel):
    requests_per_second: float | None = Field(default=None, gt=0)
    requests_per_minute: int | None = Field(default=None, ge=1)
    requests_per_hour: int | None = Field(default=None, ge=1)


class IntegrationType(ConfigModel):
    """A provider in the integration catalog (super admin)."""

    id: str = Field(pattern=_SLUG, description="e.g. salesforce, hubspot, google_drive")
    name: str = Field(min_length=1)
    category: Literal["crm", "documents", "communications", "meetings", "calendar"]
    auth_type: AuthType
    capabilities: AdapterCapabilities = Field(default_factory=lambda: AdapterCapabilities())
    supported_entities: list[str] = Field(default_factory=list)
    default_entity_mappings: list[EntityMapping] = Field(default_factory=list)
    rate_limits: RateLimits | None = None
    webhook_signature_algorithm: str | None = None
    status: Literal["active", "beta", "deprecated"] = "active"

    @model_validator(mode="after")
    def _mappings_for_supported_entities(self) -> IntegrationType:
        supported = {entity.casefold() for entity in self.supported_entities}
        for index, mapping in enumerate(self.default_entity_mappings):
            if mapping.entity_type.casefold() not in supported:
                raise ValueError(
                    f"defaultEntityMappings[{index}]: entity type {mapping.entity_type!r} "
                    "is not in supportedEntities"
                )
        return self


class ConnectionConfig(ConfigModel):
    """How to reach the provider. Credentials live in the secret store; `secretRefs` maps
    a kind (`accessToken`, `refreshToken`, `apiKey`, `webhookSecret`) to a secret name."""

    auth_type: AuthType
    instance_url: str | None = None
    scopes: list[str] = Field(default_factory=list)
    secret_refs: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict, description="Non-secret settings")

    @field_validator("settings")
    @classmethod
    def _no_credentials_inline(cls, value: dict[str, Any]) -> dict[str, Any]:
        found = _credential_like_keys(value, "settings")
        if found:
            raise ValueError(
                f"{', '.join(found)} look(s) like a credential: store it in the secret store "
                "and reference it in secretRefs"
            )
        return value


def _credential_like_keys(value: Any, path: str) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            normalized = re.sub(r"[^a-z0-9]", "", str(key).casefold())
            if normalized.endswith(_CREDENTIAL_SUFFIXES):
                found.append(where)
            found.extend(_credential_like_keys(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_credential_like_keys(item, f"{path}[{index}]"))
    return found


class IntegrationFeatures(ConfigModel):
    webhooks: bool = False
    bidirectional_sync: bool = False
    incremental_sync: bool = True


class TenantIntegration(StoredDocument):
    """The document stored in `integrations` (partition key `/tenantId`).

    `configVersion` increases on every change, so compiled field mappings can be cached
    per (integration, configVersion)."""

    id: str = Field(min_length=1)
    tenant_id: str = Field(min_length=1)
    integration_type_id: str = Field(pattern=_SLUG)
    name: str = Field(min_length=1)
    status: Literal["pending", "connected", "error", "disconnected"] = "pending"
    enabled: bool = True
    connection: ConnectionConfig
    sync_config: SyncConfig = Field(default_factory=lambda: SyncConfig())
    features: IntegrationFeatures = Field(default_factory=lambda: IntegrationFeatures())
    rate_limits: RateLimits | None = None
    custom_transforms: list[CustomTransformConfig] = Field(default_factory=list)
    config_version: int = Field(default=1, ge=1)
    created_at: UtcDateTime | None = None
    updated_at: UtcDateTime | None = None

    @model_validator(mode="after")
    def _references_resolve_within_this_integration(self) -> TenantIntegration:
        prefix = f"{self.tenant_id}--{self.id}--"
        for kind, name in self.connection.secret_refs.items():
            if not name.startswith(prefix) or len(name) == len(prefix):
                raise ValueError(
                    f"connection.secretRefs.{kind}: secret {name!r} must be named "
                    f"'{prefix}{{kind}}' (this tenant and integration only)"
                )
        problems = validate_custom_transforms(self.id, self.custom_transforms)
        if problems:
            raise ValueError("; ".join(str(problem) for problem in problems))
        custom = {transform.name for transform in self.custom_transforms}
        for m_index, entity in enumerate(self.sync_config.entity_mappings):
            for f_index, mapping in enumerate(entity.field_mappings):
                where = f"syncConfig.entityMappings[{m_index}].fieldMappings[{f_index}]"
                owner = mapping.transform_integration_id
                if owner is not None and owner != self.id:
                    raise ValueError(
                        f"{where}: transform {mapping.transform!r} belongs to integration "
                        f"{owner!r}, not {self.id!r}"
                    )
                transform_name = mapping.transform_name
                if transform_name is None:
                    continue
                builtin = owner is None and BUILTIN_TRANSFORMS.resolve(transform_name) is not None
                if not builtin and transform_name not in custom:
                    raise ValueError(
                        f"{where}: transform {mapping.transform!r} is neither a built-in "
                        "nor one of customTransforms"
                    )
        return self

    def entity_mapping(self, entity_type: str) -> EntityMapping:
        """The enabled mapping for a raw record's entity type (case-insensitive).
        PermanentError when there is none: retrying cannot create a mapping."""
        key = entity_type.strip().casefold()
        for mapping in self.sync_config.entity_mappings:
            if mapping.entity_type.strip().casefold() == key:
                if not mapping.enabled:
                    break
                return mapping
        raise PermanentError(
            f"integration {self.id!r} has no enabled entity mapping for entity type "
            f"{entity_type!r}",
            resource=f"integrations/{self.id}",
        )


# --------------------------------------------------------------------------------------
# Sync executions
# --------------------------------------------------------------------------------------


RecordOutcome = Literal["created", "updated", "unchanged", "failed"]
SyncStatusValue = Literal["pending", "processing", "completed", "partial", "failed", "cancelled"]


class SyncCounters(CamelModel):
    """`processed` = created + updated + unchanged + failed; `total` grows while the sync
    publishes records and is final once `publishingComplete` is set on the execution."""

    total: Count = 0
    processed: Count = 0
    created: Count = 0
    updated: Count = 0
    unchanged: Count = 0
    failed: Count = 0

    def record(self, outcome: RecordOutcome) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.processed += 1


class SyncExecution(StoredDocument):
    """The document stored in `sync_executions` (partition key `/tenantId`, TTL 90 days).
    `id` is the syncTaskId the events carry. The container also holds the per-message
    progress documents the CRM processor writes (`docType` "progress")."""

    doc_type: Literal["execution"] = "execution"
    id: str = Field(min_length=1)
    tenant_id: str = Field(min_length=1)
    integration_id: str = Field(min_length=1)
    correlation_id: str = Field(min_length=1)
    trigger: Literal["manual", "scheduled", "webhook", "retry"]
    mode: Literal["incremental", "full"] = "incremental"
    status: SyncStatusValue = "pending"
    entity_types: list[str] = Field(default_factory=list)
    counters: SyncCounters = Field(default_factory=lambda: SyncCounters())
    publishing_complete: bool = False
    limit_reached: bool = Field(
        default=False,
        description="The provider's daily API limit ended the fetch early: the run is partial "
        "and the next one resumes from the saved cursors",
    )
    started_at: UtcDateTime | None = None
    completed_at: UtcDateTime | None = None
    updated_at: UtcDateTime | None = None
    error: str | None = None

    @property
    def is_finished(self) -> bool:
        """Every published record has been mapped or has failed."""
        return self.publishing_complete and self.counters.processed >= self.counters.total

    def final_status(self) -> Literal["completed", "partial", "failed"]:
        failed, processed = self.counters.failed, self.counters.processed
        if failed == 0:
            return "partial" if self.limit_reached else "completed"
        return "failed" if failed == processed else "partial"
