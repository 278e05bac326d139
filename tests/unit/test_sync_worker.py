"""The sync worker in process: SQLite store and local bus in tmp_path, a fake paged provider.

The provider pages like a CRM API: each page is a fresh query "modified after the last
position, oldest first", so a record changed while the sync pages, with a modification
time earlier than the position already reached (clock skew, a long transaction), is not
on any later page of that sync.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import core.sync.worker as worker_module
from core import containers
from core.adapters.local.env_secrets import EnvSecretStore
from core.adapters.local.sqlite_bus import SqliteBus
from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.errors import TransientError
from core.integrations.repository import IntegrationConfigCache, IntegrationRepository
from core.messaging import topology
from core.models import crm_events
from core.models.events import EventEnvelope, decode_envelope
from core.models.integration import (
    ConnectionConfig,
    SyncConfig,
    SyncCounters,
    SyncExecution,
    TenantIntegration,
)
from core.models.shard_types import ensure_shard_types
from core.models.shards import deterministic_shard_id
from core.ports import OutboundMessage
from core.processing.crm import CrmMappingProcessor
from core.providers.base import DailyLimitReached, FetchedPage
from core.providers.registry import default_custom_transforms, default_entity_mappings
from core.sync.executions import SyncExecutions, parse_task
from core.sync.worker import (
    BATCH_SIZE,
    SINGLE_EVENT_LIMIT,
    SyncWorker,
    later_cursor,
    rewind_cursor,
    sync_state_id,
)

TENANT = "tenant-sync"
INTEGRATION = "crm-sync"
T0 = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_stamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now_value = now

    def now(self) -> datetime:
        return self.now_value


class PagedProvider:
    """Records per entity type served oldest first, `page_size` per page, each page a new
    keyset query on (LastModifiedDate, Id); `between_pages(entity_type, number)` runs after
    page `number` was handed out. `pages_left_today` (when set) is the daily allowance."""

    provider = "fake"

    def __init__(self, records: Mapping[str, list[dict[str, Any]]], page_size: int = 3) -> None:
        self.records = {entity: list(items) for entity, items in records.items()}
        self.page_size = page_size
        self.between_pages: Callable[[str, int], None] = lambda entity_type, number: None
        self.pages_left_today: int | None = None
        self.since_seen: list[tuple[str, str | None]] = []

    def entity_types(self) -> list[str]:
        return list(self.records)

    def external_id(self, entity_type: str, record: Mapping[str, Any]) -> str:
        return str(record["Id"])

    def fetch(self, entity_type: str, *, since: str | None = None) -> Iterator[FetchedPage]:
        self.since_seen.append((entity_type, since))
        floor = parse_stamp(since) if since else datetime.min.replace(tzinfo=UTC)
        position: tuple[datetime, str] | None = None
        number = 0
        while True:
            if self.pages_left_today is not None:
                if self.pages_left_today == 0:
                    raise DailyLimitReached("fake: 0 API calls left today", retry_after=3600)
                self.pages_left_today -= 1
            keyed = sorted(
                ((parse_stamp(r["LastModifiedDate"]), r["Id"]), r)
                for r in self.records[entity_type]
                if parse_stamp(r["LastModifiedDate"]) > floor
            )
            page = [(key, r) for key, r in keyed if position is None or key > position]
            page = page[: self.page_size]
            if not page:
                return
            position = page[-1][0]
            number += 1
            yield FetchedPage([dict(r) for _, r in page], cursor=stamp(position[0]))
            self.between_pages(entity_type, number)

    def put(self, entity_type: str, record: dict[str, Any]) -> None:
        items = self.records[entity_type]
        items[:] = [r for r in items if r["Id"] != record["Id"]] + [record]


def account(number: int, modified: datetime, name: str | None = None) -> dict[str, Any]:
    return {
        "Id": f"001{number:015d}",
        "Name": name or f"Account {number}",
        "LastModifiedDate": stamp(modified),
    }


def contact(number: int, modified: datetime) -> dict[str, Any]:
    return {
        "Id": f"003{number:015d}",
        "LastName": f"Person {number}",
        "Email": f"person{number}@example.com",
        "LastModifiedDate": stamp(modified),
    }


class FailingRawBus:
    """The local bus, except that sends to integration_data_raw fail while `failing`."""

    def __init__(self, bus: SqliteBus) -> None:
        self._bus = bus
        self.failing = True

    def send(self, entity: str, messages: Sequence[OutboundMessage]) -> None:
        if self.failing and entity == topology.INTEGRATION_DATA_RAW:
            raise TransientError("bus unavailable", resource=entity)
        self._bus.send(entity, messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)


class World:
    def __init__(self, tmp_path: Path, provider: PagedProvider) -> None:
        self.clock = Clock(T0 + timedelta(hours=1))
        self.store = SqliteDocumentStore(tmp_path / "store.sqlite")
        self.bus = SqliteBus(tmp_path / "bus.sqlite")
        self.secrets = EnvSecretStore({}, file=tmp_path / "secrets.json")
        self.provider = provider
        self.executions = SyncExecutions(self.store, self.bus, self.clock)
        mappings = [
            m for m in default_entity_mappings("files") if m.entity_type in provider.entity_types()
        ]
        IntegrationRepository(self.store).create(
            TenantIntegration(
                id=INTEGRATION,
                tenant_id=TENANT,
                integration_type_id="files",
                name="fake paged CRM",
                connection=ConnectionConfig(auth_type="custom", settings={"path": "unused"}),
                sync_config=SyncConfig(entity_mappings=mappings),
                custom_transforms=default_custom_transforms("files"),
            )
        )

    def worker(self, *, overlap: timedelta = timedelta(minutes=5), bus: Any = None) -> SyncWorker:
        return SyncWorker(
            self.store,
            bus or self.bus,
            self.secrets,
            self.clock,
            provider_factory=lambda provider, settings, **kwargs: self.provider,
            cursor_overlap=overlap,
        )

    def request(self, mode: str = "incremental") -> Any:
        execution = self.executions.request(TENANT, INTEGRATION, mode=mode)  # type: ignore[arg-type]
        [message] = self.bus.receive(topology.SYNC_TASKS, max_messages=10)
        self.bus.complete(message)
        task = parse_task(decode_envelope(message.body))
        assert task.sync_task_id == execution.id
        return task

    def sync(self, mode: str = "incremental", **worker_options: Any) -> SyncExecution:
        return self.worker(**worker_options).run(self.request(mode))

    def raw_envelopes(self) -> list[EventEnvelope]:
        envelopes = []
        while batch := self.bus.receive(topology.INTEGRATION_DATA_RAW, max_messages=100):
            for message in batch:
                envelopes.append(decode_envelope(message.body))
                self.bus.complete(message)
        return envelopes

    def published(self) -> dict[str, dict[str, Any]]:
        """External id -> raw record of every record published since the last call."""
        records: dict[str, dict[str, Any]] = {}
        for envelope in self.raw_envelopes():
            items = envelope.data.get("records", [envelope.data])
            for item in items:
                records[item["externalId"]] = item["rawData"]
        return records

    def cursor(self, entity_type: str) -> str | None:
        state = self.store.get(
            containers.SYNC_STATE.name, TENANT, sync_state_id(INTEGRATION, entity_type)
        )
        return None if state is None else state["cursor"]


# -- the acceptance test -------------------------------------------------------------------


def _modified_while_paging(provider: PagedProvider) -> None:
    """After page 1 of the first sync: an account already served changes, and a new one
    appears, both stamped earlier than page 1's cursor (T0 + 20 s)."""

    def between_pages(entity_type: str, number: int) -> None:
        if number == 1:
            provider.put("Account", account(1, T0 + timedelta(seconds=15), name="Renamed"))
            provider.put("Account", account(99, T0 + timedelta(seconds=5)))
            provider.between_pages = lambda entity_type, number: None

    provider.between_pages = between_pages


