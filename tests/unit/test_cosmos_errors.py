"""CosmosDocumentStore's error mapping through the real azure-cosmos SDK, against a tiny
HTTP stand-in that answers item requests with the status codes under test (429 with
`x-ms-retry-after-ms`, 412, 409, 404 with sub-status 1003, 401, 403, 5xx). An expired
credential needs TLS (azure-core sends no token over http): tests/integration covers it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.adapters.azure.cosmos_store import (
    THROTTLE_RETRIES,
    CosmosDocumentStore,
    build,
    shared_client,
)
from core.config import Settings
from core.containers import SHARDS
from core.errors import AuthError, ConflictError, NotFoundError, PermanentError, TransientError
from core.runtime import ConfigurationError
from tests.emulators import COSMOS_EMULATOR_KEY

Reply = tuple[int, dict[str, str], dict[str, Any]]
DOC = {"id": "a", "tenantId": "t", "_etag": '"1"', "_ts": 1, "_rid": "r", "_self": "s"}


@dataclass
class CosmosStub:
    """Answers account, database and container reads; item requests get `replies` in
    order (the last one repeats)."""

    replies: list[Reply] = field(default_factory=list)
    item_requests: list[str] = field(default_factory=list)
    database_reply: Reply | None = None
    url: str = ""

    def reply(self, method: str, path: str, port: int) -> Reply:
        parts = path.strip("/").split("/")
        endpoint = f"http://127.0.0.1:{port}/"
        if path == "/":
            location = [{"name": "local", "databaseAccountEndpoint": endpoint}]
            return (
                200,
                {},
                {
                    "id": "stub",
                    "_rid": "stub",
                    "writableLocations": location,
                    "readableLocations": location,
                    "enableMultipleWriteLocations": False,
                    "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
                },
            )
        if len(parts) == 2:
            return self.database_reply or (200, {}, {"id": parts[1], "_rid": "AA", "_self": "d"})
        if len(parts) == 4:
            return (
                200,
                {},
                {
                    "id": parts[3],
                    "_rid": "AABB",
                    "_self": "c",
                    "partitionKey": {"paths": ["/tenantId"], "kind": "Hash", "version": 2},
                },
            )
        self.item_requests.append(f"{method} {path}")
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


@pytest.fixture
def stub() -> Iterator[CosmosStub]:
    state = CosmosStub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def handle_any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            status, headers, body = state.reply(
                self.command, self.path, self.server.server_address[1]
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = handle_any  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def store_on(stub: CosmosStub) -> CosmosDocumentStore:
    return CosmosDocumentStore(
        lambda: shared_client(stub.url, COSMOS_EMULATOR_KEY), "db", containers=[SHARDS]
    )


def error(status: int, code: str, **headers: str) -> Reply:
    return status, headers, {"code": code, "message": f"{code} from the stub"}


def test_throttling_is_retried_after_the_servers_delay_then_transient(stub: CosmosStub) -> None:
    stub.replies = [error(429, "TooManyRequests", **{"x-ms-retry-after-ms": "40"})]
    store = store_on(stub)
    store.ping()

    started = time.monotonic()
    with pytest.raises(TransientError, match=r"shards/t/a.*throttled") as raised:
        store.get("shards", "t", "a")

    assert len(stub.item_requests) == THROTTLE_RETRIES + 1
    assert time.monotonic() - started >= THROTTLE_RETRIES * 0.04
    assert raised.value.retry_after == pytest.approx(0.04)
    assert raised.value.resource == "shards/t/a"


def test_throttling_that_ends_is_invisible(stub: CosmosStub) -> None:
    throttled = error(429, "TooManyRequests", **{"x-ms-retry-after-ms": "30"})
    stub.replies = [throttled, throttled, (200, {"etag": '"1"'}, DOC)]

    fetched = store_on(stub).get("shards", "t", "a")

    assert fetched == {"id": "a", "tenantId": "t", "_etag": '"1"', "_ts": 1}
    assert len(stub.item_requests) == 3


def test_a_stale_etag_is_a_conflict(stub: CosmosStub) -> None:
    stub.replies = [error(412, "PreconditionFailed")]

    with pytest.raises(ConflictError, match="shards/t/a changed or is gone"):
        store_on(stub).upsert("shards", {"id": "a", "tenantId": "t"}, if_match='"0"')
    assert stub.item_requests[0].startswith("PUT ")


def test_creating_an_existing_id_is_a_conflict(stub: CosmosStub) -> None:
    stub.replies = [error(409, "Conflict")]

    with pytest.raises(ConflictError, match="'a' already exists in shards/t"):
        store_on(stub).create("shards", {"id": "a", "tenantId": "t"})


def test_a_container_deleted_on_the_server_is_not_found_naming_it(stub: CosmosStub) -> None:
    stub.replies = [error(404, "NotFound", **{"x-ms-substatus": "1003"})]
    store = store_on(stub)

    for call in (
        lambda: store.get("shards", "t", "a"),
        lambda: store.upsert("shards", {"id": "a", "tenantId": "t"}),
        lambda: store.delete("shards", "t", "a"),
    ):
        with pytest.raises(NotFoundError, match="container db/shards does not exist"):
            call()


def test_a_missing_item_is_none_or_false(stub: CosmosStub) -> None:
    stub.replies = [error(404, "NotFound")]
    store = store_on(stub)

    assert store.get("shards", "t", "a") is None
    assert store.delete("shards", "t", "a") is False
    with pytest.raises(ConflictError):
        store.delete("shards", "t", "a", if_match='"1"')


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, AuthError), (403, AuthError), (500, TransientError), (400, PermanentError)],
)
def test_status_codes_map_to_port_errors_naming_the_item(
    stub: CosmosStub, status: int, expected: type[Exception]
) -> None:
    stub.replies = [error(status, "Stub")]

    with pytest.raises(expected, match="shards/t/a") as raised:
        store_on(stub).get("shards", "t", "a")
    assert raised.value.resource == "shards/t/a"  # type: ignore[attr-defined]


def test_refused_credentials_at_start_up_are_an_auth_error(stub: CosmosStub) -> None:
    stub.database_reply = error(403, "Forbidden")

    with pytest.raises(AuthError, match="db"):
        store_on(stub).ping()


def test_build_needs_an_endpoint() -> None:
    with pytest.raises(ConfigurationError, match="COSMOS_ENDPOINT"):
        build(Settings(STORE="cosmos"))
