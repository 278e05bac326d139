"""Contract fixtures: every adapter of a port runs the same tests.

Each port has a registry of backends (name -> `BackendKind`). A backend's factory is a
context manager that yields a `Backend` (the adapter under test, a manual clock when the
adapter accepts one, and `reopen` for a second client on the same data), or calls
`pytest.skip` when it cannot run here.

Adding Cosmos, Azurite or Key Vault later is one factory and one registry line: read the
endpoint from the environment (or start the emulator), `pytest.skip` when it is absent or
unreachable, and register it with `marks=(pytest.mark.integration,)`. Tests keep their
data apart with `run_id` (fresh tenant ids, container and secret names per test), so a
shared server needs no cleanup between tests; tests that must move time forward ask for
the `clock` fixture and are skipped for a backend that runs on real time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from core.adapters.local.env_secrets import EnvSecretStore
from core.adapters.local.folder_blobs import FolderBlobStore
from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.ports import BlobStore, DocumentStore, SecretStore

AdapterT = TypeVar("AdapterT")

CLOCK_START = 1_700_000_000.0


class ManualClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, start: float = CLOCK_START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend(Generic[AdapterT]):
    adapter: AdapterT
    reopen: Callable[[], AdapterT]
    """A new client on the same data, as another process or a restart would open it."""
    clock: ManualClock | None = None
    """The adapter's time source when tests may move it; None for a real-time server."""


BackendFactory = Callable[[Path, ManualClock], AbstractContextManager[Backend[AdapterT]]]


@dataclass(frozen=True)
class BackendKind(Generic[AdapterT]):
    factory: BackendFactory[AdapterT]
    marks: tuple[pytest.MarkDecorator, ...] = ()


@contextmanager
def _sqlite_store(tmp_path: Path, clock: ManualClock) -> Iterator[Backend[DocumentStore]]:
    path = tmp_path / "store.sqlite"
    with ExitStack() as cleanup:

        def open_store() -> SqliteDocumentStore:
            store = SqliteDocumentStore(path, clock=clock)
            cleanup.callback(store.close)
            return store

        yield Backend(adapter=open_store(), reopen=open_store, clock=clock)


@contextmanager
def _folder_blobs(tmp_path: Path, clock: ManualClock) -> Iterator[Backend[BlobStore]]:
    root = tmp_path / "blobs"
    with ExitStack() as cleanup:

        def open_blobs() -> FolderBlobStore:
            blobs = FolderBlobStore(root, clock=clock)
            cleanup.callback(blobs.close)
            return blobs

        yield Backend(adapter=open_blobs(), reopen=open_blobs, clock=clock)


@contextmanager
def _env_secrets(tmp_path: Path, clock: ManualClock) -> Iterator[Backend[SecretStore]]:
    environ: dict[str, str] = {}
    file = tmp_path / "secrets.json"

    def open_secrets() -> EnvSecretStore:
        return EnvSecretStore(environ, file=file)

    yield Backend(adapter=open_secrets(), reopen=open_secrets)


STORE_BACKENDS: dict[str, BackendKind[DocumentStore]] = {"sqlite": BackendKind(_sqlite_store)}
BLOB_BACKENDS: dict[str, BackendKind[BlobStore]] = {"folder": BackendKind(_folder_blobs)}
SECRET_BACKENDS: dict[str, BackendKind[SecretStore]] = {"env": BackendKind(_env_secrets)}


def _params(registry: dict[str, BackendKind[AdapterT]]) -> list[object]:
    return [pytest.param(name, marks=kind.marks, id=name) for name, kind in registry.items()]


def _backend(
    registry: dict[str, BackendKind[AdapterT]], request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Backend[AdapterT]]:
    with registry[request.param].factory(tmp_path, ManualClock()) as backend:
        yield backend


@pytest.fixture(params=_params(STORE_BACKENDS))
def store_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Backend[DocumentStore]]:
    yield from _backend(STORE_BACKENDS, request, tmp_path)


@pytest.fixture(params=_params(BLOB_BACKENDS))
def blob_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend[BlobStore]]:
    yield from _backend(BLOB_BACKENDS, request, tmp_path)


@pytest.fixture(params=_params(SECRET_BACKENDS))
def secret_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Backend[SecretStore]]:
    yield from _backend(SECRET_BACKENDS, request, tmp_path)


@pytest.fixture
def store(store_backend: Backend[DocumentStore]) -> DocumentStore:
    return store_backend.adapter


@pytest.fixture
def blobs(blob_backend: Backend[BlobStore]) -> BlobStore:
    return blob_backend.adapter


@pytest.fixture
def secrets(secret_backend: Backend[SecretStore]) -> SecretStore:
    return secret_backend.adapter


@pytest.fixture
def clock(store_backend: Backend[DocumentStore]) -> ManualClock:
    if store_backend.clock is None:
        pytest.skip("this store runs on real time; the test needs to move the clock")
    return store_backend.clock


@pytest.fixture
def run_id() -> str:
    """Unique per test: a prefix for tenant ids, blob containers and secret names."""
    return uuid.uuid4().hex[:12]
