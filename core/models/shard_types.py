"""Shard type definitions and their start-up registration (seeds 0.1, 002 Q9/Q10).

Every shard type is defined in code (`core/models/shards.py`) and written to the
`shard_types` container (partition key `/name`, id = name) before any consumer runs:
created when missing, updated when the code's `schemaVersion` is newer than the stored one,
left alone otherwise. A stored version *newer* than the code's is left alone too: during a
rolling deployment an old instance must not downgrade what a new one wrote.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from core.containers import SHARD_TYPES
from core.errors import ConflictError, TransientError
from core.models.shards import (
    STRUCTURED_DATA_MODELS,
    CamelModel,
    ShardTypeCategory,
    StructuredData,
    UtcDateTime,
    structured_data_model,
)
from core.ports import Clock, DocumentStore

logger = logging.getLogger(__name__)

EnsureOutcome = Literal["created", "updated", "unchanged", "newer_in_store"]

ENSURE_ATTEMPTS = 3
ENSURE_BASE_DELAY_SECONDS = 1.0


class ShardTypeDefinition(CamelModel):
    """The document stored in `shard_types`."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str
    category: ShardTypeCategory
    schema_version: str = Field(pattern=r"^\d+\.\d+$")
    json_schema: dict[str, Any]
    vector_text_field: str | None = Field(
        None, description="The structuredData field vectorization embeds; none: not vectorized"
    )
    created_at: UtcDateTime | None = None
    updated_at: UtcDateTime | None = None

    @classmethod
    def from_model(cls, model: type[StructuredData]) -> ShardTypeDefinition:
        return cls(
            id=model.SHARD_TYPE_NAME,
            name=model.SHARD_TYPE_NAME,
            description=model.DESCRIPTION,
            category=model.CATEGORY,
            schema_version=model.SCHEMA_VERSION,
            json_schema=model.model_json_schema(by_alias=True),
            vector_text_field=model.VECTOR_TEXT_FIELD,
        )


SHARD_TYPE_DEFINITIONS: dict[str, ShardTypeDefinition] = {
    name: ShardTypeDefinition.from_model(model) for name, model in STRUCTURED_DATA_MODELS.items()
}


def shard_type_definition(name: str) -> ShardTypeDefinition:
    """PermanentError naming the type when it is not one this code defines."""
    structured_data_model(name)
    return SHARD_TYPE_DEFINITIONS[name]


class ShardTypeSetupError(RuntimeError):
    """Start-up could not ensure a shard type; consumers must not start."""

    def __init__(self, shard_type_name: str, attempts: int, cause: Exception) -> None:
        super().__init__(
            f"could not ensure shard type {shard_type_name!r} after {attempts} attempt(s): "
            f"{type(cause).__name__}: {cause}"
        )
        self.shard_type_name = shard_type_name


def _version(value: object) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    major, _, minor = value.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


def _now(clock: Clock | None) -> datetime:
    return clock.now() if clock is not None else datetime.now(UTC)


def _ensure_one(
    store: DocumentStore, definition: ShardTypeDefinition, clock: Clock | None
) -> EnsureOutcome:
    stored = store.get(SHARD_TYPES.name, definition.name, definition.id)
    now = _now(clock)
    if stored is None:
        document = definition.model_copy(update={"created_at": now, "updated_at": now})
        store.create(SHARD_TYPES.name, document.model_dump(mode="json", by_alias=True))
        return "created"
    stored_version = _version(stored.get("schemaVersion"))
    code_version = _version(definition.schema_version)
    if stored_version is not None and code_version is not None:
        if stored_version == code_version:
            return "unchanged"
        if stored_version > code_version:
            return "newer_in_store"
    document = definition.model_copy(update={"created_at": now, "updated_at": now})
    body = document.model_dump(mode="json", by_alias=True)
    if isinstance(stored.get("createdAt"), str):
        body["createdAt"] = stored["createdAt"]
    store.upsert(SHARD_TYPES.name, body, if_match=stored.get("_etag"))
    return "updated"


def ensure_shard_types(
    store: DocumentStore,
    clock: Clock | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = ENSURE_ATTEMPTS,
    base_delay_seconds: float = ENSURE_BASE_DELAY_SECONDS,
) -> dict[str, EnsureOutcome]:
    """Make the store hold every shard type this code defines. Idempotent: when all are
    current it only reads. Transient store errors and lost races (another instance starting
    at the same time) are retried with exponential backoff; anything else, or exhausting
    the attempts, raises ShardTypeSetupError so that start-up fails loudly."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    outcomes: dict[str, EnsureOutcome] = {}
    for name, definition in SHARD_TYPE_DEFINITIONS.items():
        for attempt in range(attempts):
            try:
                outcomes[name] = _ensure_one(store, definition, clock)
                break
            except (TransientError, ConflictError) as exc:
                if attempt + 1 == attempts:
                    raise ShardTypeSetupError(name, attempts, exc) from exc
                delay = base_delay_seconds * 2**attempt
                logger.warning(
                    "ensuring shard type %s failed (attempt %d/%d), retrying in %.1fs: %s",
                    name,
                    attempt + 1,
                    attempts,
                    delay,
                    exc,
                )
                sleep(delay)
            except Exception as exc:
                raise ShardTypeSetupError(name, attempt + 1, exc) from exc
        if outcomes[name] == "newer_in_store":
            logger.warning(
                "shard type %s: the store holds a newer schemaVersion than %s; left as is",
                name,
                definition.schema_version,
            )
        elif outcomes[name] != "unchanged":
            logger.info(
                "shard type %s %s (schemaVersion %s)",
                name,
                outcomes[name],
                definition.schema_version,
            )
    return outcomes


def ensure_shard_type(store: DocumentStore, name: str, clock: Clock | None = None) -> EnsureOutcome:
    """On-the-fly creation of one missing type at run time: one attempt, no sleeping inside
    a message handler (the caller's message retry is the backoff). PermanentError for a
    type this code does not define; store errors propagate as they are."""
    definition = shard_type_definition(name)
    try:
        return _ensure_one(store, definition, clock)
    except ConflictError:
        return _ensure_one(store, definition, clock)
