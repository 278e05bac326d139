"""The local runtime's message bus: one SQLite file with Azure Service Bus semantics.

Every queue and subscription is a set of rows in `bus_messages`. One column,
`visible_at`, holds the scheduled enqueue time while a message waits and the lock expiry
while it is locked, so "ready to deliver" is a single range scan of the
(entity, dlq, visible_at) index, and an expired lock needs no sweeper: the row simply
becomes ready again and the next receive counts another delivery.

Concurrency: a connection per thread, WAL, `busy_timeout` for other processes, and one
in-process lock per database file so threads of one process queue on a cheap Python lock
instead of on SQLite's sleeping busy handler. Receive and every settlement are one
`UPDATE`/`DELETE` statement each (an autocommit write statement takes the write lock
before it reads, like `BEGIN IMMEDIATE`); multi-statement writes use `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import TypeAdapter

from core.adapters.local.sqlite_store import (
    WAL_AUTOCHECKPOINT_PAGES,
    WalCheckpointer,
    insert_rows,
    write_transaction,
)
from core.errors import (
    ConflictError,
    MessageLockLostError,
    NotFoundError,
    PermanentError,
    PortError,
    TransientError,
)
from core.messaging.bus_rules import check_receive
from core.messaging.topology import (
    TOPOLOGY,
    EntitySettings,
    QueueSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    subscription_path,
)
from core.ports import EntityDepth, OutboundMessage, ReceivedMessage

logger = logging.getLogger(__name__)

MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
TTL_EXPIRED = "TTLExpiredException"
MAX_MESSAGE_BYTES = 256 * 1024
"""Service Bus standard tier's message size limit, enforced locally so an oversized
message fails here rather than only in Azure."""
DUPLICATE_PURGE_INTERVAL_SECONDS = 60.0

_BUSY_TIMEOUT_SECONDS = 30.0
_PROPERTIES_ENCODER = json.JSONEncoder(separators=(",", ":"))
"""Built once: `json.dumps` with any option builds an encoder per call, which cost as much
as the rest of preparing a message."""
_PROPERTIES_CACHE_SIZE = 1024
_properties_cache: dict[tuple[Any, ...], str] = {}
_SECURE_DELETE = "PRAGMA secure_delete=FAST"
"""Debian's SQLite zeroes every freed page (SECURE_DELETE), so settling a 90 KB message
wrote its ~22 overflow pages again: 550-760 us per delete, against 50 us with FAST, which
zeroes deleted content only where the page is written anyway. Message bodies are the
data the shards hold, and their WAL frames outlive the delete in any mode."""
_FIRST_POLL_SECONDS = 0.02
_MAX_POLL_SECONDS = 0.2
_IDS_PER_QUERY = 500
_NO_LOCK = datetime.min.replace(tzinfo=UTC)
_NO_RECORDED_ERROR = "none recorded (the lock expired or the message was abandoned without one)"

EntityKind = Literal["queue", "topic"]

_QUEUE_SPEC = TypeAdapter(QueueSpec)
_TOPIC_SPEC = TypeAdapter(TopicSpec)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bus_entities (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('queue', 'topic')),
        spec TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS bus_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "INSERT OR IGNORE INTO bus_meta (key, value) VALUES ('topology_version', 0)",
    """CREATE TABLE IF NOT EXISTS bus_messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        entity TEXT NOT NULL,
        dlq INTEGER NOT NULL DEFAULT 0,
        visible_at REAL NOT NULL,
        lock_token TEXT,
        delivery_count INTEGER NOT NULL DEFAULT 0,
        message_id TEXT NOT NULL,
        enqueued_at REAL NOT NULL,
        scheduled_at REAL,
        expires_at REAL,
        correlation_id TEXT,
        subject TEXT,
        content_type TEXT,
        properties TEXT,
        last_error TEXT,
        dead_letter_reason TEXT,
        dead_letter_description TEXT,
        body BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS bus_messages_ready ON bus_messages (entity, dlq, visible_at)",
    """CREATE TABLE IF NOT EXISTS bus_duplicates (
        scope TEXT NOT NULL,
        message_id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (scope, message_id)
    ) WITHOUT ROWID""",
)

_INSERT_MESSAGES = """
    INSERT INTO bus_messages (entity, visible_at, message_id, enqueued_at, scheduled_at,
        expires_at, correlation_id, subject, content_type, properties, body)"""
_CLAIM_MESSAGE_IDS = "INSERT INTO bus_duplicates (scope, message_id, expires_at)"
# An id is claimed when it is new or its window has passed (`?` = now); RETURNING yields
# exactly those, so a copy within the window, or a second copy in the same send, is not.
_CLAIMED = """
    ON CONFLICT (scope, message_id) DO UPDATE SET expires_at = excluded.expires_at
    WHERE bus_duplicates.expires_at <= ? RETURNING message_id"""