def test_records_modified_during_a_paged_sync_are_not_missed_by_the_next_one(tmp_path):
    provider = PagedProvider(
        {"Account": [account(n, T0 + timedelta(seconds=10 * n)) for n in range(9)]}
    )
    world = World(tmp_path, provider)
    _modified_while_paging(provider)

    first = world.sync(mode="full")
    assert first.counters.total == 9
    published = world.published()
    assert published[account(1, T0)["Id"]]["Name"] == "Account 1"
    assert account(99, T0)["Id"] not in published
    assert world.cursor("Account") == stamp(T0 + timedelta(seconds=80))

    second = world.sync()
    assert provider.since_seen[-1] == ("Account", stamp(T0 + timedelta(seconds=80 - 300)))
    published = world.published()
    assert set(published) == {account(1, T0)["Id"], account(99, T0)["Id"]}
    assert published[account(1, T0)["Id"]]["Name"] == "Renamed"
    assert second.counters.total == 2
    assert world.cursor("Account") == stamp(T0 + timedelta(seconds=80))


def test_without_the_overlap_the_same_changes_are_missed(tmp_path):
    provider = PagedProvider(
        {"Account": [account(n, T0 + timedelta(seconds=10 * n)) for n in range(9)]}
    )
    world = World(tmp_path, provider)
    _modified_while_paging(provider)
    world.sync(mode="full", overlap=timedelta(0))
    world.published()

    second = world.sync(overlap=timedelta(0))
    assert world.published() == {}
    assert second.counters.total == 0


