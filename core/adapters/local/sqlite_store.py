"""Embedded document store: one SQLite table per container, with Cosmos DB semantics.

The local runtime needs what the domain relies on in Cosmos (partitions, etags, TTL,
stable paging) without a server, so this adapter reproduces those rules on SQLite:

* Each container is a table `(pk, id, doc, etag, ts, expires_at)` keyed by `(pk, id)`;
  `doc` is the JSON text of the stored document including `_etag` and `_ts`.
* TTL: a document's `ttl` (seconds, `-1` = never) overrides the container's default.
  Unlike a Cosmos container whose TTL is off, a per-document `ttl` is honoured in every
  container here; the Cosmos adapter matches this by creating TTL-less containers with
  `defaultTtl = -1`. Expired documents are invisible at once and purged every
  `purge_interval_seconds` by a write (or by `purge_expired()`).
* Filters are type-strict like Cosmos: `1` never equals `true` or `"1"`; `!=`, `<`, `>`
  compare a value only with values of its own JSON type (numbers with numbers, strings
  with strings, booleans with booleans), so `n != 2` skips a document whose `n` is `"3"`,
  and a missing path never matches. `!= None` is refused (Cosmos would match nothing);
  `== None` matches a JSON `null`. `contains` means "array contains this scalar" when the
  stored value is an array and "case-sensitive substring" when it is a string. `exists`
  (value `True`/`None`, or `False` for "is missing") is Cosmos' `IS_DEFINED`: a JSON
  `null` exists.
* `order_by` sorts missing < null < booleans < numbers < strings < arrays < objects, then
  by partition key and id, so every page boundary is a total order and continuation
  tokens (keyset, bound to the query that produced them) never skip or repeat a document.
* Several threads and processes may share the file: WAL, a busy timeout, one connection
  per thread. Conditional writes are single `UPDATE`/`INSERT ... ON CONFLICT` statements
  whose `WHERE` carries the condition; SQLite takes the write lock before evaluating it
  (a statement-level `BEGIN IMMEDIATE`), so compare-and-set is atomic across processes.
  Multi-statement writes (`upsert_many`, purge) run in an explicit `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import jsontext
from core.containers import CONTAINERS
from core.continuation import decode_token, encode_token, fingerprint
from core.documents import (
    Scalar,
    check_comparison,
    check_limit,
    check_path,
    check_scalar,
    document_keys,
    encode_document,
    exists_wanted,
    in_values,
    refuse_not_equals_none,
)
from core.errors import ConflictError, NotFoundError, PermanentError, TransientError
from core.ports import ContainerSpec, Document, Filter, Page

logger = logging.getLogger(__name__)


_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_EXPIRED = "(expires_at IS NULL OR expires_at > :now)"
_GET_MANY_CHUNK = 400
CHECKPOINT_INTERVAL_SECONDS = 0.25
"""How often, at most, the background checkpointer copies the WAL into the database."""
CHECKPOINTER_IDLE_SECONDS = 5.0
"""A checkpointer with no writes for this long ends its thread; the next write starts one."""
WAL_AUTOCHECKPOINT_PAGES = 10_000
"""SQLite's own checkpoint on commit, kept as a backstop (40 MB of WAL) for when the
background checkpointer cannot keep up or a process only settles messages."""


@dataclass(frozen=True, slots=True)
class _Operand:
    """SQL for a document path's value and its JSON type (`json_type` names)."""

    value_sql: str
    type_sql: str