_PURGE_MESSAGE_IDS = "DELETE FROM bus_duplicates WHERE expires_at <= ?"
_TOPOLOGY_VERSION = "SELECT value FROM bus_meta WHERE key = 'topology_version'"

_MESSAGE_COLUMNS = (
    "seq, delivery_count, message_id, enqueued_at, scheduled_at, expires_at, correlation_id,"
    " subject, content_type, properties, body"
)
"""What a received or peeked message is made of (`_received_message`), in this order; a
receive adds its lock token and last error (`_LOCK_TOKEN`, `_LAST_ERROR`)."""
_SEQ, _DELIVERY_COUNT, _MESSAGE_ID, _EXPIRES_AT, _LOCK_TOKEN, _LAST_ERROR = 0, 1, 2, 5, 11, 12
# ?1 locked until, ?2 lock token prefix, ?3 entity, ?4 now, ?5 how many
_RECEIVE = (
    """
    UPDATE bus_messages
    SET visible_at = ?1, lock_token = ?2 || seq, delivery_count = delivery_count + 1
    WHERE seq IN (
        SELECT seq FROM bus_messages
        WHERE entity = ?3 AND dlq = 0 AND visible_at <= ?4
        ORDER BY visible_at
        LIMIT ?5
    )
    RETURNING """
    + _MESSAGE_COLUMNS
    + ", lock_token, last_error"
)
_DEAD_LETTER_UNDELIVERED = """
    UPDATE bus_messages
    SET dlq = 1, visible_at = ?, lock_token = NULL, delivery_count = delivery_count - 1,
        dead_letter_reason = ?, dead_letter_description = ?
    WHERE seq = ? AND lock_token = ?"""
_DISCARD_UNDELIVERED = "DELETE FROM bus_messages WHERE seq = ? AND lock_token = ?"

# Settlements: ?1 now, ?2 sequence number, ?3 lock token, then the statement's own values.
_HELD = "seq = ?2 AND lock_token = ?3 AND dlq = 0 AND visible_at > ?1"
_COMPLETE = f"DELETE FROM bus_messages WHERE {_HELD}"
# ?4 lock seconds
_RENEW = f"UPDATE bus_messages SET visible_at = ?1 + ?4 WHERE {_HELD}"
# ?4 reason, ?5 description
_DEAD_LETTER = f"""
    UPDATE bus_messages
    SET dlq = 1, visible_at = ?1, lock_token = NULL, dead_letter_reason = ?4,
        dead_letter_description = ?5
    WHERE {_HELD}"""
# ?4 error, ?5 max delivery count, ?6 reason, ?7 description prefix, ?8 fallback error text
_ABANDON = f"""
    UPDATE bus_messages
    SET visible_at = ?1, lock_token = NULL, last_error = COALESCE(?4, last_error),
        dlq = delivery_count >= ?5,
        dead_letter_reason = CASE WHEN delivery_count >= ?5 THEN ?6 END,
        dead_letter_description = CASE WHEN delivery_count >= ?5
            THEN ?7 || COALESCE(?4, last_error, ?8) END
    WHERE {_HELD}
    RETURNING dlq"""

_PEEK_DEAD_LETTERS = (
    ("SELECT " + _MESSAGE_COLUMNS + ", dead_letter_reason, dead_letter_description")
    + """
    FROM bus_messages
    WHERE entity = ? AND dlq = 1
    ORDER BY visible_at
    LIMIT ?"""
)
_REPLAY = """
    UPDATE bus_messages
    SET dlq = 0, visible_at = ?1, lock_token = NULL, delivery_count = 0, enqueued_at = ?1,
        scheduled_at = NULL,
        expires_at = CASE WHEN expires_at IS NULL THEN NULL ELSE ?1 + expires_at - enqueued_at END,
        last_error = NULL, dead_letter_reason = NULL, dead_letter_description = NULL
    WHERE entity = ?2 AND dlq = 1"""
# Each count is a range of the (entity, dlq, visible_at) index; only the rows not yet
# visible (locked or scheduled, usually few) are read to tell the two apart.
_DEPTH = """
    SELECT
        (SELECT COUNT(*) FROM bus_messages WHERE entity = ?2 AND dlq = 0 AND visible_at <= ?1),
        (SELECT COUNT(*) FROM bus_messages
            WHERE entity = ?2 AND dlq = 0 AND visible_at > ?1 AND lock_token IS NULL),
        (SELECT COUNT(*) FROM bus_messages
            WHERE entity = ?2 AND dlq = 0 AND visible_at > ?1 AND lock_token IS NOT NULL),
        (SELECT COUNT(*) FROM bus_messages WHERE entity = ?2 AND dlq = 1)"""


@dataclass(frozen=True, slots=True)
class _Receivable:
    """A queue or subscription with its settings, in seconds for the hot path."""

    name: str
    lock_seconds: float
    ttl_seconds: float
    max_delivery_count: int
    dead_letter_on_expiry: bool
    subscription: SubscriptionSpec | None