def test_every_provider_record_ends_up_as_a_shard_in_its_latest_version(tmp_path):
    provider = PagedProvider(
        {"Account": [account(n, T0 + timedelta(seconds=10 * n)) for n in range(9)]}
    )
    world = World(tmp_path, provider)
    ensure_shard_types(world.store, world.clock)
    processor = CrmMappingProcessor(
        world.store,
        world.bus,
        world.clock,
        IntegrationConfigCache(IntegrationRepository(world.store)),
    )
    _modified_while_paging(provider)
    for mode in ("full", "incremental"):
        execution = world.sync(mode=mode)
        for envelope in world.raw_envelopes():
            processor.process(envelope)
        assert world.executions.refresh(TENANT, execution.id).status == "completed"

    for record in provider.records["Account"]:
        shard = world.store.get(
            containers.SHARDS.name,
            TENANT,
            deterministic_shard_id(TENANT, INTEGRATION, "Account", record["Id"]),
        )
        assert shard is not None, record["Id"]
        assert shard["structuredData"]["name"] == record["Name"]


# -- cursor rules ----------------------------------------------------------------------------


def test_unchanged_re_reads_in_the_overlap_are_not_published_again(tmp_path):
    provider = PagedProvider(
        {"Account": [account(n, T0 + timedelta(seconds=10 * n)) for n in range(5)]}
    )
    world = World(tmp_path, provider)
    world.sync(mode="full")
    world.published()

    provider.put("Account", account(7, T0 + timedelta(minutes=30)))
    again = world.sync()
    assert set(world.published()) == {account(7, T0)["Id"]}
    assert again.counters.total == 1
    assert world.cursor("Account") == stamp(T0 + timedelta(minutes=30))


