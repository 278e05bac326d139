"""Secrets from environment variables, with rotated values kept in a private file.

The local stand-in for Key Vault. A secret name (Key Vault rules: 1-127 letters, digits
and hyphens; the app uses `{tenantId}--{integrationId}--{kind}`) is read from the
environment variable `SECRET__` + the name with every `-` replaced by `_`:

    t1--crm--apiKey  ->  SECRET__t1__crm__apiKey

Key Vault names cannot contain `_`, so the mapping never merges two names. Values set at
run time (an OAuth refresh token rotated by a provider) go to the optional JSON file,
written atomically with mode 0600 and locked against other processes, and win over the
environment; deleting a secret that the environment also defines records the deletion in
the file. Without a file, `set` and `delete` change the given environment mapping (this
process only). Values never appear in logs, errors or `repr`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path

from core.errors import PermanentError, TransientError

if sys.platform != "win32":
    import fcntl

ENV_PREFIX = "SECRET__"
FILE_MODE = 0o600

_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")


def env_name(name: str) -> str:
    """The environment variable that holds secret `name`."""
    if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
        raise PermanentError(
            f"invalid secret name {name!r}: use 1-127 letters, digits and hyphens",
            resource=str(name),
        )
    return ENV_PREFIX + name.replace("-", "_")


class EnvSecretStore:
    """`SecretStore` on environment variables plus an optional private JSON file."""

    def __init__(
        self, environ: MutableMapping[str, str] = os.environ, *, file: Path | None = None
    ) -> None:
        self._environ = environ
        self._file = None if file is None else Path(file)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EnvSecretStore(prefix={ENV_PREFIX!r}, file={self._file})"

    def get(self, name: str) -> str | None:
        variable = env_name(name)
        if self._file is not None:
            stored = _read(self._file)
            if name in stored:
                return stored[name]
        return self._environ.get(variable)

    def set(self, name: str, value: str) -> None:
        variable = env_name(name)
        if not isinstance(value, str):
            raise PermanentError(
                f"secret {name!r} must be a string, got {type(value).__name__}", resource=name
            )
        if self._file is None:
            self._environ[variable] = value
            return
        with self._locked(self._file):
            stored = _read(self._file)
            stored[name] = value
            _write(self._file, stored)

    def delete(self, name: str) -> None:
        variable = env_name(name)
        if self._file is None:
            self._environ.pop(variable, None)
            return
        with self._locked(self._file):
            stored = _read(self._file)
            if variable in self._environ:
                stored[name] = None
            else:
                stored.pop(name, None)
            _write(self._file, stored)

    def ping(self) -> None:
        if self._file is not None:
            _read(self._file)

    @contextmanager
    def _locked(self, file: Path) -> Iterator[None]:
        """Serialise read-modify-write of the file between threads and (on POSIX) processes;
        readers need no lock because every write replaces the file atomically."""
        with self._lock:
            if sys.platform == "win32":
                yield
                return
            lock_path = file.with_name(file.name + ".lock")
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            except OSError as exc:
                raise TransientError(
                    f"secrets file lock {lock_path}: {exc.strerror}", resource=str(lock_path)
                ) from exc
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                yield
            finally:
                os.close(descriptor)


def _read(file: Path) -> dict[str, str | None]:
    """The file's entries: a value, or None for a deletion that hides the environment."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise TransientError(f"secrets file {file}: {exc.strerror}", resource=str(file)) from exc
    try:
        stored = json.loads(text)
    except ValueError:
        stored = None
    if not isinstance(stored, dict) or not all(
        isinstance(value, str | None) for value in stored.values()
    ):
        raise PermanentError(
            f"secrets file {file} is not a JSON object of strings",
            resource=str(file),
        )
    return stored


def _write(file: Path, stored: dict[str, str | None]) -> None:
    temporary = file.with_name(f".{file.name}.{uuid.uuid4().hex}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(stored, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, file)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise TransientError(f"secrets file {file}: {exc.strerror}", resource=str(file)) from exc
