"""Shared SQLite helpers of the local adapters: multi-row inserts and background checkpoints."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from core.adapters.local.sqlite_store import SqliteDocumentStore, insert_rows
from core.containers import SHARDS


def _table(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "rows.sqlite", isolation_level=None)
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)
    return conn


def test_rows_beyond_one_statement_go_in_together(tmp_path: Path) -> None:
    conn = _table(tmp_path)
    insert_rows(conn, "INSERT INTO t (k, v)", [(n, f"v{n}") for n in range(23)])
    assert conn.execute("SELECT count(*), sum(k) FROM t").fetchone() == (23, sum(range(23)))
    assert not conn.in_transaction


def test_a_bad_row_in_a_later_statement_leaves_nothing_written(tmp_path: Path) -> None:
    conn = _table(tmp_path)
    rows: list[tuple[int, str | None]] = [(n, f"v{n}") for n in range(12)]
    rows.append((12, None))
    with pytest.raises(sqlite3.IntegrityError):
        insert_rows(conn, "INSERT INTO t (k, v)", rows)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert not conn.in_transaction


def test_a_conflict_clause_applies_to_every_row(tmp_path: Path) -> None:
    conn = _table(tmp_path)
    insert_rows(conn, "INSERT INTO t (k, v)", [(1, "old"), (2, "old")])
    insert_rows(
        conn,
        "INSERT INTO t (k, v)",
        [(1, "new"), (2, "new"), (3, "new")],
        " ON CONFLICT (k) DO UPDATE SET v = excluded.v",
    )
    assert conn.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [
        (1, "new"),
        (2, "new"),
        (3, "new"),
    ]


def test_a_returning_tail_with_its_own_parameter_yields_rows_from_every_statement(
    tmp_path: Path,
) -> None:
    conn = _table(tmp_path)
    insert_rows(conn, "INSERT INTO t (k, v)", [(n, "old") for n in range(0, 12, 2)])
    returned = insert_rows(
        conn,
        "INSERT INTO t (k, v)",
        [(n, "new") for n in range(12)],
        " ON CONFLICT (k) DO UPDATE SET v = excluded.v WHERE t.k < ? RETURNING k",
        (4,),
    )
    assert sorted(k for (k,) in returned) == [0, 1, 2, 3, 5, 7, 9, 11]
    assert conn.execute("SELECT count(*) FROM t WHERE v = 'old'").fetchone() == (4,)
    assert not conn.in_transaction


def test_store_writes_reach_the_database_file_without_a_checkpoint_on_commit(
    tmp_path: Path,
) -> None:
    """Commits only append to the WAL; the background checkpointer copies them into the main
    file, so no writer pays for a checkpoint's fsync."""
    store = SqliteDocumentStore(tmp_path / "store.sqlite")
    database = tmp_path / "store.sqlite"
    before = database.stat().st_size
    store.upsert_many(
        SHARDS.name,
        [{"id": f"s{n}", "tenantId": "t1", "text": "x" * 2000} for n in range(50)],
    )
    deadline = time.monotonic() + 5
    while database.stat().st_size <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert database.stat().st_size > before + 50 * 2000
    assert len(store.get_many(SHARDS.name, [("t1", f"s{n}") for n in range(50)])) == 50