class _Params:
    """Named parameters, so one bound path can be used by several expressions."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f":{name}"


class SqliteDocumentStore:
    """`DocumentStore` on a SQLite file (see the module docstring for the semantics)."""

    def __init__(
        self,
        path: Path,
        containers: Sequence[ContainerSpec] = CONTAINERS,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_seconds: float = 30.0,
        purge_interval_seconds: float = 300.0,
    ) -> None:
        for spec in containers:
            if not _TABLE_NAME.fullmatch(spec.name):
                raise PermanentError(
                    f"container name {spec.name!r} is not a valid table name", resource=spec.name
                )
        self._path = Path(path)
        self._specs = {spec.name: spec for spec in containers}
        self._clock = clock
        self._purge_interval_seconds = purge_interval_seconds
        self._next_purge = clock()
        self._purge_lock = threading.Lock()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._connections = SqliteConnections(self._path, busy_timeout_seconds)
        self._connection = self._connections.get
        self._create_schema()

    def __repr__(self) -> str:
        return f"SqliteDocumentStore(path={str(self._path)!r})"

    def close(self) -> None:
        """Close every thread's connection; the store reconnects if used again."""
        self._connections.close()

    def _create_schema(self) -> None:
        conn = self._connection()
        with sqlite_errors(str(self._path)), write_transaction(conn):
            for name in self._specs:
                conn.execute(
                    f'CREATE TABLE IF NOT EXISTS "{name}" ('
                    " pk TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,"
                    " etag TEXT NOT NULL, ts INTEGER NOT NULL, expires_at REAL,"
                    " PRIMARY KEY (pk, id))"
                )
                conn.execute(
                    f'CREATE INDEX IF NOT EXISTS "{name}__expires_at" ON "{name}" (expires_at)'
                    " WHERE expires_at IS NOT NULL"
                )

    def _spec(self, container: str) -> ContainerSpec:
        spec = self._specs.get(container)
        if spec is None:
            raise NotFoundError(f"container {container!r} does not exist", resource=container)
        return spec

    # ---------------------------------------------------------------- reads

    def get(self, container: str, partition_key: str, id: str) -> Document | None:
        self._spec(container)
        conn = self._connection()
        with sqlite_errors(container):
            row = conn.execute(
                f'SELECT doc FROM "{container}" WHERE pk = :pk AND id = :id AND {_NOT_EXPIRED}',
                {"pk": partition_key, "id": id, "now": self._clock()},
            ).fetchone()
        return None if row is None else jsontext.loads(row[0])

    def get_many(
        self, container: str, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Document]:
        """One statement per `_GET_MANY_CHUNK` keys, whatever their partitions: a `VALUES`
        list joined to the table probes the primary key once per key (a row-value `IN`
        would scan), and in `idempotency`, where every key is its own partition, a statement
        per partition cost as much as the rest of a webhook commit."""
        self._spec(container)
        conn = self._connection()
        found: dict[tuple[str, str], Document] = {}
        unique = list(dict.fromkeys(keys))
        now = self._clock()
        for start in range(0, len(unique), _GET_MANY_CHUNK):
            chunk = unique[start : start + _GET_MANY_CHUNK]
            values = ", ".join("(?, ?)" for _ in chunk)
            with sqlite_errors(container):
                rows = conn.execute(
                    f"WITH wanted(pk, id) AS (VALUES {values}) "
                    f'SELECT t.pk, t.id, t.doc FROM wanted CROSS JOIN "{container}" AS t '
                    "ON t.pk = wanted.pk AND t.id = wanted.id "
                    "WHERE t.expires_at IS NULL OR t.expires_at > ?",
                    [*itertools.chain.from_iterable(chunk), now],
                ).fetchall()
            for pk, id_, doc in rows:
                found[(pk, id_)] = jsontext.loads(doc)
        return found

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
        spec = self._spec(container)
        check_limit(container, limit)
        params = _Params()
        where = self._where(spec, partition_key, filters, params)
        query_id = fingerprint(container, where, params.values, order_by, descending)
        direction, after = ("DESC", "<") if descending else ("ASC", ">")
        if order_by is None:
            key_columns = ["pk", "id"]
            source = f'(SELECT doc, pk, id FROM "{container}" WHERE {where})'
        else:
            operand = _operand(spec, order_by, params)
            rank = (
                f"CASE {operand.type_sql} WHEN 'null' THEN 1 WHEN 'false' THEN 2"
                " WHEN 'true' THEN 2 WHEN 'integer' THEN 3 WHEN 'real' THEN 3"
                " WHEN 'text' THEN 4 WHEN 'array' THEN 5 WHEN 'object' THEN 6 ELSE 0 END"
            )
            key_columns = ["sort_rank", "sort_value", "pk", "id"]
            source = (
                f"(SELECT doc, pk, id, {rank} AS sort_rank,"
                f" COALESCE({operand.value_sql}, 0) AS sort_value"
                f' FROM "{container}" WHERE {where})'
            )
        keyset = "1"
        if continuation is not None:
            last_key = decode_token(
                continuation,
                query_id,
                len(key_columns),
                container,
                part_ok=lambda part: isinstance(part, str | int | float),
            )
            bound = ", ".join(params.bind(value) for value in last_key)
            keyset = f"({', '.join(key_columns)}) {after} ({bound})"
        order = ", ".join(f"{column} {direction}" for column in key_columns)
        sql = (
            f"SELECT doc, {', '.join(key_columns)} FROM {source}"
            f" WHERE {keyset} ORDER BY {order} LIMIT {limit + 1}"
        )
        conn = self._connection()
        with sqlite_errors(container):
            rows = conn.execute(sql, {**params.values, "now": self._clock()}).fetchall()
        items = [jsontext.loads(row[0]) for row in rows[:limit]]
        token = encode_token(list(rows[limit - 1][1:]), query_id) if len(rows) > limit else None
        return Page(items=items, continuation=token)

    def count(
        self, container: str, *, partition_key: str | None = None, filters: Sequence[Filter] = ()
    ) -> int:
        spec = self._spec(container)
        params = _Params()
        where = self._where(spec, partition_key, filters, params)
        conn = self._connection()
        with sqlite_errors(container):
            row = conn.execute(
                f'SELECT count(*) FROM "{container}" WHERE {where}',
                {**params.values, "now": self._clock()},
            ).fetchone()
        return int(row[0])

    def _where(
        self,
        spec: ContainerSpec,
        partition_key: str | None,
        filters: Sequence[Filter],
        params: _Params,
    ) -> str:
        clauses = [_NOT_EXPIRED]
        if partition_key is not None:
            if not isinstance(partition_key, str):
                raise PermanentError(
                    f"partition_key must be a string, got {type(partition_key).__name__}",
                    resource=spec.name,
                )
            clauses.append(f"pk = {params.bind(partition_key)}")
        clauses.extend(_compile_filter(spec, condition, params) for condition in filters)
        return " AND ".join(clauses)

    # ---------------------------------------------------------------- writes

    def create(self, container: str, doc: Document) -> Document:
        spec = self._spec(container)
        now = self._clock()
        row = self._prepare(spec, doc, now)
        conn = self._connection()
        with sqlite_errors(container):
            cursor = conn.execute(
                _upsert_sql(container) + f' WHERE "{container}".expires_at IS NOT NULL'
                f' AND "{container}".expires_at <= :now',
                {**row.columns, "now": now},
            )
        if cursor.rowcount != 1:
            raise ConflictError(
                f"document {row.id!r} already exists in {container}/{row.pk}",
                resource=f"{container}/{row.pk}/{row.id}",
            )
        self._after_write()
        return row.doc

    def upsert(self, container: str, doc: Document, *, if_match: str | None = None) -> Document:
        spec = self._spec(container)
        now = self._clock()
        row = self._prepare(spec, doc, now)
        conn = self._connection()
        with sqlite_errors(container):
            if if_match is None:
                conn.execute(_upsert_sql(container), row.columns)
            else:
                cursor = conn.execute(
                    f'UPDATE "{container}" SET doc = :doc, etag = :etag, ts = :ts,'
                    " expires_at = :expires_at WHERE pk = :pk AND id = :id"
                    f" AND etag = :if_match AND {_NOT_EXPIRED}",
                    {**row.columns, "if_match": if_match, "now": now},
                )
                if cursor.rowcount != 1:
                    raise ConflictError(
                        f"document {container}/{row.pk}/{row.id} changed or is gone"
                        " (etag mismatch)",
                        resource=f"{container}/{row.pk}/{row.id}",
                    )
        self._after_write()
        return row.doc

    def upsert_many(self, container: str, docs: Sequence[Document]) -> list[Document]:
        spec = self._spec(container)
        now = self._clock()
        rows = [self._prepare(spec, doc, now) for doc in docs]
        if not rows:
            return []
        conn = self._connection()
        with sqlite_errors(container):
            insert_rows(
                conn,
                _insert_head(container),
                [row.values for row in rows],
                _ON_CONFLICT_REPLACE,
            )
        self._after_write()
        return [row.doc for row in rows]

    def delete(
        self, container: str, partition_key: str, id: str, *, if_match: str | None = None
    ) -> bool:
        self._spec(container)
        sql = f'DELETE FROM "{container}" WHERE pk = :pk AND id = :id AND {_NOT_EXPIRED}'
        params: dict[str, Any] = {"pk": partition_key, "id": id, "now": self._clock()}
        if if_match is not None:
            sql += " AND etag = :if_match"
            params["if_match"] = if_match
        conn = self._connection()
        with sqlite_errors(container):
            deleted = conn.execute(sql, params).rowcount == 1
        if if_match is not None and not deleted:
            raise ConflictError(
                f"document {container}/{partition_key}/{id} changed or is gone (etag mismatch)",
                resource=f"{container}/{partition_key}/{id}",
            )
        self._after_write()
        return deleted

    def _prepare(self, spec: ContainerSpec, doc: Document, now: float) -> _Row:
        """Validate, stamp `_etag`/`_ts` and serialise once."""
        doc_id, pk, ttl = document_keys(spec, doc)
        if ttl is None:
            ttl = spec.default_ttl_seconds
        expires_at = None if ttl is None or ttl == -1 else now + ttl
        etag = _ETAGS.next()
        stored = {**doc, "_etag": etag, "_ts": int(now)}
        text = encode_document(spec, doc_id, stored)
        return _Row(
            doc=stored, pk=pk, id=doc_id, values=(pk, doc_id, text, etag, int(now), expires_at)
        )

    # ---------------------------------------------------------------- housekeeping

    def purge_expired(self) -> int:
        """Delete expired documents from every container; returns how many."""
        conn = self._connection()
        removed = 0
        with sqlite_errors(str(self._path)), write_transaction(conn):
            now = self._clock()
            for name in self._specs:
                removed += conn.execute(
                    f'DELETE FROM "{name}" WHERE expires_at IS NOT NULL AND expires_at <= ?',
                    (now,),
                ).rowcount
        return removed

    def _after_write(self) -> None:
        """A background checkpoint soon, and a purge at most once per interval; a failed
        purge never fails the write before it."""
        self._connections.checkpointer.request()
        now = self._clock()
        if now < self._next_purge:
            return
        with self._purge_lock:
            if now < self._next_purge:
                return
            self._next_purge = now + self._purge_interval_seconds
        try:
            removed = self.purge_expired()
        except TransientError as exc:
            logger.warning("expired-document purge postponed: %s", exc)
            return
        if removed:
            logger.debug("purged %d expired documents", removed)

    def ping(self) -> None:
        conn = self._connection()
        with sqlite_errors(str(self._path)):
            conn.execute("SELECT 1").fetchone()


