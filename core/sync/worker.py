"""The sync worker: one sync task in, the provider's records out as raw events.

Records go out as single `integration.data.raw` events while a sync has at most 100 of
them and as `integration.data.raw.batch` events of 50 above that (seeds 2.1), all with
the execution's correlation id. Envelope and message ids are deterministic, so a task
that is redelivered after a crash republishes the same messages: the broker drops them
as duplicates and the processor's idempotency keys make any that get through harmless.
An entity type's cursor in `sync_state` advances only after its records were published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import containers
from core.errors import AuthError, PermanentError
from core.integrations.repository import IntegrationRepository
from core.logging import log_context
from core.messaging import topology
from core.models import crm_events
from core.models.integration import SyncExecution, TenantIntegration
from core.ports import Bus, Clock, DocumentStore, OutboundMessage, SecretStore
from core.providers.base import ProviderAdapter
from core.providers.registry import build_provider
from core.sync.executions import SyncExecutions, SyncTask

log = logging.getLogger(__name__)

SINGLE_EVENT_LIMIT = 100
BATCH_SIZE = 50
TOTAL_UPDATE_EVERY = 1000
FINISHED = ("completed", "partial", "failed", "cancelled")

ProviderFactory = Callable[..., ProviderAdapter]


def idempotency_key(integration_id: str, external_id: str, sync_task_id: str) -> str:
    return f"{integration_id}-{external_id}-{sync_task_id}"


def sync_state_id(integration_id: str, entity_type: str) -> str:
    return f"{integration_id}:{entity_type}"


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
    ) -> None:
        self._store = store
        self._bus = bus
        self._secrets = secrets
        self._clock = clock
        self._executions = SyncExecutions(store, bus, clock)
        self._integrations = IntegrationRepository(store)
        self._provider_factory = provider_factory

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
            integration.integration_type_id, integration.connection.settings, secrets=self._secrets
        )
        entity_types = self._entity_types(task, integration, adapter)
        started = self._clock.now()

        def begin(current: SyncExecution) -> SyncExecution:
            current.status = "processing"
            current.started_at = current.started_at or started
            current.entity_types = entity_types
            current.counters.total = 0
            current.publishing_complete = False
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
        cursors: dict[str, str | None] = {}
        for entity_type in entity_types:
            state = self._store.get(
                containers.SYNC_STATE.name,
                task.tenant_id,
                sync_state_id(task.integration_id, entity_type),
            )
            since = (state or {}).get("cursor") if task.mode == "incremental" else None
            cursor = since
            for page in adapter.fetch(entity_type, since=since):
                for record in page.records:
                    publisher.add(entity_type, record, adapter.external_id(entity_type, record))
                cursor = page.cursor or cursor
            cursors[entity_type] = cursor
        publisher.finish()
        self._set_total(task, publisher.count, complete=True)
        now = self._clock.now().isoformat()
        for entity_type, cursor in cursors.items():
            self._store.upsert(
                containers.SYNC_STATE.name,
                {
                    "id": sync_state_id(task.integration_id, entity_type),
                    "tenantId": task.tenant_id,
                    "integrationId": task.integration_id,
                    "entityType": entity_type,
                    "cursor": cursor,
                    "lastSyncTaskId": task.sync_task_id,
                    "updatedAt": now,
                },
            )
        log.info(
            "sync %s published %d record(s)",
            task.sync_task_id,
            publisher.count,
            extra={"entityTypes": entity_types, "mode": task.mode},
        )
        return self._executions.refresh(task.tenant_id, task.sync_task_id)

    def _set_total(self, task: SyncTask, total: int, *, complete: bool) -> None:
        def set_total(current: SyncExecution) -> SyncExecution:
            current.counters.total = total
            current.publishing_complete = complete
            return current

        self._executions.update(task.tenant_id, task.sync_task_id, set_total)
