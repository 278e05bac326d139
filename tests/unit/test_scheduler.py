"""The sync scheduler on the SQLite store and local bus: windows, idempotency, skips,
backpressure and the weekly full sync."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core import metrics
from core.adapters.local.sqlite_bus import SqliteBus
from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.errors import TransientError
from core.integrations.repository import IntegrationConfigCache, IntegrationRepository
from core.integrations.service import IntegrationService
from core.messaging import topology
from core.models.events import decode_envelope
from core.models.integration import (
    ConnectionConfig,
    EntityMapping,
    SyncConfig,
    SyncFrequency,
    TenantIntegration,
)
from core.ports import OutboundMessage
from core.providers.registry import default_custom_transforms, default_entity_mappings
from core.sync.executions import SyncTask, parse_task
from core.sync.scheduler import SyncScheduler, scheduled_sync_task_id, window_start

TENANT = "tenant-sched"
MONDAY = datetime(2025, 3, 10, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now_value = now

    def now(self) -> datetime:
        return self.now_value


def interval(minutes: int) -> SyncFrequency:
    return SyncFrequency(type="interval", interval_minutes=minutes)


def cron(expression: str, timezone: str = "UTC") -> SyncFrequency:
    return SyncFrequency(type="cron", cron=expression, timezone=timezone)


class World:
    def __init__(self, tmp_path: Path, now: datetime, *, backpressure_depth: int = 10_000) -> None:
        self.clock = Clock(now)
        self.store = SqliteDocumentStore(tmp_path / "store.sqlite")
        self.bus = SqliteBus(tmp_path / "bus.sqlite")
        self.scheduler = SyncScheduler(
            self.store, self.bus, self.clock, backpressure_depth=backpressure_depth
        )

    def add(
        self,
        integration_id: str,
        frequency: SyncFrequency,
        *,
        enabled: bool = True,
        sync_enabled: bool = True,
        sync_mode: str = "incremental",
        own_frequencies: dict[str, SyncFrequency] | None = None,
    ) -> TenantIntegration:
        own = own_frequencies or {}
        mappings = [
            EntityMapping.model_validate(
                m.model_dump(by_alias=True) | {"frequency": own.get(m.entity_type)}
            )
            for m in default_entity_mappings("files")
            if m.entity_type in ("Account", "Opportunity")
        ]
        return IntegrationRepository(self.store).create(
            TenantIntegration(
                id=integration_id,
                tenant_id=TENANT,
                integration_type_id="files",
                name=integration_id,
                enabled=enabled,
                connection=ConnectionConfig(auth_type="custom", settings={"path": "unused"}),
                sync_config=SyncConfig(
                    enabled=sync_enabled,
                    sync_mode=sync_mode,  # type: ignore[arg-type]
                    frequency=frequency,
                    entity_mappings=mappings,
                ),
                custom_transforms=default_custom_transforms("files"),
            )
        )

    def tick(self, at: datetime | None = None) -> Any:
        if at is not None:
            self.clock.now_value = at
        return self.scheduler.run()

    def tasks(self) -> list[SyncTask]:
        """The sync tasks enqueued since the last call."""
        found = []
        while batch := self.bus.receive(topology.SYNC_TASKS, max_messages=100):
            for message in batch:
                found.append(parse_task(decode_envelope(message.body)))
                self.bus.complete(message)
        return found


def skipped(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("scheduler_skipped_total", {"reason": reason}) or 0.0


# -- windows ---------------------------------------------------------------------------------


def test_interval_windows_are_aligned_to_epoch_multiples():
    every_15 = interval(15)
    assert window_start(every_15, datetime(2025, 3, 10, 10, 7, 30, tzinfo=UTC)) == datetime(
        2025, 3, 10, 10, 0, tzinfo=UTC
    )
    assert window_start(every_15, datetime(2025, 3, 10, 10, 15, tzinfo=UTC)) == datetime(
        2025, 3, 10, 10, 15, tzinfo=UTC
    )
    every_7 = interval(7)
    start = window_start(every_7, datetime(2025, 3, 10, 10, 7, 30, tzinfo=UTC))
    assert start is not None
    assert int(start.timestamp()) % (7 * 60) == 0
    assert (
        timedelta(0) <= datetime(2025, 3, 10, 10, 7, 30, tzinfo=UTC) - start < timedelta(minutes=7)
    )


def test_cron_windows_follow_the_schedule_s_time_zone():
    weekdays_at_9 = cron("0 9 * * 1-5", "America/New_York")
    # 2025-03-10 is the Monday after the switch to daylight saving time (UTC-4).
    at_nine = datetime(2025, 3, 10, 13, 0, tzinfo=UTC)
    assert window_start(weekdays_at_9, at_nine) == at_nine
    assert window_start(weekdays_at_9, at_nine + timedelta(seconds=30)) == at_nine
    # Just before: the previous window is Friday 09:00 EST (UTC-5).
    assert window_start(weekdays_at_9, at_nine - timedelta(seconds=1)) == datetime(
        2025, 3, 7, 14, 0, tzinfo=UTC
    )
    assert window_start(cron("0 9 * * 1-5"), at_nine) == datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


def test_manual_has_no_window():
    assert window_start(SyncFrequency(), MONDAY) is None


def test_an_entity_mapping_may_carry_its_own_valid_frequency():
    base = default_entity_mappings("files")[0].model_dump(by_alias=True)
    mapping = EntityMapping.model_validate(
        base | {"frequency": {"type": "interval", "intervalMinutes": 30}}
    )
    assert mapping.frequency == interval(30)
    with pytest.raises(ValidationError, match="frequency"):
        EntityMapping.model_validate(base | {"frequency": {"type": "cron"}})


# -- enqueueing --------------------------------------------------------------------------------


def test_a_due_window_is_enqueued_once_however_often_the_scheduler_runs(tmp_path):
    world = World(tmp_path, MONDAY + timedelta(hours=10, minutes=3))
    world.add("crm", interval(15))

    first = world.tick()
    again = world.tick(MONDAY + timedelta(hours=10, minutes=3, seconds=40))
    later_in_window = world.tick(MONDAY + timedelta(hours=10, minutes=14))
    [task] = world.tasks()
    window = MONDAY + timedelta(hours=10)
    assert len(first.enqueued) == 1
    assert (len(again.enqueued), again.already_enqueued) == (0, 1)
    assert (len(later_in_window.enqueued), later_in_window.already_enqueued) == (0, 1)
    assert task.trigger == "scheduled"
    assert task.integration_id == "crm"
    assert sorted(task.entity_types) == ["Account", "Opportunity"]
    assert task.sync_task_id == scheduled_sync_task_id(
        TENANT, "crm", ("Opportunity", "Account"), window
    )

    next_window = world.tick(MONDAY + timedelta(hours=10, minutes=15))
    assert len(next_window.enqueued) == 1
    [second] = world.tasks()
    assert second.sync_task_id != task.sync_task_id


def test_disabled_and_manual_integrations_are_skipped(tmp_path):
    world = World(tmp_path, MONDAY + timedelta(hours=10))
    world.add("manual", SyncFrequency())
    world.add("disabled", interval(15), enabled=False)
    world.add("sync-off", interval(15), sync_enabled=False)
    world.add("scheduled", interval(15))

    result = world.tick()
    assert [e.integration_id for e in result.enqueued] == ["scheduled"]
    assert [t.integration_id for t in world.tasks()] == ["scheduled"]


def test_entity_types_with_their_own_frequency_are_scheduled_separately(tmp_path):
    world = World(tmp_path, MONDAY + timedelta(hours=10))
    world.add("crm", interval(60), own_frequencies={"Opportunity": interval(15)})

    world.tick()
    assert sorted(t.entity_types[0] for t in world.tasks()) == ["Account", "Opportunity"]
    world.tick(MONDAY + timedelta(hours=10, minutes=15))
    assert [t.entity_types for t in world.tasks()] == [["Opportunity"]]

    manual_default = World(tmp_path / "manual", MONDAY)
    manual_default.add("crm", SyncFrequency(), own_frequencies={"Account": cron("0 * * * *")})
    manual_default.tick()
    assert [t.entity_types for t in manual_default.tasks()] == [["Account"]]


def test_backpressure_enqueues_nothing_logs_and_counts(tmp_path, caplog):
    world = World(tmp_path, MONDAY + timedelta(hours=10), backpressure_depth=3)
    world.add("crm", interval(15))
    raw = [OutboundMessage(body=b"{}", message_id=f"raw-{n}") for n in range(3)]
    world.bus.send(topology.INTEGRATION_DATA_RAW, raw)
    before = skipped("backpressure")

    with caplog.at_level(logging.WARNING, logger="core.sync.scheduler"):
        result = world.tick()
    assert result.skipped_reason == "backpressure"
    assert result.enqueued == []
    assert world.tasks() == []
    assert skipped("backpressure") == before + 1
    lines = [r.getMessage() for r in caplog.records if r.name == "core.sync.scheduler"]
    assert len(lines) == 1
    assert "integration_data_raw holds 3 active messages (threshold 3)" in lines[0]

    [message] = world.bus.receive(topology.INTEGRATION_DATA_RAW, max_messages=1)
    world.bus.complete(message)
    resumed = world.tick(MONDAY + timedelta(hours=10, minutes=1))
    assert resumed.skipped_reason is None
    assert len(world.tasks()) == 1


# -- weekly full sync ---------------------------------------------------------------------------


def test_the_first_window_of_each_iso_week_runs_full(tmp_path):
    sunday_night = MONDAY - timedelta(hours=1)
    world = World(tmp_path, sunday_night)
    world.add("crm", interval(60))

    modes = []
    for at in (
        sunday_night,
        MONDAY,
        MONDAY + timedelta(hours=1),
        MONDAY + timedelta(days=3),
        MONDAY + timedelta(days=7),
        MONDAY + timedelta(days=7, hours=1),
    ):
        world.tick(at)
        [task] = world.tasks()
        modes.append(task.mode)
    assert modes == ["full", "full", "incremental", "incremental", "full", "incremental"]


def test_a_week_whose_first_window_was_skipped_gets_its_full_sync_later(tmp_path):
    world = World(tmp_path, MONDAY, backpressure_depth=1)
    world.add("crm", interval(60))
    world.bus.send(topology.INTEGRATION_DATA_RAW, [OutboundMessage(body=b"{}", message_id="r")])
    assert world.tick().skipped_reason == "backpressure"

    [message] = world.bus.receive(topology.INTEGRATION_DATA_RAW, max_messages=1)
    world.bus.complete(message)
    world.tick(MONDAY + timedelta(hours=1))
    world.tick(MONDAY + timedelta(hours=2))
    assert [t.mode for t in world.tasks()] == ["full", "incremental"]


def test_the_week_is_read_in_the_schedule_s_time_zone(tmp_path):
    # Sunday 15:00 UTC is Monday 00:00 in Tokyo (UTC+9): a new ISO week there, not in UTC.
    world = World(tmp_path, datetime(2025, 3, 9, 13, 0, tzinfo=UTC))
    world.add("crm", cron("0 * * * *", "Asia/Tokyo"))
    for hour in (13, 14, 15, 16):
        world.tick(datetime(2025, 3, 9, hour, 0, tzinfo=UTC))
    assert [t.mode for t in world.tasks()] == ["full", "incremental", "full", "incremental"]


def test_a_full_sync_mode_makes_every_window_full(tmp_path):
    world = World(tmp_path, MONDAY)
    world.add("crm", interval(60), sync_mode="full")
    world.tick()
    world.tick(MONDAY + timedelta(hours=1))
    assert [t.mode for t in world.tasks()] == ["full", "full"]


class FirstTaskSendFails:
    """The local bus, except that the first send to sync-tasks fails."""

    def __init__(self, bus: SqliteBus) -> None:
        self._bus = bus
        self.failed = False

    def send(self, entity: str, messages: Any) -> None:
        if entity == topology.SYNC_TASKS and not self.failed:
            self.failed = True
            raise TransientError("bus unavailable", resource=entity)
        self._bus.send(entity, messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)


def test_one_integration_failing_does_not_stop_the_others(tmp_path, caplog):
    world = World(tmp_path, MONDAY)
    world.add("first", interval(15))
    world.add("second", interval(15))
    scheduler = SyncScheduler(world.store, FirstTaskSendFails(world.bus), world.clock)
    before = skipped("error")

    with caplog.at_level(logging.ERROR, logger="core.sync.scheduler"):
        result = scheduler.run()
    assert result.failed == 1
    assert len(result.enqueued) == 1
    assert len(world.tasks()) == 1
    assert skipped("error") == before + 1
    assert any("could not enqueue" in r.getMessage() for r in caplog.records)


def test_an_entity_type_s_frequency_is_set_and_kept_by_the_field_mappings_api(tmp_path):
    world = World(tmp_path, MONDAY)
    data_dir = tmp_path / "crm"
    data_dir.mkdir()
    service = IntegrationService(
        world.store,
        world.clock,
        IntegrationConfigCache(IntegrationRepository(world.store)),
        validation_mode="lenient",
    )
    created = service.create(
        TENANT, {"provider": "files", "name": "crm", "config": {"path": str(data_dir)}}
    )
    mappings = [{"source": "Name", "target": "name"}, {"source": "Website", "target": "website"}]
    _, mapping = service.replace_field_mappings(
        TENANT,
        created.id,
        "Account",
        {"fieldMappings": mappings, "frequency": {"type": "interval", "intervalMinutes": 15}},
    )
    assert mapping.frequency == interval(15)
    _, kept = service.replace_field_mappings(
        TENANT, created.id, "Account", {"fieldMappings": mappings[:1]}
    )
    assert kept.frequency == interval(15)

    world.tick()
    assert [t.entity_types for t in world.tasks()] == [["Account"]]