@dataclass(slots=True)  # not frozen: one per document written, and frozen costs 2.5x
class _Row:
    doc: Document
    pk: str
    id: str
    values: tuple[Any, ...]
    """The row's columns in `_COLUMNS` order."""

    @property
    def columns(self) -> dict[str, Any]:
        """The row's columns by name, for statements with named parameters."""
        return dict(zip(_COLUMNS, self.values, strict=True))


_ON_CONFLICT_REPLACE = (
    " ON CONFLICT (pk, id) DO UPDATE SET doc = excluded.doc, etag = excluded.etag,"
    " ts = excluded.ts, expires_at = excluded.expires_at"
)


_COLUMNS = ("pk", "id", "doc", "etag", "ts", "expires_at")
_NAMED_VALUES = " VALUES (" + ", ".join(f":{column}" for column in _COLUMNS) + ")"


def _insert_head(container: str) -> str:
    return f'INSERT INTO "{container}" ({", ".join(_COLUMNS)})'


def _upsert_sql(container: str) -> str:
    """Insert or replace one row from named parameters (`_Row.columns`)."""
    return _insert_head(container) + _NAMED_VALUES + _ON_CONFLICT_REPLACE


class _Etags:
    """Unique etags without a random draw per write (`uuid4` reads the OS entropy source,
    a system call per document): a random prefix per process, drawn again in a forked
    child, and a counter."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._prefix = uuid.uuid4().hex[:20]
        self._numbers = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._numbers):012x}"


_ETAGS = _Etags()


class WalCheckpointer:
    """Copies the WAL back into the database from a background thread.

    With SQLite's automatic checkpoint, every thousandth page committed makes that commit
    copy the WAL and fsync the database while holding the write lock: a sender stalls for
    tens of milliseconds, and so does every sender queued behind it. A PASSIVE checkpoint
    here runs beside the writers instead. Commits stay exactly as durable (WAL, synchronous
    NORMAL); only the copy into the main file moves off their path.
    """

    def __init__(self, path: Path, busy_timeout_seconds: float) -> None:
        self._path = path
        self._busy_timeout_seconds = busy_timeout_seconds
        self._due = threading.Event()
        self._lock = threading.Lock()
        self._running = False

    def request(self) -> None:
        """Called after a write: a checkpoint follows within `CHECKPOINT_INTERVAL_SECONDS`."""
        self._due.set()
        if self._running:
            return
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True).start()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(
                self._path, timeout=self._busy_timeout_seconds, isolation_level=None
            )
        except sqlite3.Error:
            logger.warning("sqlite: cannot open %s to checkpoint it", self._path, exc_info=True)
            with self._lock:
                self._running = False
            return
        try:
            while True:
                if not self._due.wait(CHECKPOINTER_IDLE_SECONDS):
                    with self._lock:
                        if not self._due.is_set():
                            self._running = False
                            return
                self._due.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    logger.warning("sqlite: checkpoint of %s failed", self._path, exc_info=True)
                time.sleep(CHECKPOINT_INTERVAL_SECONDS)
        finally:
            conn.close()


def _use_wal(conn: sqlite3.Connection, deadline: float) -> None:
    """Switching a new file to WAL while other connections open it can fail at once with
    "database is locked" (SQLite does not always call the busy handler for it): retry until
    the busy timeout, as every other statement waits."""
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


class SqliteConnections:
    """One connection per thread and per process (a forked child opens its own), in WAL
    mode with a busy timeout, so threads and processes can share one database file."""

    def __init__(self, path: Path, busy_timeout_seconds: float) -> None:
        self._path = path
        self._busy_timeout_seconds = busy_timeout_seconds
        self._local = threading.local()
        self.checkpointer = WalCheckpointer(path, busy_timeout_seconds)
        """Writers call `request()` after a commit (SQLite's own checkpoint is a backstop)."""
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._generation = 0

    def get(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid() and local.generation == self._generation:
            return conn
        with sqlite_errors(str(self._path)):
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_seconds,
                isolation_level=None,
                check_same_thread=False,
            )
            _use_wal(conn, time.monotonic() + self._busy_timeout_seconds)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        local.conn, local.pid, local.generation = conn, os.getpid(), self._generation
        with self._lock:
            self._opened.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection; later calls to `get` open new ones."""
        with self._lock:
            opened, self._opened = self._opened, []
            self._generation += 1
        for conn in opened:
            conn.close()


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE`: take the write lock first, so a busy database waits (busy timeout)
    instead of failing a read-then-write transaction half-way."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def insert_rows(
    conn: sqlite3.Connection,
    head: str,
    rows: Sequence[Sequence[Any]],
    tail: str = "",
    tail_parameters: Sequence[Any] = (),
) -> list[Any]:
    """`{head} VALUES (...), (...), ...{tail}`: one statement for as many rows as its bound
    parameters allow, and the rows a `RETURNING` tail yields. `executemany` steps once per row
    and the sqlite3 module releases and re-takes the GIL around every step; a writer thread
    beside a busy event loop waited for the GIL at each (a webhook commit of eight rows spent
    four times its CPU time waiting). The rows go in atomically: several statements run in
    one transaction (the caller's, or one opened here). `tail_parameters` bind the tail's
    own placeholders, after the rows'."""
    if not rows:
        return []
    width = len(rows[0])
    values = "(" + ", ".join("?" * width) + ")"
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - len(tail_parameters)
    per_statement = max(1, limit // width)

    def insert(chunk: Sequence[Sequence[Any]]) -> list[Any]:
        return conn.execute(
            f"{head} VALUES {', '.join([values] * len(chunk))}{tail}",
            [*itertools.chain.from_iterable(chunk), *tail_parameters],
        ).fetchall()

    if len(rows) <= per_statement:
        return insert(rows)
    returned: list[Any] = []
    with contextlib.nullcontext() if conn.in_transaction else write_transaction(conn):
        for start in range(0, len(rows), per_statement):
            returned += insert(rows[start : start + per_statement])
    return returned


@contextmanager
def sqlite_errors(resource: str) -> Iterator[None]:
    """SQLite errors become port errors: locking and I/O are transient, the rest permanent."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise TransientError(f"sqlite ({resource}): {exc}", resource=resource) from exc
    except sqlite3.Error as exc:
        raise PermanentError(f"sqlite ({resource}): {exc}", resource=resource) from exc


# -------------------------------------------------------------------- filters


def _operand(spec: ContainerSpec, path: str, params: _Params) -> _Operand:
    check_path(spec, path)
    if path == "id":
        return _Operand("id", "'text'")
    if path == spec.partition_field:
        return _Operand("pk", "'text'")
    bound = params.bind(f"$.{path}")
    return _Operand(f"json_extract(doc, {bound})", f"json_type(doc, {bound})")


def _equals(operand: _Operand, value: Scalar, params: _Params) -> str:
    """Type-strict equality, as Cosmos: a number never equals a boolean or a string."""
    if value is None:
        return f"{operand.type_sql} = 'null'"
    if isinstance(value, bool):
        return f"{operand.type_sql} = '{'true' if value else 'false'}'"
    if isinstance(value, str):
        return f"({operand.type_sql} = 'text' AND {operand.value_sql} = {params.bind(value)})"
    return (
        f"({operand.type_sql} IN ('integer', 'real')"
        f" AND {operand.value_sql} = {params.bind(value)})"
    )


def _not_equals(
    spec: ContainerSpec, condition: Filter, operand: _Operand, value: Scalar, params: _Params
) -> str:
    """Same JSON type, other value: Cosmos' `!=`, where a comparison across types is
    undefined and matches nothing."""
    if value is None:
        refuse_not_equals_none(spec, condition)
    if isinstance(value, bool):
        return f"{operand.type_sql} = '{'false' if value else 'true'}'"
    if isinstance(value, str):
        return f"({operand.type_sql} = 'text' AND {operand.value_sql} != {params.bind(value)})"
    return (
        f"({operand.type_sql} IN ('integer', 'real')"
        f" AND {operand.value_sql} != {params.bind(value)})"
    )


def _in(spec: ContainerSpec, condition: Filter, operand: _Operand, params: _Params) -> str:
    scalars = in_values(spec, condition)
    strings = sorted({value for value in scalars if isinstance(value, str)})
    numbers = sorted(
        {
            value
            for value in scalars
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
    )
    others = sorted(
        {value for value in scalars if value is None or isinstance(value, bool)}, key=repr
    )
    alternatives = [_equals(operand, value, params) for value in others]
    if strings:
        bound = ", ".join(params.bind(value) for value in strings)
        alternatives.append(f"({operand.type_sql} = 'text' AND {operand.value_sql} IN ({bound}))")
    if numbers:
        bound = ", ".join(params.bind(value) for value in numbers)
        alternatives.append(
            f"({operand.type_sql} IN ('integer', 'real') AND {operand.value_sql} IN ({bound}))"
        )
    return f"({' OR '.join(alternatives)})" if alternatives else "0"


def _compile_filter(spec: ContainerSpec, condition: Filter, params: _Params) -> str:
    operand = _operand(spec, condition.path, params)
    op, value = condition.op, condition.value
    if op == "exists":
        null_test = "IS NOT NULL" if exists_wanted(spec, condition) else "IS NULL"
        return f"{operand.type_sql} {null_test}"
    if op == "in":
        return _in(spec, condition, operand, params)
    check_comparison(spec, condition)
    scalar = check_scalar(spec, condition, value)
    if op == "==":
        return _equals(operand, scalar, params)
    if op == "!=":
        return _not_equals(spec, condition, operand, scalar, params)
    if op == "contains":
        element = _Operand("element.value", "element.type")
        array_path = params.bind(f"$.{condition.path}")
        branches = (
            f" WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(doc, {array_path}) AS element"
            f" WHERE {_equals(element, scalar, params)})"
        )
        if isinstance(scalar, str):
            branches += f" WHEN 'text' THEN instr({operand.value_sql}, {params.bind(scalar)}) > 0"
        return f"(CASE {operand.type_sql}{branches} ELSE 0 END)"
    if isinstance(scalar, str):
        guard = f"{operand.type_sql} = 'text'"
    elif isinstance(scalar, int | float) and not isinstance(scalar, bool):
        guard = f"{operand.type_sql} IN ('integer', 'real')"
    else:
        raise PermanentError(
            f"filter {condition.path!r} {op!r} in container {spec.name} compares only numbers"
            f" or strings, got {scalar!r}",
            resource=spec.name,
        )
    return f"({guard} AND {operand.value_sql} {op} {params.bind(scalar)})"


# -------------------------------------------------------------------- continuation tokens
