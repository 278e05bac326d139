from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.errors import ConflictError, PermanentError, TransientError
from core.models.shard_types import (
    SHARD_TYPE_DEFINITIONS,
    ShardTypeSetupError,
    ensure_shard_type,
    ensure_shard_types,
)
from core.models.shards import SHARD_TYPE_NAMES
from core.ports import Document, DocumentStore, Filter, Page

CONTAINER = "shard_types"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2025, 2, 1, tzinfo=UTC)


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.value = now

    def now(self) -> datetime:
        return self.value


class RecordingStore:
    """Delegates to a real store; counts writes and can fail chosen calls."""

    def __init__(self, inner: DocumentStore) -> None:
        self.inner = inner
        self.writes: list[tuple[str, str]] = []
        self.failures: dict[str, list[Exception]] = {}
        self.before_create: list[Document] = []

    def _maybe_fail(self, operation: str) -> None:
        pending = self.failures.get(operation)
        if pending:
            raise pending.pop(0)

    def get(self, container: str, partition_key: str, id: str) -> Document | None:
        self._maybe_fail("get")
        return self.inner.get(container, partition_key, id)

    def create(self, container: str, doc: Document) -> Document:
        self._maybe_fail("create")
        if self.before_create:
            self.inner.create(container, self.before_create.pop(0))
        self.writes.append(("create", doc["id"]))
        return self.inner.create(container, doc)

    def upsert(self, container: str, doc: Document, *, if_match: str | None = None) -> Document:
        self._maybe_fail("upsert")
        self.writes.append(("upsert", doc["id"]))
        return self.inner.upsert(container, doc, if_match=if_match)

    def upsert_many(self, container: str, docs: Sequence[Document]) -> list[Document]:
        self.writes.extend(("upsert", doc["id"]) for doc in docs)
        return self.inner.upsert_many(container, docs)

    def delete(
        self, container: str, partition_key: str, id: str, *, if_match: str | None = None
    ) -> bool:
        self.writes.append(("delete", id))
        return self.inner.delete(container, partition_key, id, if_match=if_match)

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
        return self.inner.query(
            container,
            partition_key=partition_key,
            filters=filters,
            order_by=order_by,
            descending=descending,
            limit=limit,
            continuation=continuation,
        )

    def count(
        self, container: str, *, partition_key: str | None = None, filters: Sequence[Filter] = ()
    ) -> int:
        return self.inner.count(container, partition_key=partition_key, filters=filters)

    def ping(self) -> None:
        self.inner.ping()


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[SqliteDocumentStore]:
    store = SqliteDocumentStore(tmp_path / "store.db")
    yield store
    store.close()


@pytest.fixture
def store(sqlite: SqliteDocumentStore) -> RecordingStore:
    return RecordingStore(sqlite)


def _stored(store: DocumentStore, name: str) -> dict[str, Any]:
    document = store.get(CONTAINER, name, name)
    assert document is not None, name
    return document


def test_first_run_creates_every_type(store: RecordingStore) -> None:
    sleeps: list[float] = []
    outcomes = ensure_shard_types(store, FixedClock(T0), sleep=sleeps.append)
    assert outcomes == dict.fromkeys(SHARD_TYPE_NAMES, "created")
    assert sorted(store.writes) == sorted(("create", name) for name in SHARD_TYPE_NAMES)
    assert sleeps == []
    opportunity = _stored(store, "Opportunity")
    assert opportunity["name"] == opportunity["id"] == "Opportunity"
    assert opportunity["schemaVersion"] == "1.0"
    assert opportunity["category"] == "crm"
    assert "documentCount" in opportunity["jsonSchema"]["properties"]
    assert opportunity["createdAt"] == opportunity["updatedAt"] == "2025-01-01T00:00:00Z"
    assert _stored(store, "Email")["vectorTextField"] == "bodyPlainText"
    assert store.count(CONTAINER) == len(SHARD_TYPE_NAMES)


def test_second_run_writes_nothing(store: RecordingStore) -> None:
    ensure_shard_types(store, FixedClock(T0), sleep=lambda _: None)
    store.writes.clear()
    outcomes = ensure_shard_types(store, FixedClock(T1), sleep=lambda _: None)
    assert outcomes == dict.fromkeys(SHARD_TYPE_NAMES, "unchanged")
    assert store.writes == []
    assert _stored(store, "Opportunity")["updatedAt"] == "2025-01-01T00:00:00Z"


def test_an_older_stored_version_is_updated(store: RecordingStore) -> None:
    ensure_shard_types(store, FixedClock(T0), sleep=lambda _: None)
    old = _stored(store, "Contact") | {"schemaVersion": "0.9", "jsonSchema": {"old": True}}
    store.inner.upsert(CONTAINER, old)
    store.writes.clear()
    outcomes = ensure_shard_types(store, FixedClock(T1), sleep=lambda _: None)
    assert outcomes["Contact"] == "updated"
    assert store.writes == [("upsert", "Contact")]
    contact = _stored(store, "Contact")
    assert contact["schemaVersion"] == "1.0"
    assert contact["jsonSchema"] == SHARD_TYPE_DEFINITIONS["Contact"].json_schema
    assert contact["createdAt"] == "2025-01-01T00:00:00Z"
    assert contact["updatedAt"] == "2025-02-01T00:00:00Z"


