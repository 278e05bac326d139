"""Blob storage in a folder: the local stand-in for Azure Blob Storage.

Blobs are plain files under `root/<container>/<name>` (a name's `/` are directories), so a
developer can open them; `root/_index.sqlite` holds what a file system cannot: content
type, metadata, etag, creation time and a `sequence` that grows with every put. The local
host's blob trigger polls `created_since(sequence)`, which survives restarts because the
index does.

Rules follow Azure where a local shortcut would hide a bug: container names are 3-63
lowercase letters, digits and single hyphens; metadata keys are identifiers and values
ASCII; a put replaces the whole blob and gets a new etag. Unlike Azure, a name cannot be
both a blob and a "directory" of other blobs (`a` and `a/b`), since both are files here;
such a put is refused. `download_url` returns a `file://` URL that works only on this
machine and does not expire.
"""

from __future__ import annotations

import builtins
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.adapters.local.sqlite_store import SqliteConnections, sqlite_errors, write_transaction
from core.blob_names import check_container, check_metadata, check_name
from core.errors import NotFoundError, PermanentError, TransientError
from core.ports import BlobInfo

INDEX_FILE = "_index.sqlite"
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_COLUMNS = "container, name, size, content_type, metadata, etag, created_at, sequence"


class FolderBlobStore:
    """`BlobStore` and `BlobEventSource` on a local folder (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_seconds: float = 30.0,
    ) -> None:
        self._root = Path(root)
        self._clock = clock
        self._root.mkdir(parents=True, exist_ok=True)
        self._connections = SqliteConnections(self._root / INDEX_FILE, busy_timeout_seconds)
        self._connection = self._connections.get
        conn = self._connection()
        with sqlite_errors(INDEX_FILE), write_transaction(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS blobs ("
                " container TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,"
                " content_type TEXT, metadata TEXT NOT NULL, etag TEXT NOT NULL,"
                " created_at REAL NOT NULL, sequence INTEGER NOT NULL UNIQUE,"
                " PRIMARY KEY (container, name)) WITHOUT ROWID"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS sequence_counter (value INTEGER NOT NULL)")
            conn.execute(
                "INSERT INTO sequence_counter (value)"
                " SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM sequence_counter)"
            )

    def __repr__(self) -> str:
        return f"FolderBlobStore(root={str(self._root)!r})"

    def close(self) -> None:
        """Close every thread's index connection; the store reconnects if used again."""
        self._connections.close()

    def _path(self, container: str, name: str) -> Path:
        check_name(container, name)
        return self._root / container / name

    # ---------------------------------------------------------------- writes

    def put(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> BlobInfo:
        path = self._path(container, name)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise PermanentError(
                f"blob {container}/{name} data must be bytes, got {type(data).__name__}",
                resource=f"{container}/{name}",
            )
        clean_metadata = check_metadata(f"{container}/{name}", metadata or {})
        temporary = self._write_temporary(container, name, path, data)
        etag = uuid.uuid4().hex
        created_at = self._clock()
        conn = self._connection()
        try:
            with sqlite_errors(f"{container}/{name}"), write_transaction(conn):
                # The rename happens under the index's write lock, so the file and its index
                # row always come from the same put even when processes race on one name.
                _replace(temporary, path, container, name)
                sequence = conn.execute(
                    "UPDATE sequence_counter SET value = value + 1 RETURNING value"
                ).fetchone()[0]
                conn.execute(
                    f"INSERT OR REPLACE INTO blobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        container,
                        name,
                        len(data),
                        content_type or DEFAULT_CONTENT_TYPE,
                        json.dumps(clean_metadata, sort_keys=True),
                        etag,
                        created_at,
                        sequence,
                    ),
                )
        finally:
            temporary.unlink(missing_ok=True)
        self._connections.checkpointer.request()
        return BlobInfo(
            container=container,
            name=name,
            size=len(data),
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            metadata=clean_metadata,
            etag=etag,
            created_at=datetime.fromtimestamp(created_at, UTC),
            sequence=sequence,
        )

    def _write_temporary(self, container: str, name: str, path: Path, data: bytes) -> Path:
        """Write the bytes next to their destination so the final rename is atomic."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise PermanentError(
                f"blob {container}/{name} cannot be stored: a parent of it is already a blob",
                resource=f"{container}/{name}",
            ) from exc
        except OSError as exc:
            raise TransientError(
                f"blob {container}/{name}: {exc.strerror}", resource=f"{container}/{name}"
            ) from exc
        temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temporary, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise TransientError(
                f"blob {container}/{name}: {exc.strerror}", resource=f"{container}/{name}"
            ) from exc
        return temporary

    def delete(self, container: str, name: str) -> bool:
        try:
            return self._delete(container, name)
        finally:
            self._connections.checkpointer.request()

    def _delete(self, container: str, name: str) -> bool:
        path = self._path(container, name)
        conn = self._connection()
        with sqlite_errors(f"{container}/{name}"), write_transaction(conn):
            indexed = (
                conn.execute(
                    "DELETE FROM blobs WHERE container = ? AND name = ?", (container, name)
                ).rowcount
                == 1
            )
            try:
                path.unlink()
            except (FileNotFoundError, IsADirectoryError):
                return indexed
            except OSError as exc:
                raise TransientError(
                    f"blob {container}/{name}: {exc.strerror}", resource=f"{container}/{name}"
                ) from exc
        return True

    # ---------------------------------------------------------------- reads

    def get(self, container: str, name: str) -> bytes:
        path = self._path(container, name)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFoundError(
                f"blob {container}/{name} does not exist", resource=f"{container}/{name}"
            ) from exc
        except OSError as exc:
            raise TransientError(
                f"blob {container}/{name}: {exc.strerror}", resource=f"{container}/{name}"
            ) from exc

    def info(self, container: str, name: str) -> BlobInfo | None:
        self._path(container, name)
        conn = self._connection()
        with sqlite_errors(f"{container}/{name}"):
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM blobs WHERE container = ? AND name = ?",
                (container, name),
            ).fetchone()
        return None if row is None else _info(row)

    def list(self, container: str, *, prefix: str = "") -> Iterator[BlobInfo]:
        """Blobs whose name starts with `prefix`, in name order (as Azure lists them)."""
        check_container(container)
        conn = self._connection()
        with sqlite_errors(container):
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM blobs"
                " WHERE container = ? AND substr(name, 1, ?) = ? ORDER BY name",
                (container, len(prefix), prefix),
            ).fetchall()
        return iter([_info(row) for row in rows])

    def created_since(self, sequence: int, *, limit: int = 100) -> builtins.list[BlobInfo]:
        """Blobs put after `sequence`, oldest first; an overwritten blob shows up again."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise PermanentError(f"limit must be a positive integer, got {limit!r}")
        conn = self._connection()
        with sqlite_errors(INDEX_FILE):
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM blobs WHERE sequence > ? ORDER BY sequence LIMIT ?",
                (sequence, limit),
            ).fetchall()
        return [_info(row) for row in rows]

    def download_url(self, container: str, name: str, *, expires_in: timedelta) -> str:
        """A `file://` URL: readable on this machine only, and it never expires."""
        path = self._path(container, name)
        if expires_in <= timedelta(0):
            raise PermanentError(
                f"expires_in must be positive, got {expires_in}", resource=f"{container}/{name}"
            )
        if not path.is_file():
            raise NotFoundError(
                f"blob {container}/{name} does not exist", resource=f"{container}/{name}"
            )
        return path.resolve().as_uri()

    def ping(self) -> None:
        if not os.access(self._root, os.W_OK):
            raise TransientError(f"blob folder {self._root} is not writable", resource="blobs")
        conn = self._connection()
        with sqlite_errors(INDEX_FILE):
            conn.execute("SELECT 1").fetchone()


def _replace(temporary: Path, path: Path, container: str, name: str) -> None:
    try:
        os.replace(temporary, path)
    except (IsADirectoryError, NotADirectoryError) as exc:
        raise PermanentError(
            f"blob {container}/{name} cannot be stored: other blobs live under that name",
            resource=f"{container}/{name}",
        ) from exc
    except OSError as exc:
        raise TransientError(
            f"blob {container}/{name}: {exc.strerror}", resource=f"{container}/{name}"
        ) from exc


def _info(row: tuple[str, str, int, str | None, str, str, float, int]) -> BlobInfo:
    container, name, size, content_type, metadata, etag, created_at, sequence = row
    return BlobInfo(
        container=container,
        name=name,
        size=size,
        content_type=content_type,
        metadata=json.loads(metadata),
        etag=etag,
        created_at=datetime.fromtimestamp(created_at, UTC),
        sequence=sequence,
    )