def test_only_the_newest_fingerprints_are_kept_and_older_re_reads_go_out_again(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(worker_module, "RECENT_RECORDS_KEPT", 3)
    provider = PagedProvider(
        {"Account": [account(n, T0 + timedelta(seconds=10 * n)) for n in range(5)]}
    )
    world = World(tmp_path, provider)
    world.sync(mode="full")
    world.published()
    state = world.store.get(
        containers.SYNC_STATE.name, TENANT, sync_state_id(INTEGRATION, "Account")
    )
    assert state is not None
    kept = dict(json.loads(state["recentRecords"]))
    assert list(kept) == [account(n, T0)["Id"] for n in (2, 3, 4)]

    world.sync()
    assert set(world.published()) == {account(n, T0)["Id"] for n in (0, 1)}


def test_a_full_sync_publishes_every_record_even_unchanged_ones(tmp_path):
    provider = PagedProvider(
        {"Account": [account(n, T0 + timedelta(seconds=10 * n)) for n in range(5)]}
    )
    world = World(tmp_path, provider)
    world.sync(mode="full")
    world.published()
    world.sync(mode="full")
    assert len(world.published()) == 5
    assert provider.since_seen[-1] == ("Account", None)


def test_the_cursor_is_not_advanced_when_publishing_fails_and_is_after_success(tmp_path):
    provider = PagedProvider(
        {"Account": [account(n, T0 + timedelta(seconds=10 * n)) for n in range(3)]}
    )
    world = World(tmp_path, provider)
    world.sync(mode="full")
    world.published()
    first_cursor = stamp(T0 + timedelta(seconds=20))
    assert world.cursor("Account") == first_cursor

    provider.put("Account", account(5, T0 + timedelta(hours=2)))
    task = world.request()
    failing = FailingRawBus(world.bus)
    with pytest.raises(TransientError):
        world.worker(bus=failing).run(task)
    assert world.cursor("Account") == first_cursor
    assert world.executions.get(TENANT, task.sync_task_id).publishing_complete is False

    failing.failing = False
    retried = world.worker(bus=failing).run(task)
    assert retried.counters.total == 1
    assert set(world.published()) == {account(5, T0)["Id"]}
    assert world.cursor("Account") == stamp(T0 + timedelta(hours=2))


def test_rewind_keeps_the_provider_s_cursor_format():
    five = timedelta(minutes=5)
    assert rewind_cursor("2024-05-01T10:00:00.000Z", five) == "2024-05-01T09:55:00.000Z"
    assert rewind_cursor("2024-05-01T10:00:00.000+0000", five) == "2024-05-01T09:55:00.000+0000"
    assert rewind_cursor("2024-05-01T10:00:00+02:00", five) == "2024-05-01T09:55:00+02:00"
    assert rewind_cursor("2024-05-01 10:00:00.123456", five) == "2024-05-01 09:55:00.123456"
    assert rewind_cursor("2024-05-01T00:02:00Z", five) == "2024-04-30T23:57:00Z"
    assert rewind_cursor("opaque-token-42", five) == "opaque-token-42"
    assert rewind_cursor("1714557600000", five) == "1714557600000"
    assert rewind_cursor("2024-05-01T10:00:00.000Z", timedelta(0)) == "2024-05-01T10:00:00.000Z"


def test_the_kept_cursor_never_moves_back():
    assert later_cursor("2024-05-01T10:00:00Z", "2024-05-01T09:58:00.000Z") == (
        "2024-05-01T10:00:00Z"
    )
    assert later_cursor("2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z") == "2024-05-01T10:01:00Z"
    assert later_cursor(None, "token-2") == "token-2"
    assert later_cursor("token-1", "token-2") == "token-2"
    assert later_cursor("token-1", None) == "token-1"


# -- daily limits ------------------------------------------------------------------------------


def test_a_daily_limit_ends_the_sync_partial_and_the_next_resumes_from_its_cursor(tmp_path):
    provider = PagedProvider(
        {
            "Account": [account(n, T0 + timedelta(seconds=10 * n)) for n in range(9)],
            "Contact": [contact(n, T0 + timedelta(seconds=10 * n)) for n in range(2)],
        }
    )
    world = World(tmp_path, provider)
    ensure_shard_types(world.store, world.clock)
    processor = CrmMappingProcessor(
        world.store,
        world.bus,
        world.clock,
        IntegrationConfigCache(IntegrationRepository(world.store)),
    )
    provider.pages_left_today = 2

    limited = world.sync(mode="full")
    assert limited.limit_reached is True
    assert limited.publishing_complete is True
    assert limited.counters.total == 6
    assert "daily API limit" in (limited.error or "")
    assert "resumes from the saved cursor" in (limited.error or "")
    assert world.cursor("Account") == stamp(T0 + timedelta(seconds=50))
    assert world.cursor("Contact") is None
    for envelope in world.raw_envelopes():
        processor.process(envelope)
    finished = world.executions.refresh(TENANT, limited.id)
    assert finished.status == "partial"
    assert finished.counters.created == 6

    provider.pages_left_today = None
    world.clock.now_value += timedelta(days=1)
    resumed = world.sync()
    assert ("Account", stamp(T0 + timedelta(seconds=50 - 300))) in provider.since_seen
    assert ("Contact", None) in provider.since_seen
    published = world.published()
    assert set(published) == {account(n, T0)["Id"] for n in range(6, 9)} | {
        contact(n, T0)["Id"] for n in range(2)
    }
    assert resumed.limit_reached is False
    assert resumed.error is None
    assert world.cursor("Account") == stamp(T0 + timedelta(seconds=80))


def test_a_daily_limit_while_re_reading_the_overlap_keeps_the_stored_cursor(tmp_path):
    provider = PagedProvider(
        {"Account": [account(n, T0 + timedelta(seconds=10 * n)) for n in range(9)]}
    )
    world = World(tmp_path, provider)
    world.sync(mode="full")
    assert world.cursor("Account") == stamp(T0 + timedelta(seconds=80))

    provider.pages_left_today = 1
    limited = world.sync()
    assert limited.limit_reached is True
    assert world.cursor("Account") == stamp(T0 + timedelta(seconds=80))


def test_final_status_with_the_limit_reached():
    def execution(limit_reached: bool, processed: int, failed: int) -> SyncExecution:
        return SyncExecution(
            id="s",
            tenant_id=TENANT,
            integration_id=INTEGRATION,
            correlation_id="c",
            trigger="scheduled",
            limit_reached=limit_reached,
            counters=SyncCounters(
                total=processed, processed=processed, created=processed - failed, failed=failed
            ),
        )

    assert execution(False, 5, 0).final_status() == "completed"
    assert execution(True, 5, 0).final_status() == "partial"
    assert execution(True, 0, 0).final_status() == "partial"
    assert execution(True, 5, 2).final_status() == "partial"
    assert execution(True, 5, 5).final_status() == "failed"


# -- publishing thresholds ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "singles", "batch_sizes"),
    [
        (SINGLE_EVENT_LIMIT, SINGLE_EVENT_LIMIT, []),
        (SINGLE_EVENT_LIMIT + 1, 0, [BATCH_SIZE, BATCH_SIZE, 1]),
        (260, 0, [BATCH_SIZE] * 5 + [10]),
    ],
)
def test_up_to_100_records_go_singly_and_more_in_batches_of_50(
    tmp_path, count, singles, batch_sizes
):
    provider = PagedProvider(
        {"Account": [account(n, T0 + timedelta(seconds=n)) for n in range(count)]},
        page_size=40,
    )
    world = World(tmp_path, provider)
    execution = world.sync(mode="full")
    envelopes = world.raw_envelopes()
    single = [e for e in envelopes if e.type == crm_events.DATA_RAW]
    batches = [e for e in envelopes if e.type == crm_events.DATA_RAW_BATCH]
    assert len(single) == singles
    assert sorted((len(b.data["records"]) for b in batches), reverse=True) == batch_sizes
    ids = [e.data["externalId"] for e in single] + [
        r["externalId"] for b in batches for r in b.data["records"]
    ]
    assert sorted(ids) == sorted(r["Id"] for r in provider.records["Account"])
    assert execution.counters.total == count
    assert {e.correlation_id for e in envelopes} == {execution.correlation_id}