@dataclass(frozen=True, slots=True)
class _Sendable:
    """A queue or topic: the scope of duplicate detection and where a send lands."""

    name: str
    is_topic: bool
    duplicate_window_seconds: float
    targets: tuple[_Receivable, ...]


@dataclass(frozen=True, slots=True)
class _Catalog:
    version: int
    sendables: dict[str, _Sendable]
    receivables: dict[str, _Receivable]
    subscription_topics: dict[str, str]


@dataclass(slots=True)
class _Prepared:
    """An outbound message validated and serialised once, before the write lock. Not
    frozen: a frozen dataclass sets each field through `object.__setattr__`, which more
    than doubles its construction, and there is one per message sent."""

    message_id: str
    body: bytes
    correlation_id: str | None
    subject: str | None
    content_type: str | None
    properties: dict[str, Any]
    properties_json: str | None
    scheduled_at: float | None
    ttl_seconds: float | None


class _Arrivals:
    """Wakes receivers of this process waiting on an entity when something becomes ready.

    A per-entity generation counter closes the gap between a receiver's empty read and
    its wait: it only sleeps if nothing arrived since it last looked.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conditions: dict[str, threading.Condition] = {}
        self._generations: dict[str, int] = {}

    def generation(self, entity: str) -> int:
        return self._generations.get(entity, 0)

    def announce(self, entities: Iterable[str]) -> None:
        with self._lock:
            for entity in entities:
                self._generations[entity] = self._generations.get(entity, 0) + 1
                condition = self._conditions.get(entity)
                if condition is not None:
                    condition.notify_all()

    def wait(self, entity: str, seen: int, timeout: float) -> None:
        with self._lock:
            if self._generations.get(entity, 0) != seen:
                return
            condition = self._conditions.get(entity)
            if condition is None:
                condition = self._conditions[entity] = threading.Condition(self._lock)
            condition.wait(timeout)


class _SharedFile:
    """What every SqliteBus in this process shares for one database file."""

    __slots__ = ("__weakref__", "arrivals", "checkpointer", "write_lock")

    def __init__(self, path: Path) -> None:
        self.write_lock = threading.Lock()
        self.arrivals = _Arrivals()
        self.checkpointer = WalCheckpointer(path, _BUSY_TIMEOUT_SECONDS)


_SHARED_FILES: weakref.WeakValueDictionary[str, _SharedFile] = weakref.WeakValueDictionary()
_SHARED_FILES_LOCK = threading.Lock()


def _shared_file(path: Path) -> _SharedFile:
    key = str(path.resolve())
    with _SHARED_FILES_LOCK:
        shared = _SHARED_FILES.get(key)
        if shared is None:
            shared = _SHARED_FILES[key] = _SharedFile(Path(key))
        return shared


def _timestamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class SqliteBus:
    """The `Bus` port on one SQLite file, shareable by threads and processes.

    `topology` is ensured at start-up; entities created later by any process are read
    back from the file. `lock_duration` overrides every entity's lock duration (tests,
    local tuning); `clock` returns epoch seconds and drives every visibility decision.
    """

    def __init__(
        self,
        path: Path,
        topology: Topology = TOPOLOGY,
        *,
        clock: Callable[[], float] = time.time,
        lock_duration: timedelta | None = None,
    ) -> None:
        if lock_duration is not None and lock_duration <= timedelta(0):
            raise PermanentError(f"lock_duration must be positive, got {lock_duration}")
        self._path = Path(path)
        self._clock = clock
        self._lock_override = lock_duration
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._next_duplicate_purge = 0.0
        self._lock_token_prefix = uuid.uuid4().hex + "-"
        self._receive_numbers = itertools.count()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._shared = _shared_file(self._path)
        conn = self._conn()
        with self._shared.write_lock:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode != "wal":
                    raise PermanentError(
                        f"SQLite bus {self._path} cannot use WAL (journal_mode={mode})",
                        resource=str(self._path),
                    )
                with write_transaction(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    for queue in topology.queues:
                        self._define(conn, "queue", queue.name, _queue_json(queue))
                    for topic in topology.topics:
                        self._define(conn, "topic", topic.name, _topic_json(topic))
                    self._catalog = self._load_catalog(conn)
            except sqlite3.Error as exc:
                raise self._translate(exc, str(self._path)) from exc

    # ----------------------------------------------------------------------------------
    # entities
    # ----------------------------------------------------------------------------------

    def create_queue(self, spec: QueueSpec) -> None:
        """Create or update a queue; ConflictError if a topic already has the name."""
        self._create("queue", spec.name, _queue_json(spec))

    def create_topic(self, spec: TopicSpec) -> None:
        """Create or update a topic and its subscriptions."""
        self._create("topic", spec.name, _topic_json(spec))

    def entities(self) -> list[str]:
        self._refresh_catalog()
        return list(self._catalog.receivables)

    def _create(self, kind: EntityKind, name: str, spec_json: str) -> None:
        conn = self._conn()
        with self._shared.write_lock:
            try:
                with write_transaction(conn):
                    self._define(conn, kind, name, spec_json)
                    catalog = self._load_catalog(conn)
            except sqlite3.Error as exc:
                raise self._translate(exc, name) from exc
        self._catalog = catalog

    def _define(
        self, conn: sqlite3.Connection, kind: EntityKind, name: str, spec_json: str
    ) -> None:
        existing = conn.execute(
            "SELECT kind, spec FROM bus_entities WHERE name = ?", (name,)
        ).fetchone()
        if existing is not None and existing[0] != kind:
            raise ConflictError(f"'{name}' already exists as a {existing[0]}", resource=name)
        if existing is not None and existing[1] == spec_json:
            return
        conn.execute(
            "INSERT INTO bus_entities (name, kind, spec) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
            (name, kind, spec_json),
        )
        conn.execute("UPDATE bus_meta SET value = value + 1 WHERE key = 'topology_version'")

    def _load_catalog(self, conn: sqlite3.Connection) -> _Catalog:
        version = conn.execute(_TOPOLOGY_VERSION).fetchone()[0]
        rows = conn.execute("SELECT name, kind, spec FROM bus_entities ORDER BY rowid").fetchall()
        sendables: dict[str, _Sendable] = {}
        receivables: dict[str, _Receivable] = {}
        subscription_topics: dict[str, str] = {}
        for name, kind, spec_json in rows:
            if kind == "queue":
                queue = _QUEUE_SPEC.validate_json(spec_json)
                target = self._receivable(queue.name, queue.settings, None)
                receivables[target.name] = target
                window = queue.duplicate_detection_window.total_seconds()
                sendables[name] = _Sendable(name, False, window, (target,))
            else:
                topic = _TOPIC_SPEC.validate_json(spec_json)
                targets = tuple(
                    self._receivable(subscription_path(name, sub.name), sub.settings, sub)
                    for sub in topic.subscriptions
                )
                for target in targets:
                    receivables[target.name] = target
                    subscription_topics[target.name] = name
                window = topic.duplicate_detection_window.total_seconds()
                sendables[name] = _Sendable(name, True, window, targets)
        return _Catalog(version, sendables, receivables, subscription_topics)

    def _receivable(
        self, name: str, settings: EntitySettings, subscription: SubscriptionSpec | None
    ) -> _Receivable:
        lock = self._lock_override or settings.lock_duration
        return _Receivable(
            name=name,
            lock_seconds=lock.total_seconds(),
            ttl_seconds=settings.default_ttl.total_seconds(),
            max_delivery_count=settings.max_delivery_count,
            dead_letter_on_expiry=settings.dead_letter_on_expiry,
            subscription=subscription,
        )

    def _refresh_catalog(self) -> None:
        conn = self._conn()
        try:
            if conn.in_transaction:
                catalog = self._load_catalog(conn)
            else:
                conn.execute("BEGIN")
                try:
                    catalog = self._load_catalog(conn)
                finally:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._translate(exc, str(self._path)) from exc
        if catalog.version >= self._catalog.version:
            self._catalog = catalog

    def _resolve_receivable(self, entity: str) -> _Receivable:
        receivable = self._catalog.receivables.get(entity)
        if receivable is None:
            self._refresh_catalog()
            receivable = self._catalog.receivables.get(entity)
        if receivable is not None:
            return receivable
        topic = self._catalog.sendables.get(entity)
        if topic is not None:
            names = ", ".join(target.name for target in topic.targets) or "none defined"
            raise PermanentError(
                f"'{entity}' is a topic: receive from one of its subscriptions ({names})",
                resource=entity,
            )
        raise NotFoundError(f"Bus entity '{entity}' does not exist", resource=entity)

    def _resolve_sendable(self, entity: str) -> _Sendable:
        sendable = self._catalog.sendables.get(entity)
        if sendable is None:
            self._refresh_catalog()
            sendable = self._catalog.sendables.get(entity)
        if sendable is not None:
            return sendable
        topic = self._catalog.subscription_topics.get(entity)
        if topic is not None:
            raise PermanentError(
                f"'{entity}' is a subscription: send to its topic '{topic}'", resource=entity
            )
        raise NotFoundError(f"Bus entity '{entity}' does not exist", resource=entity)

    # ----------------------------------------------------------------------------------
    # send
    # ----------------------------------------------------------------------------------

    def send(self, entity: str, messages: Sequence[OutboundMessage]) -> None:
        """Enqueue a batch atomically; duplicates (by message id, within the window) are
        discarded as Service Bus does, and a topic message lands in every matching
        subscription (in none if none matches, as on Service Bus)."""
        self._resolve_sendable(entity)
        if not messages:
            return
        prepared = [_prepare(entity, message) for message in messages]
        conn = self._conn()
        with self._shared.write_lock:
            try:
                with write_transaction(conn):
                    if conn.execute(_TOPOLOGY_VERSION).fetchone()[0] != self._catalog.version:
                        self._catalog = self._load_catalog(conn)
                    sendable = self._resolve_sendable(entity)
                    now = self._clock()
                    landed = self._insert(conn, sendable, prepared, now)
                    if now >= self._next_duplicate_purge:
                        conn.execute(_PURGE_MESSAGE_IDS, (now,))
                        self._next_duplicate_purge = now + DUPLICATE_PURGE_INTERVAL_SECONDS
            except sqlite3.Error as exc:
                raise self._translate(exc, entity) from exc
        self._shared.checkpointer.request()
        if landed:
            self._shared.arrivals.announce(landed)

    def _insert(
        self,
        conn: sqlite3.Connection,
        sendable: _Sendable,
        prepared: list[_Prepared],
        now: float,
    ) -> set[str]:
        scope = sendable.name
        id_expiry = now + sendable.duplicate_window_seconds
        claimed = {
            row[0]
            for row in insert_rows(
                conn,
                _CLAIM_MESSAGE_IDS,
                [(scope, message.message_id, id_expiry) for message in prepared],
                _CLAIMED,
                (now,),
            )
        }
        message_rows: list[tuple[Any, ...]] = []
        landed: set[str] = set()
        sent = 0
        # The targets a message lands in depend on its properties alone; a batch mostly
        # repeats a few property sets, so each set is matched once.
        targets_for: dict[str | None, list[_Receivable]] = {}
        for message in prepared:
            if message.message_id not in claimed:
                logger.debug("bus: duplicate message %s to %s discarded", message.message_id, scope)
                continue
            claimed.discard(message.message_id)
            sent += 1
            scheduled = message.scheduled_at
            enqueued = now if scheduled is None or scheduled < now else scheduled
            targets = targets_for.get(message.properties_json)
            if targets is None:
                targets = targets_for[message.properties_json] = [
                    target
                    for target in sendable.targets
                    if target.subscription is None
                    or target.subscription.matches(message.properties)
                ]
            for target in targets:
                ttl = target.ttl_seconds
                if message.ttl_seconds is not None and message.ttl_seconds < ttl:
                    ttl = message.ttl_seconds
                message_rows.append(
                    (
                        target.name,
                        enqueued,
                        message.message_id,
                        enqueued,
                        scheduled,
                        enqueued + ttl,
                        message.correlation_id,
                        message.subject,
                        message.content_type,
                        message.properties_json,
                        message.body,
                    )
                )
                landed.add(target.name)
        insert_rows(conn, _INSERT_MESSAGES, message_rows)
        if sendable.is_topic:
            unmatched = sent - len({row[2] for row in message_rows})
            if unmatched:
                logger.debug("bus: %d message(s) to %s matched no subscription", unmatched, scope)
        return landed

    def wake_receivers(self, entities: Iterable[str]) -> None:
        """Wakes this process's receivers of what another process sent to `entities` (queues
        or topics), as its own sends do; they would otherwise see it at their next poll."""
        names = {
            target.name
            for entity in entities
            if (sendable := self._catalog.sendables.get(entity)) is not None
            for target in sendable.targets
        }
        if names:
            self._shared.arrivals.announce(names)

    # ----------------------------------------------------------------------------------
    # receive
    # ----------------------------------------------------------------------------------

    def receive(
        self, entity: str, *, max_messages: int = 1, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        """Peek-lock up to `max_messages`; with `wait_seconds`, block until one is ready
        (woken by sends in this process, polling for other processes and timers)."""
        check_receive(entity, max_messages, wait_seconds)
        receivable = self._resolve_receivable(entity)
        arrivals = self._shared.arrivals
        deadline = time.monotonic() + wait_seconds
        pause = _FIRST_POLL_SECONDS
        while True:
            seen = arrivals.generation(entity)
            received = self._receive_ready(receivable, max_messages)
            if received:
                return received
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            arrivals.wait(entity, seen, min(pause, remaining))
            pause = min(pause * 2, _MAX_POLL_SECONDS)

    def _receive_ready(self, receivable: _Receivable, limit: int) -> list[ReceivedMessage]:
        conn = self._conn()
        entity = receivable.name
        deliverable: list[tuple[Any, ...]] = []
        with self._shared.write_lock:
            now = self._clock()
            locked_until = now + receivable.lock_seconds
            try:
                while len(deliverable) < limit:
                    token = f"{self._lock_token_prefix}{next(self._receive_numbers)}:"
                    rows = conn.execute(
                        _RECEIVE, (locked_until, token, entity, now, limit - len(deliverable))
                    ).fetchall()
                    if not rows:
                        break
                    undeliverable = [row for row in rows if _undeliverable(receivable, row, now)]
                    if not undeliverable:
                        deliverable.extend(rows)
                        break
                    self._dead_letter_undeliverable(conn, receivable, undeliverable, now)
                    removed = {row[_SEQ] for row in undeliverable}
                    deliverable.extend(row for row in rows if row[_SEQ] not in removed)
            except sqlite3.Error as exc:
                raise self._translate(exc, entity) from exc
        deliverable.sort(key=lambda row: row[_SEQ])
        until = _timestamp(locked_until)
        return [
            _received_message(entity, row, lock_token=row[_LOCK_TOKEN], locked_until=until)
            for row in deliverable
        ]

    @staticmethod
    def _dead_letter_undeliverable(
        conn: sqlite3.Connection,
        receivable: _Receivable,
        rows: list[tuple[Any, ...]],
        now: float,
    ) -> None:
        """Messages picked by a receive that must not be delivered: expired (TTL) or
        redelivered past the maximum after their locks expired."""
        dead: list[tuple[Any, ...]] = []
        discarded: list[tuple[Any, ...]] = []
        for row in rows:
            seq, lock_token, message_id, expires_at, last_error = (
                row[_SEQ],
                row[_LOCK_TOKEN],
                row[_MESSAGE_ID],
                row[_EXPIRES_AT],
                row[_LAST_ERROR],
            )
            if expires_at is not None and expires_at <= now:
                if not receivable.dead_letter_on_expiry:
                    logger.info(
                        "bus: message %s in %s expired and was discarded",
                        message_id,
                        receivable.name,
                    )
                    discarded.append((seq, lock_token))
                    continue
                reason = TTL_EXPIRED
                description = (
                    f"Message expired at {_timestamp(expires_at).isoformat()} before it "
                    "was consumed"
                )
            else:
                reason = MAX_DELIVERY_COUNT_EXCEEDED
                description = _max_delivery_prefix(receivable.max_delivery_count) + (
                    last_error or _NO_RECORDED_ERROR
                )
            logger.warning(
                "bus: message %s in %s dead-lettered: %s", message_id, receivable.name, reason
            )
            dead.append((now, reason, description, seq, lock_token))
        if dead:
            conn.executemany(_DEAD_LETTER_UNDELIVERED, dead)
        if discarded:
            conn.executemany(_DISCARD_UNDELIVERED, discarded)

    # ----------------------------------------------------------------------------------
    # settlement
    # ----------------------------------------------------------------------------------

    def complete(self, message: ReceivedMessage) -> None:
        self._settle(message, _COMPLETE, ())

    def abandon(self, message: ReceivedMessage, *, error: str | None = None) -> None:
        """Release the lock; at the maximum delivery count the message is dead-lettered
        with `error` (or the last recorded one) in its description."""
        receivable = self._resolve_receivable(message.entity)
        conn = self._conn()
        with self._shared.write_lock:
            now = self._clock()
            try:
                outcome = conn.execute(
                    _ABANDON,
                    (
                        now,
                        message.sequence_number,
                        message.lock_token,
                        error,
                        receivable.max_delivery_count,
                        MAX_DELIVERY_COUNT_EXCEEDED,
                        _max_delivery_prefix(receivable.max_delivery_count),
                        _NO_RECORDED_ERROR,
                    ),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._translate(exc, message.entity) from exc
        if not outcome:
            raise _lock_lost(message)
        if outcome[0][0]:
            logger.warning(
                "bus: message %s in %s dead-lettered: %s",
                message.message_id,
                message.entity,
                MAX_DELIVERY_COUNT_EXCEEDED,
            )
        else:
            self._shared.arrivals.announce((message.entity,))

    def dead_letter(self, message: ReceivedMessage, *, reason: str, description: str) -> None:
        self._settle(message, _DEAD_LETTER, (reason, description))

    def renew_lock(self, message: ReceivedMessage) -> datetime:
        """Extend the lock by the entity's lock duration from now; updates `message`."""
        lock_seconds = self._resolve_receivable(message.entity).lock_seconds
        now = self._settle(message, _RENEW, (lock_seconds,))
        message.locked_until = _timestamp(now + lock_seconds)
        return message.locked_until

    def _settle(self, message: ReceivedMessage, sql: str, values: tuple[Any, ...]) -> float:
        """Run one settlement statement if the lock is still held; returns the time used."""
        conn = self._conn()
        with self._shared.write_lock:
            now = self._clock()
            try:
                changed = conn.execute(
                    sql, (now, message.sequence_number, message.lock_token, *values)
                ).rowcount
            except sqlite3.Error as exc:
                raise self._translate(exc, message.entity) from exc
        self._shared.checkpointer.request()
        if not changed:
            raise _lock_lost(message)
        return now

    # ----------------------------------------------------------------------------------
    # dead letters, depth, health
    # ----------------------------------------------------------------------------------

    def peek_dead_letters(self, entity: str, *, max_messages: int = 100) -> list[ReceivedMessage]:
        """Dead-lettered messages, oldest first, without locking them (`lock_token` is
        empty: a peeked message cannot be settled)."""
        check_receive(entity, max_messages)
        self._resolve_receivable(entity)
        try:
            rows = self._conn().execute(_PEEK_DEAD_LETTERS, (entity, max_messages)).fetchall()
        except sqlite3.Error as exc:
            raise self._translate(exc, entity) from exc
        return [
            _received_message(
                entity,
                row,
                lock_token="",
                locked_until=_NO_LOCK,
                dead_letter_reason=row[-2],
                dead_letter_description=row[-1],
            )
            for row in rows
        ]

    def replay_dead_letters(self, entity: str, *, message_ids: Sequence[str] | None = None) -> int:
        """Resubmit dead letters to their entity as new deliveries (delivery count 0,
        enqueue time now, the original time to live restarted); returns how many moved."""
        self._resolve_receivable(entity)
        if message_ids is not None and not message_ids:
            return 0
        conn = self._conn()
        moved = 0
        with self._shared.write_lock:
            now = self._clock()
            try:
                with write_transaction(conn):
                    if message_ids is None:
                        moved = conn.execute(_REPLAY, (now, entity)).rowcount
                    else:
                        ids = list(dict.fromkeys(message_ids))
                        for start in range(0, len(ids), _IDS_PER_QUERY):
                            chunk = ids[start : start + _IDS_PER_QUERY]
                            marks = ",".join("?" * len(chunk))
                            moved += conn.execute(
                                f"{_REPLAY} AND message_id IN ({marks})", (now, entity, *chunk)
                            ).rowcount
            except sqlite3.Error as exc:
                raise self._translate(exc, entity) from exc
        if moved:
            self._shared.arrivals.announce((entity,))
        return moved

    def depth(self, entity: str) -> EntityDepth:
        self._resolve_receivable(entity)
        try:
            active, scheduled, locked, dead = (
                self._conn().execute(_DEPTH, (self._clock(), entity)).fetchone()
            )
        except sqlite3.Error as exc:
            raise self._translate(exc, entity) from exc
        return EntityDepth(entity, active, scheduled, locked, dead)

    def ping(self) -> None:
        try:
            self._conn().execute(_TOPOLOGY_VERSION).fetchone()
        except sqlite3.Error as exc:
            raise self._translate(exc, str(self._path)) from exc

    # ----------------------------------------------------------------------------------
    # connections
    # ----------------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        with self._connections_lock:
            for _thread, conn in self._connections:
                conn.close()
            self._connections.clear()

    def __enter__(self) -> SqliteBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise PermanentError(f"SQLite bus {self._path} is closed", resource=str(self._path))
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=_BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            conn.execute(_SECURE_DELETE)
        except sqlite3.Error as exc:
            raise self._translate(exc, str(self._path)) from exc
        with self._connections_lock:
            alive = []
            for thread, other in self._connections:
                if thread.is_alive():
                    alive.append((thread, other))
                else:
                    other.close()
            alive.append((threading.current_thread(), conn))
            self._connections = alive
        self._local.conn = conn
        return conn

    def _translate(self, exc: sqlite3.Error, resource: str) -> PortError:
        if isinstance(exc, sqlite3.OperationalError):
            return TransientError(
                f"SQLite bus {self._path} failed on '{resource}': {exc}", resource=resource
            )
        return PermanentError(
            f"SQLite bus {self._path} failed on '{resource}': {exc}", resource=resource
        )


