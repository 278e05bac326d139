"""The sync worker: one sync task in, the provider's records out as raw events.

Records go out as single `integration.data.raw` events while a sync has at most 100 of
them and as `integration.data.raw.batch` events of 50 above that (seeds 2.1), all with
the execution's correlation id. Envelope and message ids are deterministic, so a task
that is redelivered after a crash republishes the same messages: the broker drops them
as duplicates and the processor's idempotency keys make any that get through harmless.
An entity type's cursor in `sync_state` advances only after its records were published.

Overlap: an incremental sync reads from the stored cursor minus `cursor_overlap` (5 minutes
by default) when the cursor is an ISO 8601 time, so a record committed after its page was
read but stamped earlier than that page's cursor (clock skew, long transactions) is read
by the next sync. Opaque cursors (provider tokens) are passed back unchanged. Re-reading
costs little: the sync state also keeps fingerprints of the last `RECENT_RECORDS_KEPT`
records fetched, and a re-read record whose content is unchanged is not published again
(a full sync publishes everything). The saved cursor never moves back.

Daily API limits: when the adapter raises `DailyLimitReached`, what was fetched is
published, each entity type fetched so far keeps the cursor of its last page (entity types
not reached keep theirs), and the execution ends `partial` with an error saying so; the
next sync resumes from those cursors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core import containers
from core.errors import AuthError, PermanentError
from core.integrations.repository import IntegrationRepository
from core.logging import log_context
from core.messaging import topology
from core.models import crm_events
from core.models.integration import SyncExecution, TenantIntegration
from core.ports import Bus, Clock, DocumentStore, OutboundMessage, SecretStore
from core.providers.base import DailyLimitReached, ProviderAdapter
from core.providers.registry import build_provider
from core.sync.executions import SyncExecutions, SyncTask

log = logging.getLogger(__name__)

SINGLE_EVENT_LIMIT = 100
BATCH_SIZE = 50
TOTAL_UPDATE_EVERY = 1000
FINISHED = ("completed", "partial", "failed", "cancelled")
DEFAULT_CURSOR_OVERLAP = timedelta(minutes=5)
RECENT_RECORDS_KEPT = 1000
"""Fingerprints kept per entity type (~45 bytes each in the sync state document). They are
stored as one JSON string, `recentRecords`, so the store indexes one value rather than a
property path per record."""

_INSTANT_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_OFFSET_WITHOUT_COLON = re.compile(r"[+-]\d{4}$")

ProviderFactory = Callable[..., ProviderAdapter]


def idempotency_key(integration_id: str, external_id: str, sync_task_id: str) -> str:
    return f"{integration_id}-{external_id}-{sync_task_id}"


def sync_state_id(integration_id: str, entity_type: str) -> str:
    return f"{integration_id}:{entity_type}"


def cursor_instant(cursor: str) -> datetime | None:
    """The cursor as an aware time when it is ISO 8601 date-time text; None if opaque."""
    if not _INSTANT_PREFIX.match(cursor):
        return None
    try:
        parsed = datetime.fromisoformat(cursor)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def rewind_cursor(cursor: str, overlap: timedelta) -> str:
    """A time cursor moved back by `overlap`, written the way the provider wrote it (same
    separator, offset style and precision); an opaque cursor unchanged."""
    instant = cursor_instant(cursor)
    if instant is None or not overlap:
        return cursor
    moment = instant - overlap
    if moment.microsecond % 1000:
        timespec = "microseconds"
    elif moment.microsecond or "." in cursor:
        timespec = "milliseconds"
    else:
        timespec = "seconds"
    naive = datetime.fromisoformat(cursor).tzinfo is None
    text = (moment.replace(tzinfo=None) if naive else moment).isoformat(
        sep=cursor[10], timespec=timespec
    )
    if cursor.endswith("Z"):
        return text[:-6] + "Z"
    if _OFFSET_WITHOUT_COLON.search(cursor):
        return text[:-3] + text[-2:]
    return text


def later_cursor(current: str | None, reached: str | None) -> str | None:
    """The cursor to keep: `reached`, unless both are times and `current` is later (a
    re-read through the overlap must not move the saved cursor back)."""
    if reached is None:
        return current
    if current is None:
        return reached
    current_at, reached_at = cursor_instant(current), cursor_instant(reached)
    if current_at is not None and reached_at is not None and current_at > reached_at:
        return current
    return reached


def _decode_recent(stored: Any) -> dict[str, str]:
    """The fingerprints a sync state holds; unreadable ones count as none (the records
    are then published again, which is harmless)."""
    if not isinstance(stored, str):
        return {}
    try:
        pairs = json.loads(stored)
        return {str(external_id): str(fingerprint) for external_id, fingerprint in pairs}
    except (ValueError, TypeError):
        log.warning("ignoring unreadable recentRecords in a sync state")
        return {}


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
"""Built once: `json.dumps` with options builds an encoder per call (per record here)."""


def record_fingerprint(record: Mapping[str, Any]) -> str:
    canonical = _CANONICAL.encode(record)
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


@dataclass
class _EntityFetch:
    """One entity type's progress in a run: the cursor reached by its published pages and
    the fingerprints of its newest records."""

    entity_type: str
    cursor: str | None
    known: Mapping[str, str]
    recent: dict[str, str] = field(default_factory=dict)
    skipped: int = 0

    def is_unchanged(self, external_id: str, fingerprint: str) -> bool:
        return self.known.get(external_id) == fingerprint

    def remember(self, external_id: str, fingerprint: str) -> None:
        self.recent.pop(external_id, None)
        self.recent[external_id] = fingerprint
        if len(self.recent) > RECENT_RECORDS_KEPT:
            del self.recent[next(iter(self.recent))]


@dataclass
class _Publisher:
    """Buffers the first 100 records; past that, switches to batches of 50 per type."""

    bus: Bus
    task: SyncTask
    config_version: int
    on_published: Callable[[int], None]
    buffered: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    batches: dict[str, list[tuple[dict[str, Any], str]]] = field(default_factory=dict)
    batch_numbers: dict[str, int] = field(default_factory=dict)
    batch_mode: bool = False
    count: int = 0

    def add(self, entity_type: str, record: dict[str, Any], external_id: str) -> None:
        self.count += 1
        if not self.batch_mode:
            self.buffered.append((entity_type, record, external_id))
            if len(self.buffered) <= SINGLE_EVENT_LIMIT:
                return
            self.batch_mode = True
            pending, self.buffered = self.buffered, []
            for item in pending:
                self._add_to_batch(*item)
            return
        self._add_to_batch(entity_type, record, external_id)

    def _add_to_batch(self, entity_type: str, record: dict[str, Any], external_id: str) -> None:
        batch = self.batches.setdefault(entity_type, [])
        batch.append((record, external_id))
        if len(batch) >= BATCH_SIZE:
            self._send_batch(entity_type)

    def _key(self, external_id: str) -> str:
        return idempotency_key(self.task.integration_id, external_id, self.task.sync_task_id)

    def _send_batch(self, entity_type: str) -> None:
        batch = self.batches.pop(entity_type, [])
        if not batch:
            return
        number = self.batch_numbers.get(entity_type, 0)
        self.batch_numbers[entity_type] = number + 1
        message_key = f"{self.task.sync_task_id}:{entity_type}:{number}"
        payload = crm_events.DataRawBatch(
            integration_id=self.task.integration_id,
            tenant_id=self.task.tenant_id,
            entity_type=entity_type,
            records=[
                crm_events.RawRecord(
                    raw_data=record, external_id=external_id, idempotency_key=self._key(external_id)
                )
                for record, external_id in batch
            ],
            sync_task_id=self.task.sync_task_id,
            correlation_id=self.task.correlation_id,
            batch_size=len(batch),
            metadata={"configVersion": self.config_version},
        )
        self._send([(message_key, crm_events.DATA_RAW_BATCH, payload)])
        self.on_published(len(batch))

    def _send(self, items: Sequence[tuple[str, str, crm_events.EventPayload]]) -> None:
        messages: list[OutboundMessage] = []
        for key, event_type, payload in items:
            envelope = crm_events.make_event(event_type, payload, source="sync-worker")
            messages.append(envelope.model_copy(update={"id": key}).to_message(message_id=key))
        self.bus.send(topology.INTEGRATION_DATA_RAW, messages)

    def finish(self) -> None:
        if self.batch_mode:
            for entity_type in list(self.batches):
                self._send_batch(entity_type)
            return
        singles = []
        for entity_type, record, external_id in self.buffered:
            key = self._key(external_id)
            payload = crm_events.DataRaw(
                integration_id=self.task.integration_id,
                tenant_id=self.task.tenant_id,
                entity_type=entity_type,
                raw_data=record,
                external_id=external_id,
                sync_task_id=self.task.sync_task_id,
                idempotency_key=key,
                correlation_id=self.task.correlation_id,
                metadata={"configVersion": self.config_version},
            )
            singles.append((key, crm_events.DATA_RAW, payload))
        for start in range(0, len(singles), BATCH_SIZE):
            self._send(singles[start : start + BATCH_SIZE])
        self.on_published(len(singles))
        self.buffered = []


class SyncWorker:
    def __init__(
        self,
        store: DocumentStore,
        bus: Bus,
        secrets: SecretStore,
        clock: Clock,
        *,
        provider_factory: ProviderFactory = build_provider,
        cursor_overlap: timedelta = DEFAULT_CURSOR_OVERLAP,
    ) -> None:
        self._store = store
        self._bus = bus
        self._secrets = secrets
        self._clock = clock
        self._executions = SyncExecutions(store, bus, clock)
        self._integrations = IntegrationRepository(store)
        self._provider_factory = provider_factory
        self._cursor_overlap = cursor_overlap

    def run(self, task: SyncTask) -> SyncExecution:
        with log_context(
            tenantId=task.tenant_id,
            integrationId=task.integration_id,
            correlationId=task.correlation_id,
        ):
            execution = self._executions.get(task.tenant_id, task.sync_task_id)
            if execution.status in FINISHED:
                log.info("sync %s already %s; nothing to do", execution.id, execution.status)
                return execution
            try:
                return self._run(task)
            except (PermanentError, AuthError) as exc:
                log.error("sync %s failed: %s", task.sync_task_id, exc)
                return self._executions.fail(execution, str(exc))

    def give_up(self, task: SyncTask, error: Exception) -> None:
        """Transient failures exhausted their retries: the execution fails, loudly."""
        execution = self._executions.get(task.tenant_id, task.sync_task_id)
        self._executions.fail(execution, f"gave up after retries: {error}")

    def _entity_types(
        self, task: SyncTask, integration: TenantIntegration, adapter: ProviderAdapter
    ) -> list[str]:
        enabled = [m.entity_type for m in integration.sync_config.entity_mappings if m.enabled]
        requested = task.entity_types or enabled
        unknown = [t for t in requested if t.casefold() not in {e.casefold() for e in enabled}]
        if unknown:
            raise PermanentError(
                f"entity type(s) {', '.join(unknown)} have no enabled mapping in integration "
                f"{integration.id!r}"
            )
        available = {t.casefold() for t in adapter.entity_types()}
        return [t for t in requested if t.casefold() in available]

    def _run(self, task: SyncTask) -> SyncExecution:
        integration = self._integrations.get(task.tenant_id, task.integration_id)
        adapter = self._provider_factory(
            integration.integration_type_id,
            integration.connection.settings,
            secrets=self._secrets,
            integration=integration,
        )
        try:
            return self._sync(task, integration, adapter)
        finally:
            close = getattr(adapter, "close", None)
            if callable(close):
                close()

    def _sync(
        self, task: SyncTask, integration: TenantIntegration, adapter: ProviderAdapter
    ) -> SyncExecution:
        entity_types = self._entity_types(task, integration, adapter)
        started = self._clock.now()

        def begin(current: SyncExecution) -> SyncExecution:
            current.status = "processing"
            current.started_at = current.started_at or started
            current.entity_types = entity_types
            current.counters.total = 0
            current.publishing_complete = False
            current.limit_reached = False
            current.error = None
            return current

        execution = self._executions.update(task.tenant_id, task.sync_task_id, begin)
        self._executions.publish_started(execution)
        published = [0]

        def on_published(count: int) -> None:
            before = published[0]
            published[0] += count
            if published[0] // TOTAL_UPDATE_EVERY != before // TOTAL_UPDATE_EVERY:
                self._set_total(task, published[0], complete=False)

        publisher = _Publisher(self._bus, task, integration.config_version, on_published)
        fetches: list[_EntityFetch] = []
        limit_error: str | None = None
        for entity_type in entity_types:
            fetch = self._start_fetch(task, entity_type)
            fetches.append(fetch)
            try:
                self._fetch(adapter, task, fetch, publisher)
            except DailyLimitReached as exc:
                limit_error = (
                    f"the provider's daily API limit was reached while fetching {entity_type} "
                    f"({exc}); what was fetched is published and the next sync resumes from "
                    "the saved cursor"
                )
                log.warning("sync %s: %s", task.sync_task_id, limit_error)
                break
        publisher.finish()
        self._set_total(task, publisher.count, complete=True, limit_error=limit_error)
        self._save_state(task, fetches)
        log.info(
            "sync %s published %d record(s)",
            task.sync_task_id,
            publisher.count,
            extra={
                "entityTypes": entity_types,
                "mode": task.mode,
                "unchangedReReads": sum(fetch.skipped for fetch in fetches),
                "limitReached": limit_error is not None,
            },
        )
        return self._executions.refresh(task.tenant_id, task.sync_task_id)

    def _start_fetch(self, task: SyncTask, entity_type: str) -> _EntityFetch:
        state = self._store.get(
            containers.SYNC_STATE.name,
            task.tenant_id,
            sync_state_id(task.integration_id, entity_type),
        )
        state = state or {}
        incremental = task.mode == "incremental"
        return _EntityFetch(
            entity_type=entity_type,
            cursor=state.get("cursor"),
            known=_decode_recent(state.get("recentRecords")) if incremental else {},
        )

    def _fetch(
        self,
        adapter: ProviderAdapter,
        task: SyncTask,
        fetch: _EntityFetch,
        publisher: _Publisher,
    ) -> None:
        """Fetch and publish one entity type; `fetch.cursor` follows each finished page, so
        it is the position the published records reach when the adapter raises."""
        since = None
        if task.mode == "incremental" and fetch.cursor is not None:
            since = rewind_cursor(fetch.cursor, self._cursor_overlap)
        for page in adapter.fetch(fetch.entity_type, since=since):
            for record in page.records:
                external_id = adapter.external_id(fetch.entity_type, record)
                fingerprint = record_fingerprint(record)
                if fetch.is_unchanged(external_id, fingerprint):
                    fetch.skipped += 1
                else:
                    publisher.add(fetch.entity_type, record, external_id)
                fetch.remember(external_id, fingerprint)
            fetch.cursor = later_cursor(fetch.cursor, page.cursor)

    def _save_state(self, task: SyncTask, fetches: list[_EntityFetch]) -> None:
        now = self._clock.now().isoformat()
        for fetch in fetches:
            document: dict[str, Any] = {
                "id": sync_state_id(task.integration_id, fetch.entity_type),
                "tenantId": task.tenant_id,
                "integrationId": task.integration_id,
                "entityType": fetch.entity_type,
                "cursor": fetch.cursor,
                "lastSyncTaskId": task.sync_task_id,
                "updatedAt": now,
            }
            if self._cursor_overlap and fetch.cursor and cursor_instant(fetch.cursor):
                document["recentRecords"] = json.dumps(list(fetch.recent.items()))
            self._store.upsert(containers.SYNC_STATE.name, document)

    def _set_total(
        self, task: SyncTask, total: int, *, complete: bool, limit_error: str | None = None
    ) -> None:
        def set_total(current: SyncExecution) -> SyncExecution:
            current.counters.total = total
            current.publishing_complete = complete
            if limit_error is not None:
                current.limit_reached = True
                current.error = limit_error
            return current

        self._executions.update(task.tenant_id, task.sync_task_id, set_total)
