"""Field mappings compiled once per config version and applied per record.

`compile_mapping` resolves everything a mapping needs up front (path getters, transform
functions built with their options, value maps, defaults coerced to the target type, one
coercer per target field) and `CompiledMapping.map` does only the per-record work. A field
that fails is reported and left out; the other fields are kept (partial mapping).

Per field, in order:

1. read the source path: an absent key is *missing*, a JSON null is *null*;
2. apply the transform, if any (transforms see null for a missing value, so that
   `nullToDefault` works; the others pass null through);
3. apply the value map, if any: a value found in it is replaced, others pass through and
   meet the target type's own check (a Literal or Enum target refuses unknown values);
4. if the value is now null: use the mapping's `default`; else fail if `required`; else a
   missing source is left out of the output with a warning (so that a partial update does
   not overwrite what is stored), and a null is emitted as null when the target accepts
   null, left to the model's default (with a warning) when it has one, and an error
   otherwise;
5. coerce to the target field's type (see `core.mapping.coercion`).

Output keys are the target model's field aliases (the camelCase names shards store), and
values are what the model's field types validate to themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from pydantic.alias_generators import to_camel

from core.mapping.coercion import (
    Coercer,
    CoercionError,
    FieldCoercion,
    build_field_coercion,
    custom_field_coercion,
    to_bool,
    to_int,
    to_str,
)
from core.mapping.errors import FieldError, MappingConfigError
from core.mapping.paths import (
    MISSING,
    PathGetter,
    PathShapeError,
    PathSyntaxError,
    compile_path,
    parse_path,
)
from core.mapping.transforms import (
    BUILTIN_TRANSFORMS,
    InvalidTransformOptionsError,
    TransformError,
    TransformFunction,
    TransformRegistry,
    lookup_key,
)


class FieldSpec(BaseModel):
    """One field mapping as the mapper takes it (config uses the camelCase names)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    source: str | None = Field(None, description="Path in the raw record, e.g. Account.Name.")
    target: str = Field(description="Target field name or alias in the shard's data model.")
    transform: str | None = None
    transform_options: dict[str, JsonValue] = Field(default_factory=dict)
    default: JsonValue = Field(None, description="Used when the value is null or missing.")
    required: bool = False
    value_map: dict[str, JsonValue] | None = None


class MappingResult:
    """The mapped data, the fields that failed (`errors`), and notes (`warnings`).

    A plain slotted class rather than a dataclass: one is built per record."""

    __slots__ = ("data", "errors", "warnings")

    def __init__(
        self,
        data: dict[str, Any],
        errors: list[FieldError] | None = None,
        warnings: list[FieldError] | None = None,
    ) -> None:
        self.data = data
        self.errors: list[FieldError] = [] if errors is None else errors
        self.warnings: list[FieldError] = [] if warnings is None else warnings

    @property
    def ok(self) -> bool:
        return not self.errors

    def __repr__(self) -> str:
        return (
            f"MappingResult(data={self.data!r}, errors={self.errors!r}, warnings={self.warnings!r})"
        )


_Step = Callable[[Any, dict[str, Any], MappingResult], None]


class CompiledMapping:
    """A mapping ready to run. Immutable and safe to share between threads."""

    def __init__(
        self, target_model: type[BaseModel], target_keys: tuple[str, ...], steps: tuple[_Step, ...]
    ) -> None:
        self.target_model = target_model
        self.target_keys = target_keys
        self._steps = steps

    def map(self, record: Mapping[str, Any]) -> MappingResult:
        data: dict[str, Any] = {}
        result = MappingResult(data)
        for step in self._steps:
            step(record, data, result)
        return result


def _parse_specs(
    specs: Sequence[FieldSpec | Mapping[str, Any]],
) -> tuple[list[FieldSpec], list[FieldError]]:
    parsed: list[FieldSpec] = []
    errors: list[FieldError] = []
    for position, raw in enumerate(specs):
        if isinstance(raw, FieldSpec):
            parsed.append(raw)
            continue
        try:
            parsed.append(FieldSpec.model_validate(raw))
        except ValidationError as exc:
            reason = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors(include_url=False)
            )
            label = raw.get("target") if isinstance(raw, Mapping) else None
            errors.append(
                FieldError(
                    field=str(label or f"fieldMappings[{position}]"), value=raw, reason=reason
                )
            )
    return parsed, errors


def _field_names_by_key(model: type[BaseModel]) -> dict[str, str]:
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        names[name] = name
        if info.alias:
            names[info.alias] = name
    return names


@dataclass(slots=True)
class _Resolved:
    spec: FieldSpec
    coercion: FieldCoercion
    get: PathGetter | None
    transform: TransformFunction | None
    value_map: dict[str, Any] | None
    default: Any


