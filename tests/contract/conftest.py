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
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from core.adapters.azure.blob_store import AzureBlobStore
from core.adapters.azure.blob_store import shared_client as blob_client
from core.adapters.azure.cosmos_store import CosmosDocumentStore
from core.adapters.azure.cosmos_store import shared_client as cosmos_client
from core.adapters.azure.key_vault import KeyVaultSecretStore
from core.adapters.local.env_secrets import EnvSecretStore
from core.adapters.local.folder_blobs import FolderBlobStore
from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.ports import BlobStore, DocumentStore, SecretStore
from tests import emulators
from tests.fake_key_vault import FakeSecretClient

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
    unsupported: Mapping[str, str] = field(default_factory=dict)
    """Test function name -> why this backend cannot run it (an emulator's limitation)."""


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


COSMOS_TEST_ORDER_BY_PATHS = {"shards": ("rank", "data.name", "v", "n")}
"""The paths the store contract orders by: the test database indexes them."""


@contextmanager
def _cosmos_store(tmp_path: Path, clock: ManualClock) -> Iterator[Backend[DocumentStore]]:
    env = emulators.cosmos().env
    with ExitStack() as cleanup:

        def open_store() -> CosmosDocumentStore:
            store = CosmosDocumentStore(
                lambda: cosmos_client(env["COSMOS_ENDPOINT"], env["COSMOS_KEY"], verify_tls=False),
                env["COSMOS_DATABASE"],
                order_by_paths=COSMOS_TEST_ORDER_BY_PATHS,
            )
            cleanup.callback(store.close)
            return store

        yield Backend(adapter=open_store(), reopen=open_store)


@contextmanager
def _azurite_blobs(tmp_path: Path, clock: ManualClock) -> Iterator[Backend[BlobStore]]:
    connection_string = emulators.azurite().env["BLOB_CONNECTION_STRING"]

    def open_blobs() -> AzureBlobStore:
        return AzureBlobStore(blob_client(connection_string=connection_string))

    yield Backend(adapter=open_blobs(), reopen=open_blobs)


_EMULATOR = (
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
)

STORE_BACKENDS: dict[str, BackendKind[DocumentStore]] = {
    "sqlite": BackendKind(_sqlite_store),
    "cosmos": BackendKind(
        _cosmos_store,
        marks=_EMULATOR,
        unsupported=dict.fromkeys(
            (
                "test_container_default_ttl_expires_documents",
                "test_document_ttl_overrides_the_container_default",
                "test_an_expired_document_can_be_created_again",
                "test_an_expired_document_cannot_be_updated_by_etag",
            ),
            "cosmosdb-server 1.0.1 keeps defaultTtl and ttl as given but never expires a"
            " document (and its clock cannot be moved)",
        ),
    ),
}
BLOB_BACKENDS: dict[str, BackendKind[BlobStore]] = {
    "folder": BackendKind(_folder_blobs),
    "azurite": BackendKind(
        _azurite_blobs,
        marks=_EMULATOR,
        unsupported={
            "test_concurrent_puts_get_distinct_sequences": (
                "AzureBlobStore is not a BlobEventSource (BlobInfo.sequence is always 0):"
                " blob events come from Event Grid in Azure"
            ),
        },
    ),
}


@contextmanager
def _key_vault_secrets(tmp_path: Path, clock: ManualClock) -> Iterator[Backend[SecretStore]]:
    """Key Vault has no emulator: the real adapter on an in-memory SecretClient, with the
    cache off so that two clients see each other's writes at once."""
    vault = FakeSecretClient()

    def open_secrets() -> KeyVaultSecretStore:
        return KeyVaultSecretStore(vault, cache_seconds=0)

    yield Backend(adapter=open_secrets(), reopen=open_secrets)


SECRET_BACKENDS: dict[str, BackendKind[SecretStore]] = {
    "env": BackendKind(_env_secrets),
    "keyvault-fake": BackendKind(_key_vault_secrets),
}


def _params(registry: dict[str, BackendKind[AdapterT]]) -> list[object]:
    return [pytest.param(name, marks=kind.marks, id=name) for name, kind in registry.items()]


def _backend(
    registry: dict[str, BackendKind[AdapterT]], request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Backend[AdapterT]]:
    kind = registry[request.param]
    reason = kind.unsupported.get(request.function.__name__)
    if reason is not None:
        pytest.skip(f"{request.param}: {reason}")
    with kind.factory(tmp_path, ManualClock()) as backend:
        yield backend


@pytest.fixture(scope="session", autouse=True)
def _stop_emulators() -> Iterator[None]:
    """Emulators start on first use (see tests/emulators.py) and stop with the session."""
    yield
    emulators.stop_all()


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
