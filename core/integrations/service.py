"""Tenant integrations as the tenant API sees them: create one from a provider name, read
them, replace the sync config, read or replace one entity type's field mappings, try a
mapping on a sample record, and check a manual sync request.

Every write is validated in full before it is stored, and every problem is reported at
once with the JSON path of the value at fault (`entityMappings[0].fieldMappings[2].transform`):
a broken mapping is refused when it is saved instead of failing every record of the next
sync. Credentials are never accepted inline (they belong in the secret store).

Custom fields: shard types keep fields they do not declare, so a mapping may target one.
So that a typo in a target (`amout`) cannot silently become a custom field, a target that
is not a declared field of the shard type must be listed in that entity mapping's
`customFields`. Reads return the list computed from the targets, so what a GET returns
can be PUT back unchanged.
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, ValidationError

from core.errors import ConflictError, NotFoundError, PermanentError
from core.integrations.repository import IntegrationConfigCache, IntegrationRepository
from core.mapping import (
    BUILTIN_TRANSFORMS,
    CustomTransformConfig,
    FieldError,
    MappingResult,
    ShardValidator,
    TransformDescription,
    TransformRegistry,
    ValidationMode,
    ValidationOutcome,
    compile_mapping,
    registry_for_integration,
    validate_custom_transforms,
    validate_mapping_config,
)
from core.models.integration import (
    AuthType,
    ConfigModel,
    ConnectionConfig,
    EntityMapping,
    FieldMapping,
    SyncConfig,
    SyncFilter,
    SyncFrequency,
    TenantIntegration,
    _credential_like_keys,
)
from core.models.shards import structured_data_model
from core.ports import Clock, DocumentStore
from core.providers.registry import (
    KNOWN_PROVIDERS,
    PROVIDERS_WITH_ADAPTERS,
    build_provider,
    default_custom_transforms,
    default_entity_mappings,
)

AUTH_TYPES: dict[str, AuthType] = {
    "files": "custom",
    "salesforce": "oauth2",
    "hubspot": "oauth2",
    "dynamics": "oauth2",
}
"""How each known provider signs in; `files` reads a local directory and needs nothing."""

JsonPath = tuple[str | int, ...]
NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

# --------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputProblem:
    """One thing wrong with a request: the JSON path of the value and what is wrong."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InvalidInputError(PermanentError):
    """The request cannot be stored as it is (the API answers 422 with `problems`)."""

    def __init__(self, problems: Sequence[InputProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = list(problems)


def json_path(*parts: str | int) -> str:
    """`("entityMappings", 0, "target")` -> `entityMappings[0].target`; `body` for none."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part:
            path = f"{path}.{part}" if path else part
    return path or "body"


# A model-level message that names its own field: `fieldMappings[1]: target ...`.
_LOCATED_MESSAGE = re.compile(r"^(?P<field>[A-Za-z][A-Za-z0-9_]*(?:\[\d+\]|\.[A-Za-z0-9_]+)*): ")


def _problems_of(exc: ValidationError) -> list[InputProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        path = json_path(*error["loc"])
        located = _LOCATED_MESSAGE.match(message)
        if located is not None:
            inner = located.group("field")
            path = inner if path == "body" else f"{path}.{inner}"
            message = message[located.end() :]
        problems.append(InputProblem(path, message))
    return problems


def _parse(model: type[BaseModel], raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInputError(_problems_of(exc)) from exc


def _require_object(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidInputError([InputProblem("body", "expected a JSON object")])
    return raw


# --------------------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------------------


class CreateIntegrationRequest(ConfigModel):
    provider: NonBlank
    name: NonBlank
    enabled: bool = True
    config: dict[str, Any] = Field(
        default_factory=dict, description="Non-secret connection settings"
    )
    sync_config: SyncConfig | None = None
    entity_mappings: list[EntityMapping] | None = Field(
        default=None, description="Omitted: the provider's default mappings"
    )
    custom_transforms: list[CustomTransformConfig] | None = Field(
        default=None, description="Omitted: the custom transforms the provider's defaults name"
    )


class FieldMappingsUpdate(ConfigModel):
    """The body of PUT field-mappings/{entityType}: replaces that entity type's mapping
    (creating it when the integration has none; then `shardTypeName` is required). It takes
    what the GET returns: `entityType` must match the path, and `configVersion`, when
    given, must still be the integration's (409 otherwise: someone changed it since)."""

    entity_type: str | None = None
    config_version: int | None = None
    shard_type_id: str | None = None
    shard_type_name: str | None = None
    enabled: bool | None = None
    field_mappings: list[FieldMapping]
    filters: list[SyncFilter] | None = None
    frequency: SyncFrequency | None = None
    custom_fields: list[str] = Field(default_factory=list)


class MappingTestRequest(ConfigModel):
    """A sample raw record, mapped with the stored mapping or with the one given here."""

    sample: dict[str, Any]
    shard_type_name: str | None = None
    field_mappings: list[FieldMapping] | None = None
    custom_fields: list[str] = Field(default_factory=list)


SyncMode = Literal["incremental", "full"]


class SyncRequest(ConfigModel):
    mode: SyncMode | None = None
    entity_types: list[NonBlank] | None = None


# --------------------------------------------------------------------------------------
# Mapping checks
# --------------------------------------------------------------------------------------


def _declared_fields(shard_type_name: str) -> tuple[frozenset[str], list[str]]:
    """Every name a target may use for a declared field, and the camelCase ones."""
    model = structured_data_model(shard_type_name)
    aliases = [info.alias or name for name, info in model.model_fields.items()]
    return frozenset([*model.model_fields, *aliases]), aliases


def custom_fields_of(mapping: EntityMapping) -> list[str]:
    """The targets of a mapping that are not declared fields of its shard type."""
    declared, _ = _declared_fields(mapping.shard_type_name)
    folded = {name.casefold() for name in declared}
    return [
        field.target
        for field in mapping.field_mappings
        if field.target not in declared and field.target.casefold() not in folded
    ]


# The mapper names the field mapping (by target) but not the attribute at fault; its
# reasons start with these words.
_REASON_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("unknown transform", "transform"),
    ("invalid options for transform", "transformOptions"),
    ("transformOptions given", "transformOptions"),
    ("valueMap[", "valueMap"),
    ("default:", "default"),
    ("unknown target field", "target"),
    ("target field is mapped twice", "target"),
)
# Reported by `EntityMapping` itself, which every write validates too.
_REPORTED_BY_MODEL = ("differs from the declared field",)


def _attribute(error: FieldError, mapping: FieldMapping) -> tuple[str, ...]:
    for prefix, attribute in _REASON_ATTRIBUTES:
        if error.reason.startswith(prefix):
            return (attribute,)
    if mapping.source is not None and error.value == mapping.source:
        return ("source",)
    return ()


def _transform_names(transforms: TransformRegistry) -> str:
    names = sorted({name.rsplit(":", 1)[-1] for name in transforms.names()}, key=str.casefold)
    return ", ".join(names)


def _check_field_mappings(
    shard_type_name: str,
    field_mappings: Sequence[FieldMapping],
    custom_fields: Sequence[str],
    transforms: TransformRegistry,
    where: JsonPath,
) -> list[InputProblem]:
    """Each field mapping compiled on its own (so a problem names its index), targets
    outside the shard type not listed in `customFields`, and `customFields` entries that
    are declared fields or targets of no mapping."""
    model = structured_data_model(shard_type_name)
    declared, aliases = _declared_fields(shard_type_name)
    folded = {name.casefold() for name in declared}
    problems: list[InputProblem] = []
    for index, mapping in enumerate(field_mappings):
        at = (*where, "fieldMappings", index)
        target = mapping.target
        undeclared = target not in declared and target.casefold() not in folded
        if undeclared and target not in custom_fields:
            message = f"{target!r} is not a field of {shard_type_name}"
            close = difflib.get_close_matches(target, aliases, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            message += "; list it in customFields to map it to a custom field"
            problems.append(InputProblem(json_path(*at, "target"), message))
        spec = mapping.model_dump(by_alias=True, exclude_none=True)
        for error in validate_mapping_config([spec], model, transforms):
            if error.reason.startswith(_REPORTED_BY_MODEL):
                continue
            message = error.reason
            if message.startswith("unknown transform"):
                message += f" (available: {_transform_names(transforms)})"
            problems.append(InputProblem(json_path(*at, *_attribute(error, mapping)), message))
    targets = {mapping.target for mapping in field_mappings}
    for index, name in enumerate(custom_fields):
        listed = json_path(*where, "customFields", index)
        if name in declared:
            message = f"{name!r} is a declared {shard_type_name} field, not a custom one"
            problems.append(InputProblem(listed, message))
        elif name not in targets:
            problems.append(InputProblem(listed, f"no field mapping targets {name!r}"))
    return problems


def _check_entity_mappings(
    mappings: Sequence[EntityMapping],
    custom_fields: Sequence[Sequence[str]],
    transforms: TransformRegistry,
    where: JsonPath,
) -> list[InputProblem]:
    problems: list[InputProblem] = []
    for index, mapping in enumerate(mappings):
        problems += _check_field_mappings(
            mapping.shard_type_name,
            mapping.field_mappings,
            custom_fields[index] if index < len(custom_fields) else (),
            transforms,
            (*where, index),
        )
    return problems


def _split_custom_fields(
    raw: Any, where: JsonPath
) -> tuple[Any, list[list[str]], list[InputProblem]]:
    """Raw entity mappings without their `customFields` (not a stored field), and each
    mapping's list."""
    if not isinstance(raw, list):
        return raw, [], []
    stripped: list[Any] = []
    lists: list[list[str]] = []
    problems: list[InputProblem] = []
    for index, item in enumerate(raw):
        names: list[str] = []
        if isinstance(item, dict) and "customFields" in item:
            item = dict(item)
            value = item.pop("customFields")
            if isinstance(value, list) and all(isinstance(name, str) for name in value):
                names = value
            else:
                path = json_path(*where, index, "customFields")
                problems.append(InputProblem(path, "must be a list of field names"))
        stripped.append(item)
        lists.append(names)
    return stripped, lists, problems


def _registry(
    integration_id: str, custom_transforms: Sequence[CustomTransformConfig]
) -> tuple[TransformRegistry, list[InputProblem]]:
    """The integration's transforms; problems name the custom transform by index."""
    configs = list(custom_transforms)
    found = validate_custom_transforms(integration_id, configs)
    if not found:
        return registry_for_integration(integration_id, configs), []
    index_of = {config.name: index for index, config in enumerate(configs)}
    problems = []
    for error in found:
        name = error.field.removeprefix("customTransforms.")
        index = index_of.get(name)
        path = json_path("customTransforms", index) if index is not None else error.field
        problems.append(InputProblem(path, error.reason))
    return BUILTIN_TRANSFORMS, problems


def _check_version(integration: TenantIntegration, expected: int | None) -> None:
    """A write based on an older read of the integration would undo someone's change."""
    if expected is not None and expected != integration.config_version:
        raise ConflictError(
            f"integration {integration.id!r} is at configVersion {integration.config_version}, "
            f"not {expected}; read it again and reapply the change",
            resource=f"integrations/{integration.id}",
        )


def _find_mapping(integration: TenantIntegration, entity_type: str) -> EntityMapping | None:
    key = entity_type.strip().casefold()
    for mapping in integration.sync_config.entity_mappings:
        if mapping.entity_type.strip().casefold() == key:
            return mapping
    return None


def _parse_create_request(body: Any) -> tuple[CreateIntegrationRequest, list[list[str]]]:
    """The create body, and the `customFields` of each of its entity mappings."""
    raw = dict(_require_object(body))
    problems: list[InputProblem] = []
    custom_fields: list[list[str]] = []
    if "entityMappings" in raw:
        raw["entityMappings"], custom_fields, problems = _split_custom_fields(
            raw["entityMappings"], ("entityMappings",)
        )
    sync_config = raw.get("syncConfig")
    if isinstance(sync_config, dict) and "entityMappings" in sync_config:
        problems.append(
            InputProblem(
                "syncConfig.entityMappings", "give entity mappings in the top-level entityMappings"
            )
        )
    try:
        request = CreateIntegrationRequest.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInputError([*problems, *_problems_of(exc)]) from exc
    if request.provider not in KNOWN_PROVIDERS:
        known = ", ".join(KNOWN_PROVIDERS)
        problems.append(
            InputProblem("provider", f"unknown provider {request.provider!r} (known: {known})")
        )
    if problems:
        raise InvalidInputError(problems)
    return request, custom_fields


def _check_provider_config(provider: str, config: Mapping[str, Any]) -> list[InputProblem]:
    """What the provider says about its config, without connecting anywhere."""
    try:
        default_entity_mappings(provider, config)
        if provider in PROVIDERS_WITH_ADAPTERS:
            build_provider(provider, config)
    except PermanentError as exc:
        return [InputProblem("config", str(exc))]
    return []


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MappingTrial:
    """A sample mapped with one entity mapping: the mapper's result, and what the shard
    validator would do with it in each strictness mode."""

    entity_mapping: EntityMapping
    result: MappingResult
    mode: ValidationMode
    """The mode the CRM processor runs in (`VALIDATION_MODE`)."""
    outcomes: dict[ValidationMode, ValidationOutcome]


# --------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------


class IntegrationService:
    def __init__(
        self,
        store: DocumentStore,
        clock: Clock,
        cache: IntegrationConfigCache,
        *,
        validation_mode: ValidationMode | str = ValidationMode.STRICT,
    ) -> None:
        self._repository = IntegrationRepository(store)
        self._clock = clock
        self._cache = cache
        self._validation_mode = ValidationMode(validation_mode)

    # -- reads -----------------------------------------------------------------------------

    def get(self, tenant_id: str, integration_id: str) -> TenantIntegration:
        return self._repository.get(tenant_id, integration_id)

    def list_integrations(
        self, tenant_id: str, *, limit: int, continuation: str | None = None
    ) -> tuple[list[TenantIntegration], str | None]:
        page = self._repository.list(tenant_id, limit=limit, continuation=continuation)
        return [TenantIntegration.model_validate(doc) for doc in page.items], page.continuation

    def field_mappings(
        self, tenant_id: str, integration_id: str, entity_type: str
    ) -> EntityMapping:
        integration = self.get(tenant_id, integration_id)
        mapping = _find_mapping(integration, entity_type)
        if mapping is None:
            raise NotFoundError(
                f"integration {integration_id!r} has no mapping for entity type {entity_type!r}",
                resource=f"integrations/{integration_id}/field-mappings/{entity_type}",
            )
        return mapping

    def transform_functions(
        self, tenant_id: str, integration_id: str | None = None
    ) -> list[TransformDescription]:
        """The built-ins, plus one integration's custom transforms when it is named."""
        if integration_id is None:
            return BUILTIN_TRANSFORMS.describe()
        integration = self.get(tenant_id, integration_id)
        return registry_for_integration(
            integration.id, list(integration.custom_transforms)
        ).describe()

    # -- writes ----------------------------------------------------------------------------

    def create(self, tenant_id: str, body: Any) -> TenantIntegration:
        """A new integration; omitted mappings and custom transforms are the provider's."""
        request, custom_fields = _parse_create_request(body)
        problems = [
            InputProblem(path, "looks like a credential: keep it in the secret store, not config")
            for path in _credential_like_keys(request.config, "config")
        ]
        if problems:
            raise InvalidInputError(problems)
        problems = _check_provider_config(request.provider, request.config)
        if problems:
            raise InvalidInputError(problems)

        integration_id = str(uuid.uuid4())
        mappings = request.entity_mappings
        if mappings is None:
            mappings = default_entity_mappings(request.provider, request.config)
            custom_fields = [custom_fields_of(mapping) for mapping in mappings]
        custom_transforms = request.custom_transforms
        if custom_transforms is None:
            defaults = default_custom_transforms(request.provider, request.config)
            custom_transforms = _parse(_CustomTransforms, {"customTransforms": defaults}).items
        transforms, problems = _registry(integration_id, custom_transforms)
        if not problems:
            problems = _check_entity_mappings(
                mappings, custom_fields, transforms, ("entityMappings",)
            )
        if problems:
            raise InvalidInputError(problems)

        sync_config = request.sync_config or SyncConfig()
        now = self._clock.now()
        document = {
            "id": integration_id,
            "tenantId": tenant_id,
            "integrationTypeId": request.provider,
            "name": request.name,
            "enabled": request.enabled,
            "connection": ConnectionConfig(
                auth_type=AUTH_TYPES[request.provider], settings=request.config
            ).model_dump(by_alias=True),
            "syncConfig": sync_config.model_copy(update={"entity_mappings": mappings}).model_dump(
                by_alias=True
            ),
            "customTransforms": [t.model_dump(by_alias=True) for t in custom_transforms],
            "configVersion": 1,
            "createdAt": now,
            "updatedAt": now,
        }
        integration = _parse(TenantIntegration, document)
        return self._repository.create(integration)

    def replace_sync_config(
        self, tenant_id: str, integration_id: str, body: Any
    ) -> TenantIntegration:
        """Replace the sync config; without `entityMappings` the stored mappings stay."""
        raw = dict(_require_object(body))
        expected_version = raw.pop("configVersion", None)
        problems = []
        if expected_version is not None and not isinstance(expected_version, int):
            problems.append(InputProblem("configVersion", "must be an integer"))
        keep_mappings = "entityMappings" not in raw
        raw["entityMappings"], custom_fields, found = _split_custom_fields(
            raw.get("entityMappings", []), ("entityMappings",)
        )
        problems += found
        try:
            sync_config: SyncConfig = SyncConfig.model_validate(raw)
        except ValidationError as exc:
            raise InvalidInputError([*problems, *_problems_of(exc)]) from exc
        if problems:
            raise InvalidInputError(problems)

        def change(current: TenantIntegration) -> TenantIntegration:
            _check_version(current, expected_version)
            replacement = sync_config.model_copy(deep=True)
            if keep_mappings:
                replacement.entity_mappings = current.sync_config.entity_mappings
            else:
                transforms = self._transforms_of(current)
                found = _check_entity_mappings(
                    replacement.entity_mappings, custom_fields, transforms, ("entityMappings",)
                )
                if found:
                    raise InvalidInputError(found)
            current.sync_config = replacement
            current.updated_at = self._clock.now()
            return current

        return self._update(tenant_id, integration_id, change)

    def replace_field_mappings(
        self, tenant_id: str, integration_id: str, entity_type: str, body: Any
    ) -> tuple[TenantIntegration, EntityMapping]:
        request: FieldMappingsUpdate = _parse(FieldMappingsUpdate, _require_object(body))
        if request.entity_type is not None and (
            request.entity_type.strip().casefold() != entity_type.strip().casefold()
        ):
            message = f"{request.entity_type!r} does not match the path's {entity_type!r}"
            raise InvalidInputError([InputProblem("entityType", message)])

        def change(current: TenantIntegration) -> TenantIntegration:
            _check_version(current, request.config_version)
            mapping = self._build_mapping(
                current,
                entity_type,
                request.field_mappings,
                shard_type_id=request.shard_type_id,
                shard_type_name=request.shard_type_name,
                custom_fields=request.custom_fields,
                enabled=request.enabled,
                filters=request.filters,
                frequency=request.frequency,
            )
            mappings = current.sync_config.entity_mappings
            existing = _find_mapping(current, entity_type)
            if existing is None:
                mappings.append(mapping)
            else:
                mappings[mappings.index(existing)] = mapping
            current.updated_at = self._clock.now()
            return current

        updated = self._update(tenant_id, integration_id, change)
        mapping = _find_mapping(updated, entity_type)
        assert mapping is not None
        return updated, mapping

    # -- dry runs --------------------------------------------------------------------------

    def try_mapping(
        self, tenant_id: str, integration_id: str, entity_type: str, body: Any
    ) -> MappingTrial:
        """Map a sample with the stored mapping (or the one in the body); stores nothing."""
        request: MappingTestRequest = _parse(MappingTestRequest, _require_object(body))
        integration = self.get(tenant_id, integration_id)
        if request.field_mappings is None:
            mapping = self.field_mappings(tenant_id, integration_id, entity_type)
        else:
            mapping = self._build_mapping(
                integration,
                entity_type,
                request.field_mappings,
                shard_type_name=request.shard_type_name,
                custom_fields=request.custom_fields,
            )
        model = structured_data_model(mapping.shard_type_name)
        compiled = compile_mapping(
            [m.model_dump(by_alias=True, exclude_none=True) for m in mapping.field_mappings],
            model,
            self._transforms_of(integration),
        )
        result = compiled.map(request.sample)
        outcomes = {
            mode: ShardValidator(mode).validate_mapping(result, model) for mode in ValidationMode
        }
        return MappingTrial(mapping, result, self._validation_mode, outcomes)

    def sync_request(
        self, tenant_id: str, integration_id: str, body: Any
    ) -> tuple[SyncMode | None, list[str]]:
        """The mode and entity types of a manual sync; entity types must have an enabled
        mapping. An empty body means the integration's mode and every entity type."""
        request: SyncRequest = _parse(SyncRequest, {} if body is None else _require_object(body))
        integration = self.get(tenant_id, integration_id)
        entity_types: list[str] = []
        problems = []
        for index, requested in enumerate(request.entity_types or []):
            mapping = _find_mapping(integration, requested)
            if mapping is None or not mapping.enabled:
                enabled = [
                    m.entity_type for m in integration.sync_config.entity_mappings if m.enabled
                ]
                problems.append(
                    InputProblem(
                        json_path("entityTypes", index),
                        f"no enabled mapping for entity type {requested!r} "
                        f"(enabled: {', '.join(enabled) or 'none'})",
                    )
                )
            elif mapping.entity_type not in entity_types:
                entity_types.append(mapping.entity_type)
        if problems:
            raise InvalidInputError(problems)
        return request.mode, entity_types

    # -- helpers ---------------------------------------------------------------------------

    def _update(
        self,
        tenant_id: str,
        integration_id: str,
        change: Callable[[TenantIntegration], TenantIntegration],
    ) -> TenantIntegration:
        """The repository's read-modify-write, then this process's cached copy is dropped."""
        try:
            updated = self._repository.update(tenant_id, integration_id, change)
        except ValidationError as exc:
            raise InvalidInputError(_problems_of(exc)) from exc
        self._cache.invalidate(tenant_id, integration_id)
        return updated

    @staticmethod
    def _transforms_of(integration: TenantIntegration) -> TransformRegistry:
        return registry_for_integration(integration.id, list(integration.custom_transforms))

    def _build_mapping(
        self,
        integration: TenantIntegration,
        entity_type: str,
        field_mappings: list[FieldMapping],
        *,
        shard_type_name: str | None,
        custom_fields: Sequence[str],
        shard_type_id: str | None = None,
        enabled: bool | None = None,
        filters: list[SyncFilter] | None = None,
        frequency: SyncFrequency | None = None,
    ) -> EntityMapping:
        """The entity mapping a PUT (or a test) describes, validated as a write would be;
        what the request leaves out is kept from the stored mapping."""
        existing = _find_mapping(integration, entity_type)
        if shard_type_name is None and existing is not None:
            shard_type_name = existing.shard_type_name
        if shard_type_name is None:
            raise InvalidInputError(
                [
                    InputProblem(
                        "shardTypeName",
                        f"integration {integration.id!r} has no mapping for entity type "
                        f"{entity_type!r} yet; shardTypeName says which shard type it maps to",
                    )
                ]
            )
        if enabled is None:
            enabled = existing.enabled if existing else True
        if filters is None:
            filters = existing.filters if existing else []
        if frequency is None and existing is not None:
            frequency = existing.frequency
        candidate = {
            "entityType": existing.entity_type if existing else entity_type.strip(),
            "shardTypeName": shard_type_name,
            "shardTypeId": shard_type_id,
            "enabled": enabled,
            "fieldMappings": [m.model_dump(by_alias=True) for m in field_mappings],
            "filters": [f.model_dump(by_alias=True) for f in filters],
            "frequency": None if frequency is None else frequency.model_dump(by_alias=True),
        }
        problems: list[InputProblem] = []
        mapping: EntityMapping | None = None
        try:
            mapping = EntityMapping.model_validate(candidate)
        except ValidationError as exc:
            problems += _problems_of(exc)
            if any(p.field == "shardTypeName" for p in problems):
                raise InvalidInputError(problems) from exc
        problems += _check_field_mappings(
            shard_type_name,
            field_mappings,
            custom_fields,
            self._transforms_of(integration),
            (),
        )
        if problems or mapping is None:
            raise InvalidInputError(problems)
        return mapping


class _CustomTransforms(BaseModel):
    """Parses a provider's default custom transforms (plain dicts) like a request's."""

    items: list[CustomTransformConfig] = Field(alias="customTransforms")
