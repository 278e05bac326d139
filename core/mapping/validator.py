"""Validation of mapped shard data before it is stored, with the seeds' three strictness
modes:

* `strict` (development): any field error, unknown field or model error rejects the
  record; every problem is returned as an error and the processor quarantines the
  record. An optional field whose source is absent is not a problem with the data (CRMs
  and webhooks omit empty fields): it stays a warning and the record is kept.
* `lenient` (production): fields that fail are dropped and reported as warnings, and the
  record is kept. It is still rejected when what is left cannot be a valid record (a
  required field failed or is missing, or a model-level rule fails), because storing it
  would produce a shard the model cannot read.
* `audit`: nothing is dropped or rejected. Every problem is recorded as an error, the data
  is stored as it came (including the values the mapper could not convert), so that a
  tenant can see what a stricter mode would do before switching to it.

The whole record is validated against the shard type's pydantic model here, so rules that
need more than one field (model validators, field validators, required fields nobody
mapped) are enforced once per record, after mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from core.mapping.errors import FieldError
from core.mapping.mapper import MappingResult

RECORD_FIELD = "(record)"


class ValidationMode(StrEnum):
    STRICT = "strict"
    LENIENT = "lenient"
    AUDIT = "audit"


@dataclass(slots=True)
class ValidationOutcome:
    """`accepted` says whether to store `data`; `errors` say why not (or, in audit mode,
    what is wrong with what was stored); `warnings` say what was dropped or left out."""

    accepted: bool
    data: dict[str, Any]
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[FieldError] = field(default_factory=list)


@lru_cache(maxsize=256)
def _known_keys(model: type[BaseModel]) -> frozenset[str]:
    """Field names and aliases; per model, not per record."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        keys.add(info.alias or name)
        keys.add(name)
    return frozenset(keys)


def _errors_of(exc: ValidationError) -> list[FieldError]:
    problems = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or RECORD_FIELD
        value = error.get("input") if error["loc"] else None
        problems.append(FieldError(field=location, value=value, reason=error["msg"]))
    return problems


class ShardValidator:
    """Validates one record's structured data against its shard type model.

    With `json_data`, accepted data comes back in JSON form (dates as ISO strings), as a
    store writes it: dumping the model in JSON mode once is cheaper than dumping it to
    Python objects and converting those afterwards, which matters per record."""

    def __init__(self, mode: ValidationMode | str, *, json_data: bool = False) -> None:
        self.mode = ValidationMode(mode)
        self._dump_mode: Literal["json", "python"] = "json" if json_data else "python"

    def validate_mapping(self, result: MappingResult, model: type[BaseModel]) -> ValidationOutcome:
        """Validate a mapper result, taking its field errors and warnings into account."""
        return self.validate(
            result.data, model, mapping_errors=result.errors, mapping_warnings=result.warnings
        )

    def validate(
        self,
        data: Mapping[str, Any],
        model: type[BaseModel],
        *,
        mapping_errors: Iterable[FieldError] = (),
        mapping_warnings: Iterable[FieldError] = (),
    ) -> ValidationOutcome:
        """Keys in `data` that are not fields of `model` (when the model does not keep extra
        fields) are problems too: dropped with a warning (lenient), an error (strict), or
        kept and recorded (audit)."""
        mapping_errors = list(mapping_errors)
        mapping_warnings = list(mapping_warnings)
        if model.model_config.get("extra") == "allow":
            unknown: list[FieldError] = []
            candidate = dict(data)
        else:
            known = _known_keys(model)
            unknown = [
                FieldError(field=key, value=value, reason=f"not a field of {model.__name__}")
                for key, value in data.items()
                if key not in known
            ]
            candidate = {key: value for key, value in data.items() if key in known}
        if self.mode is ValidationMode.STRICT:
            return self._strict(candidate, model, [*mapping_errors, *unknown], mapping_warnings)
        if self.mode is ValidationMode.LENIENT:
            return self._lenient(candidate, model, mapping_errors, [*mapping_warnings, *unknown])
        return self._audit(data, model, mapping_errors, [*mapping_warnings, *unknown])

    def _strict(
        self,
        data: dict[str, Any],
        model: type[BaseModel],
        problems: list[FieldError],
        warnings: list[FieldError],
    ) -> ValidationOutcome:
        try:
            instance = model.model_validate(data)
        except ValidationError as exc:
            problems = [*problems, *_errors_of(exc)]
            return ValidationOutcome(accepted=False, data={}, errors=problems, warnings=warnings)
        if problems:
            return ValidationOutcome(accepted=False, data={}, errors=problems, warnings=warnings)
        return ValidationOutcome(
            accepted=True,
            data=instance.model_dump(mode=self._dump_mode, by_alias=True, exclude_unset=True),
            warnings=warnings,
        )

    def _lenient(
        self,
        data: dict[str, Any],
        model: type[BaseModel],
        mapping_errors: list[FieldError],
        warnings: list[FieldError],
    ) -> ValidationOutcome:
        warnings = [
            *warnings,
            *(
                error.model_copy(update={"reason": f"{error.reason}; field dropped"})
                for error in mapping_errors
            ),
        ]
        try:
            instance = model.model_validate(data)
        except ValidationError as exc:
            problems = _errors_of(exc)
            droppable = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
            remaining = {key: value for key, value in data.items() if key not in droppable}
            try:
                instance = model.model_validate(remaining)
            except ValidationError as second:
                reported = {problem.field for problem in problems}
                return ValidationOutcome(
                    accepted=False,
                    data={},
                    errors=[
                        *problems,
                        *(error for error in _errors_of(second) if error.field not in reported),
                    ],
                    warnings=warnings,
                )
            warnings += [
                error.model_copy(update={"reason": f"{error.reason}; field dropped"})
                for error in problems
            ]
        return ValidationOutcome(
            accepted=True,
            data=instance.model_dump(mode=self._dump_mode, by_alias=True, exclude_unset=True),
            warnings=warnings,
        )

    def _audit(
        self,
        data: Mapping[str, Any],
        model: type[BaseModel],
        mapping_errors: list[FieldError],
        mapping_warnings: list[FieldError],
    ) -> ValidationOutcome:
        kept = dict(data)
        for error in mapping_errors:
            if error.field not in kept and error.value is not None:
                kept[error.field] = error.value
        try:
            model.model_validate(kept)
        except ValidationError as exc:
            reported = {error.field for error in mapping_errors}
            problems = [
                *mapping_errors,
                *(error for error in _errors_of(exc) if error.field not in reported),
            ]
        else:
            problems = list(mapping_errors)
        if self._dump_mode == "json":
            kept = to_jsonable_python(kept)
        return ValidationOutcome(
            accepted=True, data=kept, errors=problems, warnings=mapping_warnings
        )
