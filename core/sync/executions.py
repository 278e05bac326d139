"""Sync executions: requesting a sync, reading its record, and deciding when it is done.

A sync's counters are never incremented in place (a redelivered event would count twice):
the CRM processor writes one progress document per raw message it settles, keyed by that
message, and `refresh_execution` recounts them. Recounting is idempotent, so the sync
worker, the tracking subscription and the timeout sweep can all call it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, ValidationError

from core import containers
from core.errors import ConflictError, NotFoundError, PermanentError, PortError
from core.integrations.repository import IntegrationRepository
from core.messaging import topology
from core.models import crm_events
from core.models.events import EventEnvelope
from core.models.integration import SyncCounters, SyncExecution
from core.models.shards import CamelModel, NonEmptyStr
from core.ports import Bus, Clock, DocumentStore, Filter

log = logging.getLogger(__name__)

SYNC_TASK = "integration.sync.task"
SYNC_TIMEOUT = timedelta(hours=1)
PROGRESS = "progress"

Trigger = Literal["manual", "scheduled", "webhook", "retry"]
SyncMode = Literal["incremental", "full"]


class SyncTask(crm_events.EventPayload):
    """The `sync-tasks` message: run execution `syncTaskId` of one integration."""

    sync_task_id: NonEmptyStr
    integration_id: NonEmptyStr
    tenant_id: NonEmptyStr
    trigger: Trigger
    mode: SyncMode = "incremental"
    entity_types: list[str] = Field(default_factory=list)
    correlation_id: NonEmptyStr


class SyncProgress(CamelModel):
    """What one raw message contributed to a sync; id = `{syncTaskId}:{messageKey}`."""

    id: str
    tenant_id: str
    doc_type: Literal["progress"] = "progress"
    sync_task_id: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0


def task_event(task: SyncTask) -> EventEnvelope:
    return EventEnvelope.model_validate(
        {
            "id": task.sync_task_id,
            "type": SYNC_TASK,
            "source": "sync-requests",
            "tenantId": task.tenant_id,
            "correlationId": task.correlation_id,
            "data": task.model_dump(mode="json", by_alias=True),
        }
    )


def parse_task(envelope: EventEnvelope) -> SyncTask:
    if envelope.type != SYNC_TASK:
        raise PermanentError(f"event {envelope.id}: {envelope.type!r} is not a sync task")
    try:
        return SyncTask.model_validate(envelope.data)
    except ValidationError as exc:
        raise PermanentError(f"event {envelope.id}: invalid sync task: {exc}") from exc


def progress_id(sync_task_id: str, message_key: str) -> str:
    return f"{sync_task_id}:{message_key}"


class SyncExecutions:
    def __init__(self, store: DocumentStore, bus: Bus, clock: Clock) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock

    # -- requests ----------------------------------------------------------------------

    def request(
        self,
        tenant_id: str,
        integration_id: str,
        *,
        trigger: Trigger = "manual",
        mode: SyncMode | None = None,
        entity_types: list[str] | None = None,
        sync_task_id: str | None = None,
    ) -> SyncExecution:
        """Record a pending execution and enqueue its task (202 for the API)."""
        integration = IntegrationRepository(self._store).get(tenant_id, integration_id)
        if not integration.enabled:
            raise PermanentError(
                f"integration {integration_id!r} is disabled",
                resource=f"integrations/{integration_id}",
            )
        now = self._clock.now()
        execution_id = sync_task_id or str(uuid.uuid4())
        execution = SyncExecution(
            id=execution_id,
            tenant_id=tenant_id,
            integration_id=integration_id,
            correlation_id=crm_events.sync_correlation_id(execution_id, now),
            trigger=trigger,
            mode=mode or integration.sync_config.sync_mode,
            entity_types=entity_types or [],
            status="pending",
            updated_at=now,
        )
        stored = self._store.create(containers.SYNC_EXECUTIONS.name, execution.to_document())
        task = SyncTask(
            sync_task_id=execution.id,
            integration_id=integration_id,
            tenant_id=tenant_id,
            trigger=trigger,
            mode=execution.mode,
            entity_types=execution.entity_types,
            correlation_id=execution.correlation_id,
        )
        event = task_event(task)
        try:
            self._bus.send(topology.SYNC_TASKS, [event.to_message(message_id=execution.id)])
        except PortError as exc:
            self.fail(
                SyncExecution.model_validate(stored), f"could not enqueue the sync task: {exc}"
            )
            raise
        return SyncExecution.model_validate(stored)

    # -- reads ---------------------------------------------------------------------------

    def get(self, tenant_id: str, sync_task_id: str) -> SyncExecution:
        document = self._store.get(containers.SYNC_EXECUTIONS.name, tenant_id, sync_task_id)
        if document is None or document.get("docType", "execution") != "execution":
            raise NotFoundError(
                f"sync execution {sync_task_id!r} not found",
                resource=f"sync_executions/{sync_task_id}",
            )
        return SyncExecution.model_validate(document)

    def history(
        self,
        tenant_id: str,
        integration_id: str,
        *,
        limit: int = 50,
        continuation: str | None = None,
    ) -> tuple[list[SyncExecution], str | None]:
        page = self._store.query(
            containers.SYNC_EXECUTIONS.name,
            partition_key=tenant_id,
            filters=[
                Filter("docType", "==", "execution"),
                Filter("integrationId", "==", integration_id),
            ],
            order_by="updatedAt",
            descending=True,
            limit=limit,
            continuation=continuation,
        )
        return [SyncExecution.model_validate(doc) for doc in page.items], page.continuation

    # -- updates ---------------------------------------------------------------------------

    def update(
        self,
        tenant_id: str,
        sync_task_id: str,
        change: Callable[[SyncExecution], SyncExecution | None],
        *,
        attempts: int = 20,
    ) -> SyncExecution:
        """Read-modify-write with the etag; `change` returning None means no write."""
        for _ in range(attempts):
            current = self.get(tenant_id, sync_task_id)
            changed = change(current.model_copy(deep=True))
            if changed is None:
                return current
            changed.updated_at = self._clock.now()
            try:
                stored = self._store.upsert(
                    containers.SYNC_EXECUTIONS.name, changed.to_document(), if_match=current.etag
                )
            except ConflictError:
                continue
            return SyncExecution.model_validate(stored)
        raise ConflictError(
            f"sync execution {sync_task_id!r} kept changing; gave up after {attempts} attempts",
            resource=f"sync_executions/{sync_task_id}",
        )

    def counters(self, tenant_id: str, sync_task_id: str, total: int) -> SyncCounters:
        sums = {"created": 0, "updated": 0, "unchanged": 0, "failed": 0}
        continuation: str | None = None
        while True:
            page = self._store.query(
                containers.SYNC_EXECUTIONS.name,
                partition_key=tenant_id,
                filters=[
                    Filter("docType", "==", PROGRESS),
                    Filter("syncTaskId", "==", sync_task_id),
                ],
                limit=1000,
                continuation=continuation,
            )
            for item in page.items:
                for key in sums:
                    sums[key] += int(item.get(key, 0))
            if page.continuation is None:
                break
            continuation = page.continuation
        return SyncCounters(total=total, processed=sum(sums.values()), **sums)

    def refresh(self, tenant_id: str, sync_task_id: str) -> SyncExecution:
        """Recount from progress documents; finish the execution when everything is in."""
        finished: list[SyncExecution] = []

        def recount(execution: SyncExecution) -> SyncExecution | None:
            if execution.status not in ("pending", "processing"):
                return None
            counters = self.counters(tenant_id, sync_task_id, execution.counters.total)
            if counters == execution.counters and not _done(execution, counters):
                return None
            execution.counters = counters
            if _done(execution, counters):
                execution.status = execution.final_status()
                execution.completed_at = self._clock.now()
                finished.append(execution)
            return execution

        execution = self.update(tenant_id, sync_task_id, recount)
        if finished:
            self._publish_completed(execution)
        return execution

    def time_out_stale(self, *, now: datetime | None = None) -> int:
        """Executions not finished within the timeout become `partial` (or `failed` if
        they never started publishing)."""
        now = now or self._clock.now()
        cutoff = (now - SYNC_TIMEOUT).isoformat()
        page = self._store.query(
            containers.SYNC_EXECUTIONS.name,
            filters=[
                Filter("docType", "==", "execution"),
                Filter("status", "in", ["pending", "processing"]),
                Filter("updatedAt", "<", cutoff),
            ],
            limit=200,
        )
        count = 0
        for document in page.items:
            execution = SyncExecution.model_validate(document)
            self.refresh(execution.tenant_id, execution.id)
            if self._expire(execution.tenant_id, execution.id, now):
                count += 1
        return count

    def _expire(self, tenant_id: str, sync_task_id: str, now: datetime) -> bool:
        expired: list[SyncExecution] = []

        def expire(current: SyncExecution) -> SyncExecution | None:
            if current.status not in ("pending", "processing"):
                return None
            current.status = "partial" if current.counters.processed else "failed"
            minutes = int(SYNC_TIMEOUT.total_seconds() // 60)
            current.error = f"not finished within {minutes} minutes"
            current.completed_at = now
            expired.append(current)
            return current

        updated = self.update(tenant_id, sync_task_id, expire)
        if not expired:
            return False
        if updated.status == "partial":
            self._publish_completed(updated)
        else:
            self._publish_failed(updated)
        return True

    def fail(self, execution: SyncExecution, error: str) -> SyncExecution:
        def mark(current: SyncExecution) -> SyncExecution | None:
            if current.status in ("completed", "partial", "failed", "cancelled"):
                return None
            current.status = "failed"
            current.error = error
            current.completed_at = self._clock.now()
            return current

        updated = self.update(execution.tenant_id, execution.id, mark)
        if updated.status == "failed" and updated.error == error:
            self._publish_failed(updated)
        return updated

    # -- events ------------------------------------------------------------------------------

    def _publish(self, event_type: str, payload: crm_events.EventPayload, key: str) -> None:
        event = crm_events.make_event(event_type, payload, source="sync-tracking")
        self._bus.send(topology.INTEGRATION_EVENTS_TOPIC, [event.to_message(message_id=key)])

    def publish_started(self, execution: SyncExecution) -> None:
        payload = crm_events.SyncStarted(
            integration_id=execution.integration_id,
            tenant_id=execution.tenant_id,
            sync_task_id=execution.id,
            correlation_id=execution.correlation_id,
            trigger=execution.trigger,
            entity_types=execution.entity_types,
            started_at=execution.started_at or self._clock.now(),
        )
        self._publish(crm_events.SYNC_STARTED, payload, f"{execution.id}:started")

    def _publish_completed(self, execution: SyncExecution) -> None:
        if execution.status == "failed":
            self._publish_failed(execution)
            return
        status: Any = execution.status
        completed = execution.completed_at or self._clock.now()
        duration = (
            (completed - execution.started_at).total_seconds() * 1000
            if execution.started_at
            else None
        )
        payload = crm_events.SyncCompleted(
            integration_id=execution.integration_id,
            tenant_id=execution.tenant_id,
            sync_task_id=execution.id,
            correlation_id=execution.correlation_id,
            status=status,
            counters=execution.counters,
            started_at=execution.started_at,
            completed_at=completed,
            duration=duration,
        )
        self._publish(crm_events.SYNC_COMPLETED, payload, f"{execution.id}:finished")
        log.info(
            "sync %s finished: %s",
            execution.id,
            execution.status,
            extra={"counters": execution.counters.model_dump(by_alias=True)},
        )

    def _publish_failed(self, execution: SyncExecution) -> None:
        payload = crm_events.SyncFailed(
            integration_id=execution.integration_id,
            tenant_id=execution.tenant_id,
            sync_task_id=execution.id,
            correlation_id=execution.correlation_id,
            error=execution.error or "every record failed",
            counters=execution.counters,
            failed_at=execution.completed_at or self._clock.now(),
        )
        self._publish(crm_events.SYNC_FAILED, payload, f"{execution.id}:finished")


def _done(execution: SyncExecution, counters: SyncCounters) -> bool:
    return execution.publishing_complete and counters.processed >= counters.total
