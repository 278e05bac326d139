"""The sync scheduler: once a minute, enqueue the syncs whose window is due.

Schedules come from each integration's `syncConfig.frequency`; an entity mapping with its
own `frequency` is scheduled on that one instead, and entity types sharing a schedule go
in one sync task. `manual` schedules are never enqueued here (the API and webhooks start
those syncs), nor are disabled integrations or disabled sync configs.

Windows:
* `interval`: windows of N minutes aligned to multiples of N minutes since the Unix epoch
  (UTC), so every scheduler instance agrees on them whatever time it starts.
* `cron`: a window starts at each fire time of the expression, read in the schedule's
  `timezone` (so `0 9 * * 1-5` is 09:00 local time, daylight saving included).

The current window is due from its start until the next window begins, and it is
enqueued once: the sync task id is uuid5(tenant, integration, entity types, window start),
and a second attempt finds the execution already there (the store refuses a second create
with that id). A window missed while the scheduler was stopped is not replayed; the next
window's incremental sync reads from the stored cursors, so nothing is lost.

Weekly full sync (validation, seeds 001 "FULL SYNC SCHEDULE"): the first window of each ISO
week (in the schedule's time zone) that this scheduler enqueues for an entity type runs
mode `full`; other windows run `incremental`. The weeks are recorded per integration in
`sync_state` (`{integrationId}:weekly-full-sync`), so a week whose first window fell in a
backpressure pause gets its full sync at the next window that is enqueued. A sync config
with `syncMode: full` makes every window full.

Backpressure: while `integration_data_raw` holds at least `backpressure_depth` active
messages, a tick enqueues nothing, logs one warning and counts
`scheduler_skipped_total{reason="backpressure"}`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from core import containers, metrics
from core.errors import ConflictError, PortError
from core.integrations.repository import IntegrationRepository
from core.logging import log_context
from core.messaging import topology
from core.models.integration import SyncExecution, SyncFrequency, TenantIntegration
from core.ports import Bus, Clock, DocumentStore
from core.sync.executions import SyncExecutions, SyncMode

log = logging.getLogger(__name__)

DEFAULT_BACKPRESSURE_DEPTH = 10_000
SYNC_TASK_NAMESPACE = uuid.UUID("5b0d6f0e-3c2a-4f43-9a59-2f1f0c6d7e41")
"""The uuid5 namespace of scheduled sync task ids; fixed forever, or windows repeat."""


@dataclass(frozen=True)
class DueSync:
    """One schedule's current window for a group of an integration's entity types."""

    integration: TenantIntegration
    entity_types: tuple[str, ...]
    frequency: SyncFrequency
    window_start: datetime

    @property
    def sync_task_id(self) -> str:
        return scheduled_sync_task_id(
            self.integration.tenant_id, self.integration.id, self.entity_types, self.window_start
        )

    @property
    def iso_week(self) -> str:
        local = self.window_start.astimezone(ZoneInfo(self.frequency.timezone))
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"


@dataclass
class SchedulerRun:
    """What one tick did; `skipped_reason` is set when it enqueued nothing on purpose."""

    enqueued: list[SyncExecution] = field(default_factory=list)
    already_enqueued: int = 0
    failed: int = 0
    skipped_reason: str | None = None


def window_start(frequency: SyncFrequency, now: datetime) -> datetime | None:
    """The start (UTC) of the window `now` falls in; None for a manual schedule."""
    if frequency.type == "interval":
        assert frequency.interval_minutes is not None
        length = frequency.interval_minutes * 60
        epoch_seconds = int(now.timestamp())
        return datetime.fromtimestamp(epoch_seconds - epoch_seconds % length, UTC)
    if frequency.type == "cron":
        assert frequency.cron is not None
        local = now.astimezone(ZoneInfo(frequency.timezone))
        # croniter's get_prev is strictly before its start: nudge so a fire time equal to
        # `now` counts as the current window.
        fired = croniter(frequency.cron, local + timedelta(microseconds=1)).get_prev(datetime)
        return fired.astimezone(UTC)
    return None


def scheduled_sync_task_id(
    tenant_id: str, integration_id: str, entity_types: tuple[str, ...], start: datetime
) -> str:
    types = ",".join(sorted(t.casefold() for t in entity_types))
    name = f"{tenant_id}\n{integration_id}\n{types}\n{start.astimezone(UTC).isoformat()}"
    return str(uuid.uuid5(SYNC_TASK_NAMESPACE, name))


def due_syncs(integration: TenantIntegration, now: datetime) -> Iterator[DueSync]:
    """The current window of each schedule of an enabled integration, manual ones left out."""
    if not integration.enabled or not integration.sync_config.enabled:
        return
    groups: dict[str, tuple[SyncFrequency, list[str]]] = {}
    for mapping in integration.sync_config.entity_mappings:
        if not mapping.enabled:
            continue
        frequency = mapping.frequency or integration.sync_config.frequency
        key = frequency.model_dump_json()
        groups.setdefault(key, (frequency, []))[1].append(mapping.entity_type)
    for frequency, entity_types in groups.values():
        start = window_start(frequency, now)
        if start is not None:
            yield DueSync(integration, tuple(entity_types), frequency, start)


def weekly_full_sync_state_id(integration_id: str) -> str:
    return f"{integration_id}:weekly-full-sync"


class SyncScheduler:
    def __init__(
        self,
        store: DocumentStore,
        bus: Bus,
        clock: Clock,
        *,
        backpressure_depth: int = DEFAULT_BACKPRESSURE_DEPTH,
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._backpressure_depth = backpressure_depth
        self._executions = SyncExecutions(store, bus, clock)
        self._integrations = IntegrationRepository(store)

    def run(self) -> SchedulerRun:
        """One tick: enqueue every due window not enqueued yet, unless the raw queue is
        too deep. One integration's failure is logged and counted; the others go on, and
        a window that could not be enqueued is tried again on the next tick."""
        result = SchedulerRun()
        depth = self._bus.depth(topology.INTEGRATION_DATA_RAW).active
        if depth >= self._backpressure_depth:
            metrics.SCHEDULER_SKIPPED.labels("backpressure").inc()
            log.warning(
                "scheduler: %s holds %d active messages (threshold %d); no syncs enqueued "
                "this minute",
                topology.INTEGRATION_DATA_RAW,
                depth,
                self._backpressure_depth,
            )
            result.skipped_reason = "backpressure"
            return result
        now = self._clock.now()
        for integration in self._integrations.list_enabled():
            with log_context(tenantId=integration.tenant_id, integrationId=integration.id):
                for due in due_syncs(integration, now):
                    self._enqueue(due, result)
        return result

    def _enqueue(self, due: DueSync, result: SchedulerRun) -> None:
        integration = due.integration
        task_id = due.sync_task_id
        try:
            existing = self._store.get(
                containers.SYNC_EXECUTIONS.name, integration.tenant_id, task_id
            )
            if existing is not None:
                result.already_enqueued += 1
                return
            mode = self._mode(due)
            execution = self._executions.request(
                integration.tenant_id,
                integration.id,
                trigger="scheduled",
                mode=mode,
                entity_types=list(due.entity_types),
                sync_task_id=task_id,
            )
        except ConflictError:
            result.already_enqueued += 1
            return
        except PortError as exc:
            result.failed += 1
            metrics.SCHEDULER_SKIPPED.labels("error").inc()
            log.error(
                "scheduler: could not enqueue the window starting %s of %s (%s): %s",
                due.window_start.isoformat(),
                integration.id,
                ", ".join(due.entity_types),
                exc,
            )
            return
        result.enqueued.append(execution)
        metrics.SYNCS_SCHEDULED.labels(mode).inc()
        log.info(
            "scheduler: enqueued %s sync %s of %s for the window starting %s",
            mode,
            task_id,
            ", ".join(due.entity_types),
            due.window_start.isoformat(),
        )
        if mode == "full":
            try:
                self._record_full_sync(due)
            except PortError as exc:
                log.error(
                    "scheduler: full sync %s of %s enqueued, but the week %s was not "
                    "recorded (the next window runs full again): %s",
                    task_id,
                    integration.id,
                    due.iso_week,
                    exc,
                )

    def _full_sync_weeks(self, due: DueSync) -> dict[str, str]:
        document = self._store.get(
            containers.SYNC_STATE.name,
            due.integration.tenant_id,
            weekly_full_sync_state_id(due.integration.id),
        )
        weeks = (document or {}).get("fullSyncWeeks") or {}
        return {str(key): str(value) for key, value in weeks.items()}

    def _mode(self, due: DueSync) -> SyncMode:
        if due.integration.sync_config.sync_mode == "full":
            return "full"
        weeks = self._full_sync_weeks(due)
        week = due.iso_week
        if all(weeks.get(t.casefold()) == week for t in due.entity_types):
            return "incremental"
        return "full"

    def _record_full_sync(self, due: DueSync) -> None:
        weeks = self._full_sync_weeks(due)
        weeks.update({t.casefold(): due.iso_week for t in due.entity_types})
        self._store.upsert(
            containers.SYNC_STATE.name,
            {
                "id": weekly_full_sync_state_id(due.integration.id),
                "tenantId": due.integration.tenant_id,
                "integrationId": due.integration.id,
                "fullSyncWeeks": weeks,
                "updatedAt": self._clock.now().isoformat(),
            },
        )