def _queue_json(spec: QueueSpec) -> str:
    _check_name(spec.name, "queue")
    _check_settings(spec.name, spec.settings)
    _check_window(spec.name, spec.duplicate_detection_window)
    return _QUEUE_SPEC.dump_json(spec).decode()


def _topic_json(spec: TopicSpec) -> str:
    _check_name(spec.name, "topic")
    _check_window(spec.name, spec.duplicate_detection_window)
    names = [sub.name for sub in spec.subscriptions]
    for sub in spec.subscriptions:
        path = subscription_path(spec.name, sub.name)
        _check_name(sub.name, "subscription")
        if names.count(sub.name) > 1:
            raise PermanentError(f"subscription '{path}' is defined twice", resource=path)
        _check_settings(path, sub.settings)
    return _TOPIC_SPEC.dump_json(spec).decode()


def _check_name(name: str, kind: str) -> None:
    if not name or name != name.strip():
        raise PermanentError(f"{kind} name {name!r} must be non-empty without outer spaces")
    if "/subscriptions/" in name:
        raise PermanentError(f"{kind} name {name!r} must not contain '/subscriptions/'")


def _check_settings(entity: str, settings: EntitySettings) -> None:
    if settings.max_delivery_count < 1:
        raise PermanentError(
            f"{entity}: max_delivery_count must be at least 1, got {settings.max_delivery_count}",
            resource=entity,
        )
    for field_name in ("default_ttl", "lock_duration"):
        value: timedelta = getattr(settings, field_name)
        if value <= timedelta(0):
            raise PermanentError(
                f"{entity}: {field_name} must be positive, got {value}", resource=entity
            )


