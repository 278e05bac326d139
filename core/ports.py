"""Ports: the Protocols the domain uses for every external dependency.

Adapters in `core/adapters/local` (embedded defaults) and `core/adapters/azure` implement
them; the composition root (`core/runtime.py`) picks one per port. Adapters raise only
the errors in `core/errors.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

Document = dict[str, Any]

# --------------------------------------------------------------------------------------
# Document store (Cosmos containers / SQLite tables of the same names)
# --------------------------------------------------------------------------------------

FilterOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "contains", "exists"]


@dataclass(frozen=True, slots=True)
class Filter:
    """One condition on a document path (dotted, e.g. `structuredData.stage`)."""

    path: str
    op: FilterOp
    value: Any = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Document]
    continuation: str | None


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """A container's shape: partition key path (one top-level field) and default TTL."""

    name: str
    partition_key: str
    default_ttl_seconds: int | None = None

    @property
    def partition_field(self) -> str:
        return self.partition_key.lstrip("/")


class DocumentStore(Protocol):
    """JSON documents in named containers, partitioned, with etags and TTL.

    Every stored document carries `_etag` (opaque) and `_ts` (epoch seconds). A document
    may carry `ttl` (seconds) to override the container's default TTL.
    """

    def get(self, container: str, partition_key: str, id: str) -> Document | None: ...

    def get_many(
        self, container: str, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Document]:
        """Point reads of many (partition key, id) pairs at once; absent ones are left out."""
        ...

    def create(self, container: str, doc: Document) -> Document:
        """Insert; ConflictError if the id already exists in the partition."""
        ...

    def upsert(self, container: str, doc: Document, *, if_match: str | None = None) -> Document:
        """Insert or replace; with `if_match`, replace only if the stored etag matches
        (ConflictError otherwise, including when the document is gone)."""
        ...

    def upsert_many(self, container: str, docs: Sequence[Document]) -> list[Document]:
        """Batched unconditional upsert, the hot path's write."""
        ...

    def delete(
        self, container: str, partition_key: str, id: str, *, if_match: str | None = None
    ) -> bool: ...

    def query(
        self,
        container: str,
        *,
        partition_key: str | None = None,
        filters: Sequence[Filter] = (),
        order_by: str | None = None,
        descending: bool = False,
        limit: int = 100,
        continuation: str | None = None,
    ) -> Page:
        """Parameterised query; `partition_key=None` is a cross-partition query.
        Pages are stable: a continuation resumes after the last item returned."""
        ...

    def count(
        self, container: str, *, partition_key: str | None = None, filters: Sequence[Filter] = ()
    ) -> int: ...

    def ping(self) -> None:
        """Raise a PortError if the store cannot be reached."""
        ...


# --------------------------------------------------------------------------------------
# Bus (Service Bus / SQLite bus with Service Bus semantics)
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class OutboundMessage:
    body: bytes
    message_id: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    content_type: str | None = "application/json"
    application_properties: dict[str, str | int | float | bool] = field(default_factory=dict)
    scheduled_enqueue_time: datetime | None = None
    time_to_live: timedelta | None = None


@dataclass(slots=True)
class ReceivedMessage:
    entity: str
    body: bytes
    message_id: str
    sequence_number: int
    delivery_count: int
    enqueued_time: datetime
    lock_token: str
    locked_until: datetime
    correlation_id: str | None = None
    subject: str | None = None
    content_type: str | None = None
    application_properties: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    scheduled_enqueue_time: datetime | None = None
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None


@dataclass(frozen=True, slots=True)
class EntityDepth:
    entity: str
    active: int
    scheduled: int
    locked: int
    dead_letter: int


class Bus(Protocol):
    """Queues and topic subscriptions with peek-lock settlement.

    Entity names: a queue's name, a topic's name (send only), or
    `<topic>/subscriptions/<subscription>` (receive / DLQ operations).
    """

    def send(self, entity: str, messages: Sequence[OutboundMessage]) -> None: ...

    def receive(
        self, entity: str, *, max_messages: int = 1, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]: ...

    def complete(self, message: ReceivedMessage) -> None: ...

    def abandon(self, message: ReceivedMessage, *, error: str | None = None) -> None: ...

    def dead_letter(self, message: ReceivedMessage, *, reason: str, description: str) -> None: ...

    def renew_lock(self, message: ReceivedMessage) -> datetime: ...

    def peek_dead_letters(
        self, entity: str, *, max_messages: int = 100
    ) -> list[ReceivedMessage]: ...

    def replay_dead_letters(self, entity: str, *, message_ids: Sequence[str] | None = None) -> int:
        """Move dead-lettered messages back to the entity (all, or the named ones)."""
        ...

    def depth(self, entity: str) -> EntityDepth: ...

    def entities(self) -> list[str]:
        """Every receivable entity: queues and subscriptions."""
        ...

    def ping(self) -> None: ...


# --------------------------------------------------------------------------------------
# Blobs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlobInfo:
    container: str
    name: str
    size: int
    content_type: str | None
    metadata: dict[str, str]
    etag: str
    created_at: datetime
    sequence: int = 0


class BlobStore(Protocol):
    def put(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> BlobInfo: ...

    def get(self, container: str, name: str) -> bytes:
        """NotFoundError if absent."""
        ...

    def info(self, container: str, name: str) -> BlobInfo | None: ...

    def delete(self, container: str, name: str) -> bool: ...

    def list(self, container: str, *, prefix: str = "") -> Iterator[BlobInfo]: ...

    def download_url(self, container: str, name: str, *, expires_in: timedelta) -> str: ...

    def ping(self) -> None: ...


@runtime_checkable
class BlobEventSource(Protocol):
    """New-blob events in arrival order (the local host's blob trigger reads these)."""

    def created_since(self, sequence: int, *, limit: int = 100) -> list[BlobInfo]: ...


# --------------------------------------------------------------------------------------
# Secrets, clock, telemetry
# --------------------------------------------------------------------------------------


class SecretStore(Protocol):
    """Names follow `{tenantId}--{integrationId}--{kind}`. Values are never logged."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> None: ...

    def ping(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC."""
        ...


HealthProbe = Callable[[], None]