def _resolve(
    specs: Sequence[FieldSpec | Mapping[str, Any]],
    target_model: type[BaseModel],
    transforms: TransformRegistry,
) -> tuple[list[_Resolved], list[FieldError]]:
    parsed, errors = _parse_specs(specs)
    field_names = _field_names_by_key(target_model)
    folded_names = {key.casefold(): key for key in field_names}
    allows_custom_fields = target_model.model_config.get("extra") == "allow"
    seen: dict[str, str] = {}
    resolved: list[_Resolved] = []
    for spec in parsed:
        problems_before = len(errors)

        def problem(reason: str, value: Any = None, spec: FieldSpec = spec) -> None:
            errors.append(
                FieldError(field=spec.target, value=value, reason=reason, source=spec.source)
            )

        field_name = field_names.get(spec.target)
        if field_name is not None:
            coercion = build_field_coercion(target_model, field_name)
        else:
            declared = folded_names.get(spec.target.casefold())
            if declared is not None:
                problem(f"differs from the declared field {declared!r} only by case", spec.target)
                continue
            if not allows_custom_fields:
                problem(f"unknown target field for {target_model.__name__}", spec.target)
                continue
            coercion = custom_field_coercion(spec.target)
        if coercion.key in seen:
            problem(f"target field is mapped twice (also by {seen[coercion.key]!r})", spec.target)
            continue
        seen[coercion.key] = spec.source or "a default"

        get: PathGetter | None = None
        if spec.source is None:
            if spec.default is None:
                problem("a mapping needs a source path or a default")
        else:
            try:
                get = compile_path(spec.source)
            except PathSyntaxError as exc:
                problem(exc.reason, spec.source)

        transform: TransformFunction | None = None
        if spec.transform is not None:
            definition = transforms.resolve(spec.transform)
            if definition is None:
                problem(f"unknown transform {spec.transform!r}", spec.transform)
            else:
                try:
                    transform = definition.build(spec.transform_options)
                except InvalidTransformOptionsError as exc:
                    problem(str(exc), spec.transform_options)
        elif spec.transform_options:
            problem("transformOptions given without a transform", spec.transform_options)

        value_map: dict[str, Any] | None = None
        if spec.value_map is not None:
            value_map = {}
            for source_value, target_value in spec.value_map.items():
                if target_value is None:
                    value_map[source_value] = None
                    continue
                try:
                    value_map[source_value] = coercion.coerce(target_value)
                except CoercionError as exc:
                    problem(f"valueMap[{source_value!r}]: {exc.reason}", target_value)

        default: Any = None
        if spec.default is not None:
            try:
                default = coercion.coerce(spec.default)
            except CoercionError as exc:
                problem(f"default: {exc.reason}", spec.default)

        if len(errors) == problems_before:
            resolved.append(_Resolved(spec, coercion, get, transform, value_map, default))
    return resolved, errors


def validate_mapping_config(
    specs: Sequence[FieldSpec | Mapping[str, Any]],
    target_model: type[BaseModel],
    transforms: TransformRegistry = BUILTIN_TRANSFORMS,
) -> list[FieldError]:
    """Every problem in a mapping config: malformed entries, unknown target fields (a model
    with `extra="allow"` takes custom fields, but not case variants of its own), targets
    mapped twice, bad source paths, unknown transforms or bad options, and value-map
    values or defaults the target type refuses. Empty when the mapping compiles."""
    return _resolve(specs, target_model, transforms)[1]


def compile_mapping(
    specs: Sequence[FieldSpec | Mapping[str, Any]],
    target_model: type[BaseModel],
    transforms: TransformRegistry = BUILTIN_TRANSFORMS,
) -> CompiledMapping:
    """Compile a mapping for `target_model`; raises `MappingConfigError` with every problem.

    `transforms` is the registry names are resolved in: the built-ins, or the registry
    `core.mapping.custom.registry_for_integration` builds for the integration.
    """
    resolved, errors = _resolve(specs, target_model, transforms)
    if errors:
        raise MappingConfigError(errors)
    return CompiledMapping(
        target_model,
        tuple(item.coercion.key for item in resolved),
        tuple(_plan(item) for item in resolved),
    )


_PASSTHROUGH_TYPES: dict[Coercer, type] = {to_str: str, to_bool: bool, to_int: int}