def _check_window(entity: str, window: timedelta) -> None:
    if window <= timedelta(0):
        raise PermanentError(
            f"{entity}: duplicate_detection_window must be positive, got {window}",
            resource=entity,
        )


def _prepare(entity: str, message: OutboundMessage) -> _Prepared:
    body = message.body
    if not isinstance(body, bytes | bytearray | memoryview):
        raise PermanentError(
            f"message {message.message_id!r} to '{entity}': body must be bytes, "
            f"got {type(body).__name__}",
            resource=entity,
        )
    body = bytes(body)
    message_id = message.message_id if message.message_id is not None else uuid.uuid4().hex
    if not message_id:
        raise PermanentError(
            f"a message to '{entity}' has an empty message_id (use None for a generated one)",
            resource=entity,
        )
    properties = message.application_properties
    properties_json = _properties_json(properties) if properties else None
    size = len(body) + (len(properties_json) if properties_json else 0)
    if size > MAX_MESSAGE_BYTES:
        raise PermanentError(
            f"message {message_id} to '{entity}' is {size} bytes (body and properties); "
            f"the limit is {MAX_MESSAGE_BYTES}: send large payloads by claim check",
            resource=entity,
        )
    scheduled_at = None
    if message.scheduled_enqueue_time is not None:
        when = message.scheduled_enqueue_time
        if when.tzinfo is None or when.utcoffset() is None:
            raise PermanentError(
                f"message {message_id} to '{entity}': scheduled_enqueue_time must be "
                f"timezone-aware, got {when.isoformat()}",
                resource=entity,
            )
        scheduled_at = when.timestamp()
    ttl_seconds = None
    if message.time_to_live is not None:
        ttl_seconds = message.time_to_live.total_seconds()
        if ttl_seconds <= 0:
            raise PermanentError(
                f"message {message_id} to '{entity}': time_to_live must be positive, "
                f"got {message.time_to_live}",
                resource=entity,
            )
    return _Prepared(
        message_id=message_id,
        body=body,
        correlation_id=message.correlation_id,
        subject=message.subject,
        content_type=message.content_type,
        properties=properties,
        properties_json=properties_json,
        scheduled_at=scheduled_at,
        ttl_seconds=ttl_seconds,
    )