def test_an_unreadable_stored_version_is_replaced(store: RecordingStore) -> None:
    ensure_shard_types(store, FixedClock(T0), sleep=lambda _: None)
    store.inner.upsert(CONTAINER, _stored(store, "Lead") | {"schemaVersion": "v1"})
    assert ensure_shard_types(store, FixedClock(T1), sleep=lambda _: None)["Lead"] == "updated"
    assert _stored(store, "Lead")["schemaVersion"] == "1.0"


def test_a_newer_stored_version_is_not_downgraded(store: RecordingStore) -> None:
    ensure_shard_types(store, FixedClock(T0), sleep=lambda _: None)
    store.inner.upsert(CONTAINER, _stored(store, "Email") | {"schemaVersion": "1.10"})
    store.writes.clear()
    outcomes = ensure_shard_types(store, FixedClock(T1), sleep=lambda _: None)
    assert outcomes["Email"] == "newer_in_store"
    assert store.writes == []
    assert _stored(store, "Email")["schemaVersion"] == "1.10"


def test_transient_errors_are_retried_with_exponential_backoff(store: RecordingStore) -> None:
    store.failures["get"] = [TransientError("throttled"), TransientError("timeout")]
    sleeps: list[float] = []
    outcomes = ensure_shard_types(store, FixedClock(T0), sleep=sleeps.append)
    assert sleeps == [1.0, 2.0]
    assert outcomes == dict.fromkeys(SHARD_TYPE_NAMES, "created")


def test_start_up_fails_loudly_after_three_attempts(store: RecordingStore) -> None:
    ensure_shard_types(store, FixedClock(T0), sleep=lambda _: None)
    store.inner.delete(CONTAINER, "Meeting", "Meeting")
    store.failures["create"] = [TransientError("store unavailable") for _ in range(3)]
    sleeps: list[float] = []
    with pytest.raises(ShardTypeSetupError, match=r"'Meeting' after 3 attempt.*unavailable") as exc:
        ensure_shard_types(store, FixedClock(T0), sleep=sleeps.append, base_delay_seconds=0.5)
    assert exc.value.shard_type_name == "Meeting"
    assert isinstance(exc.value.__cause__, TransientError)
    assert sleeps == [0.5, 1.0]
    assert store.get(CONTAINER, "Meeting", "Meeting") is None


def test_a_permanent_error_fails_at_once(store: RecordingStore) -> None:
    store.failures["get"] = [PermanentError("container missing", resource=CONTAINER)]
    sleeps: list[float] = []
    with pytest.raises(ShardTypeSetupError, match="'Opportunity' after 1 attempt"):
        ensure_shard_types(store, FixedClock(T0), sleep=sleeps.append)
    assert sleeps == []


def test_losing_the_create_race_to_another_instance_is_fine(
    store: RecordingStore,
) -> None:
    rival = SHARD_TYPE_DEFINITIONS["Opportunity"].model_dump(mode="json", by_alias=True)
    store.before_create.append(rival)
    sleeps: list[float] = []
    outcomes = ensure_shard_types(store, FixedClock(T0), sleep=sleeps.append)
    assert outcomes["Opportunity"] == "unchanged"
    assert sleeps == [1.0]


def test_instances_starting_together_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    results: list[dict[str, str]] = []
    errors: list[BaseException] = []

    def start_instance() -> None:
        store = SqliteDocumentStore(path)
        try:
            results.append(dict(ensure_shard_types(store, sleep=lambda _: None)))
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=start_instance) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(results) == 4
    for name in SHARD_TYPE_NAMES:
        assert [r[name] for r in results].count("created") == 1, name
    check = SqliteDocumentStore(path)
    assert check.count(CONTAINER) == len(SHARD_TYPE_NAMES)
    check.close()


def test_ensure_one_type_at_run_time(store: RecordingStore) -> None:
    assert ensure_shard_type(store, "CalendarEvent", FixedClock(T0)) == "created"
    assert store.writes == [("create", "CalendarEvent")]
    assert ensure_shard_type(store, "CalendarEvent", FixedClock(T1)) == "unchanged"
    assert store.writes == [("create", "CalendarEvent")]


def test_ensure_one_type_survives_a_lost_race(store: RecordingStore) -> None:
    rival = SHARD_TYPE_DEFINITIONS["Document"].model_dump(mode="json", by_alias=True)
    store.before_create.append(rival)
    assert ensure_shard_type(store, "Document") == "unchanged"


def test_ensure_one_type_refuses_unknown_names(store: RecordingStore) -> None:
    with pytest.raises(PermanentError, match="unknown shard type 'Invoice'"):
        ensure_shard_type(store, "Invoice")
    assert store.writes == []


def test_ensure_one_type_lets_store_errors_through(store: RecordingStore) -> None:
    store.failures["get"] = [TransientError("throttled", retry_after=2.0)]
    with pytest.raises(TransientError, match="throttled"):
        ensure_shard_type(store, "Account")
    store.failures["get"] = [ConflictError("x"), ConflictError("y")]
    with pytest.raises(ConflictError):
        ensure_shard_type(store, "Account")