def _plan(item: _Resolved) -> _Step:
    """Build the per-record function for one field.

    `step_general` implements the whole contract. The specialised steps below it handle
    the common cases inline (a present value, or a null that is simply emitted as null)
    and hand anything else, including every error, to `step_general`, which recomputes
    the field from the record; steps are pure, so doing the work twice on the rare path
    is safe and keeps the common path short.
    """
    spec = item.spec
    key = item.coercion.key
    source = spec.source
    get = item.get
    transform = item.transform
    value_map = item.value_map
    coerce = item.coercion.coerce
    empty = _empty_handler(item)
    passthrough = _PASSTHROUGH_TYPES.get(coerce)
    emits_null = item.coercion.nullable and item.default is None and not spec.required

    def map_value(value: Any, raw: Any, data: dict[str, Any], result: MappingResult) -> None:
        """Steps 2-5 for a value already read; `raw` is what the path gave."""
        if transform is not None:
            try:
                value = transform(None if value is MISSING else value)
            except TransformError as exc:
                result.errors.append(
                    FieldError(field=key, value=raw, reason=exc.reason, source=source)
                )
                return
        if value_map is not None and value is not None and value is not MISSING:
            mapped_key = lookup_key(value)
            if mapped_key is not None and mapped_key in value_map:
                value = value_map[mapped_key]
        if value is None or value is MISSING:
            empty(raw, data, result)
            return
        try:
            data[key] = coerce(value)
        except CoercionError as exc:
            result.errors.append(
                FieldError(field=key, value=value, reason=exc.reason, source=source)
            )

    if get is None:

        def step_constant(record: Any, data: dict[str, Any], result: MappingResult) -> None:
            map_value(MISSING, MISSING, data, result)

        return step_constant

    def step_general(record: Any, data: dict[str, Any], result: MappingResult) -> None:
        try:
            raw = get(record)
        except PathShapeError as exc:
            result.errors.append(
                FieldError(field=key, value=exc.found, reason=str(exc), source=source)
            )
            return
        map_value(raw, raw, data, result)

    # The fast steps read one-key paths with a C-level itemgetter (a missing key raises and
    # takes the general path); longer paths use the compiled getter.
    segments = parse_path(source or "")
    read: PathGetter = get
    if len(segments) == 1 and isinstance(segments[0], str):
        read = itemgetter(segments[0])
    rare = (PathShapeError, TransformError, CoercionError, LookupError, TypeError)

    if transform is not None and value_map is None:

        def step_transform(record: Any, data: dict[str, Any], result: MappingResult) -> None:
            try:
                raw = read(record)
                value = transform(None if raw is MISSING else raw)
                if value is not None:
                    data[key] = value if type(value) is passthrough else coerce(value)
                    return
                if raw is None and emits_null:
                    data[key] = None
                    return
            except rare:
                pass
            step_general(record, data, result)

        return step_transform

    if value_map is not None and transform is None:

        def step_value_map(record: Any, data: dict[str, Any], result: MappingResult) -> None:
            try:
                raw = read(record)
                if type(raw) is str and raw in value_map:
                    value = value_map[raw]
                    if value is not None:
                        data[key] = value
                        return
            except rare:
                pass
            step_general(record, data, result)

        return step_value_map

    if transform is not None:
        return step_general

    def step_direct(record: Any, data: dict[str, Any], result: MappingResult) -> None:
        try:
            raw = read(record)
            if type(raw) is passthrough:
                data[key] = raw
                return
            if raw is None:
                if emits_null:
                    data[key] = None
                    return
            elif raw is not MISSING:
                data[key] = coerce(raw)
                return
        except rare:
            pass
        step_general(record, data, result)

    return step_direct


def _empty_handler(item: _Resolved) -> Callable[[Any, dict[str, Any], MappingResult], None]:
    """What a field does when its value is null or missing after transform and value map."""
    spec = item.spec
    key = item.coercion.key
    source = spec.source
    default = item.default
    nullable = item.coercion.nullable
    model_default = item.coercion.has_default
    required = spec.required

    def on_empty(raw: Any, data: dict[str, Any], result: MappingResult) -> None:
        if default is not None:
            data[key] = default
        elif required:
            where = "the source is missing from the record" if raw is MISSING else "no value"
            result.errors.append(
                FieldError(field=key, value=None, reason=f"required field: {where}", source=source)
            )
        elif raw is MISSING:
            result.warnings.append(
                FieldError(
                    field=key,
                    value=None,
                    reason="the source is missing from the record; field left out",
                    source=source,
                )
            )
        elif nullable:
            data[key] = None
        elif model_default:
            result.warnings.append(
                FieldError(
                    field=key,
                    value=None,
                    reason="null for a field that does not take null; left to the model default",
                    source=source,
                )
            )
        else:
            result.errors.append(
                FieldError(
                    field=key,
                    value=None,
                    reason=f"null for a field that needs {item.coercion.type_name}",
                    source=source,
                )
            )

    return on_empty