def _properties_json(properties: dict[str, Any]) -> str:
    """Application properties as JSON. The messages of a send mostly repeat a few property
    sets (event type, tenant, shard type), so each set is encoded once and remembered. The
    key holds each value's type, as 1, 1.0 and True are equal but encode differently;
    floats are not remembered (0.0 equals -0.0)."""
    values = properties.values()
    types = tuple(map(type, values))
    if float in types:
        return _PROPERTIES_ENCODER.encode(properties)
    key = (*properties, *values, *types)
    try:
        cached = _properties_cache.get(key)
    except TypeError:  # an unhashable value: encoded every time
        return _PROPERTIES_ENCODER.encode(properties)
    if cached is None:
        cached = _PROPERTIES_ENCODER.encode(properties)
        if len(_properties_cache) >= _PROPERTIES_CACHE_SIZE:
            _properties_cache.clear()
        _properties_cache[key] = cached
    return cached


def _received_message(
    entity: str,
    row: tuple[Any, ...],
    *,
    lock_token: str,
    locked_until: datetime,
    dead_letter_reason: str | None = None,
    dead_letter_description: str | None = None,
) -> ReceivedMessage:
    """A message from a row that starts with `_MESSAGE_COLUMNS`."""
    (
        seq,
        delivery_count,
        message_id,
        enqueued_at,
        scheduled_at,
        expires_at,
        correlation_id,
        subject,
        content_type,
        properties,
        body,
    ) = row[:11]
    return ReceivedMessage(
        entity=entity,
        body=body,
        message_id=message_id,
        sequence_number=seq,
        delivery_count=delivery_count,
        enqueued_time=_timestamp(enqueued_at),
        lock_token=lock_token,
        locked_until=locked_until,
        correlation_id=correlation_id,
        subject=subject,
        content_type=content_type,
        application_properties=json.loads(properties) if properties else {},
        expires_at=None if expires_at is None else _timestamp(expires_at),
        scheduled_enqueue_time=None if scheduled_at is None else _timestamp(scheduled_at),
        dead_letter_reason=dead_letter_reason,
        dead_letter_description=dead_letter_description,
    )


def _undeliverable(receivable: _Receivable, row: tuple[Any, ...], now: float) -> bool:
    delivery_count, expires_at = row[_DELIVERY_COUNT], row[_EXPIRES_AT]
    return delivery_count > receivable.max_delivery_count or (
        expires_at is not None and expires_at <= now
    )


def _max_delivery_prefix(max_delivery_count: int) -> str:
    return (
        f"Message could not be consumed after {max_delivery_count} delivery attempts. Last error: "
    )


def _lock_lost(message: ReceivedMessage) -> MessageLockLostError:
    return MessageLockLostError(
        f"lock on message {message.message_id} (sequence {message.sequence_number}) in "
        f"'{message.entity}' is lost: it expired or the message was settled already",
        resource=message.entity,
    )
