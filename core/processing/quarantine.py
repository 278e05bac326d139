"""Quarantine: records that failed for good, kept 30 days with their error and raw data so
an admin can fix the cause and replay them. Nothing that fails is dropped."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from core import containers
from core.mapping import FieldError
from core.models.shards import CamelModel
from core.ports import DocumentStore

QUARANTINE_NAMESPACE = uuid.UUID("0f3e8a55-6a55-4c3c-9d0e-3a8f0b7d2c11")


class QuarantinedRecord(CamelModel):
    id: str
    tenant_id: str
    integration_id: str
    entity_type: str | None = None
    external_id: str | None = None
    sync_task_id: str | None = None
    idempotency_key: str
    correlation_id: str
    error_code: str
    error: str
    field_errors: list[dict[str, Any]] = Field(default_factory=list)
    raw_data: dict[str, Any] | None = None
    attempts: int = 1
    status: Literal["quarantined", "replayed", "discarded"] = "quarantined"
    quarantined_at: datetime
    replayed_at: datetime | None = None


def quarantine_id(idempotency_key: str) -> str:
    """One quarantine entry per record and sync, however often it is redelivered."""
    return str(uuid.uuid5(QUARANTINE_NAMESPACE, idempotency_key))


def describe(errors: list[FieldError]) -> str:
    return "; ".join(str(error) for error in errors)


def field_error_dicts(errors: list[FieldError]) -> list[dict[str, Any]]:
    return [
        {"field": e.field, "value": e.value, "reason": e.reason, "source": e.source} for e in errors
    ]


def write_quarantine(store: DocumentStore, records: list[QuarantinedRecord]) -> None:
    if records:
        store.upsert_many(
            containers.QUARANTINE.name,
            [r.model_dump(mode="json", by_alias=True) for r in records],
        )
