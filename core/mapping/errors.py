"""What mapping and validation report about single fields, and the config error that carries
them (the API answers it with 422 and the list)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class FieldError(BaseModel):
    """One problem with one field: which field, the value at fault, and why.

    Used for errors (the field could not be mapped) and for warnings (the field was mapped,
    skipped or left to a default, and someone may want to know). `value` is the value as it
    was when the step failed: the source value for path and transform failures, the
    transformed value for coercion failures.
    """

    model_config = ConfigDict(frozen=True)

    field: str
    value: Any = None
    reason: str
    source: str | None = None

    def __str__(self) -> str:
        where = f" (from {self.source!r})" if self.source else ""
        shown = repr(self.value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return f"{self.field}{where}: {self.reason} [value: {shown}]"


class MappingConfigError(ValueError):
    """A field-mapping or custom-transform configuration cannot be compiled."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("invalid mapping configuration: " + "; ".join(map(str, errors)))
        self.errors = errors
