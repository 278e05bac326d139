"""Azure adapters against the local stand-ins, for what the contract suites cannot show:
how containers are created, credentials, SAS URLs and unreachable services."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.cosmos import CosmosClient, PartitionKey
from azure.storage.blob import BlobServiceClient

from core.adapters.azure.blob_store import AzureBlobStore
from core.adapters.azure.blob_store import shared_client as blob_client
from core.adapters.azure.cosmos_store import CosmosDocumentStore, shared_client
from core.containers import CONTAINERS, IDEMPOTENCY, SHARDS
from core.errors import AuthError, NotFoundError, PermanentError, TransientError
from core.ports import Filter
from tests import emulators

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def _stop_emulators() -> Iterator[None]:
    yield
    emulators.stop_all()


@pytest.fixture
def cosmos_env() -> dict[str, str]:
    return emulators.cosmos().env


def cosmos_client(env: dict[str, str]) -> CosmosClient:
    return shared_client(env["COSMOS_ENDPOINT"], env["COSMOS_KEY"], verify_tls=False)


def fresh_store(env: dict[str, str], database: str) -> CosmosDocumentStore:
    return CosmosDocumentStore(lambda: cosmos_client(env), database)


# ------------------------------------------------------------------------ Cosmos


def test_every_container_is_created_with_its_key_ttl_and_indexes(
    cosmos_env: dict[str, str],
) -> None:
    name = f"db-{uuid.uuid4().hex[:8]}"
    fresh_store(cosmos_env, name).ping()
    database = cosmos_client(cosmos_env).get_database_client(name)

    created = {properties["id"]: properties for properties in database.list_containers()}

    assert set(created) == {spec.name for spec in CONTAINERS}
    for spec in CONTAINERS:
        properties = created[spec.name]
        assert properties["partitionKey"]["paths"] == [spec.partition_key]
        assert properties["defaultTtl"] == (spec.default_ttl_seconds or -1)
        policy = properties["indexingPolicy"]
        assert {"path": "/rawData/*"} in policy["excludedPaths"]
        pk = spec.partition_key
        assert [
            {"path": pk, "order": "ascending"},
            {"path": "/id", "order": "ascending"},
        ] in policy["compositeIndexes"]
    shards_indexes = created[SHARDS.name]["indexingPolicy"]["compositeIndexes"]
    assert [
        {"path": "/updatedAt", "order": "descending"},
        {"path": "/tenantId", "order": "descending"},
        {"path": "/id", "order": "descending"},
    ] in shards_indexes
    assert created[IDEMPOTENCY.name]["defaultTtl"] == 24 * 3600


def test_ordering_by_a_path_without_an_index_is_refused_naming_it(
    cosmos_env: dict[str, str],
) -> None:
    store = fresh_store(cosmos_env, f"db-{uuid.uuid4().hex[:8]}")
    store.upsert("shards", {"id": "a", "tenantId": "t", "updatedAt": "2024-01-01"})

    with pytest.raises(PermanentError, match=r"'score' in container shards has no composite"):
        store.query("shards", partition_key="t", order_by="score")
    page = store.query("shards", partition_key="t", order_by="updatedAt", descending=True)
    assert [doc["id"] for doc in page.items] == ["a"]
    assert store.count("shards", filters=[Filter("updatedAt", "exists")]) == 1


@pytest.mark.parametrize("descending", [False, True])
def test_paging_one_by_one_crosses_every_json_type_boundary(
    cosmos_env: dict[str, str], descending: bool
) -> None:
    store = CosmosDocumentStore(
        lambda: cosmos_client(cosmos_env),
        f"db-{uuid.uuid4().hex[:8]}",
        order_by_paths={"shards": ("v",)},
    )
    values: dict[str, Any] = {
        "m1": ..., "m2": ..., "n1": None, "n2": None, "f": False, "t": True,
        "x1": 1.5, "x2": 1.5, "x3": 7, "s1": "a", "s2": "b",
    }  # fmt: skip
    store.upsert_many(
        "shards",
        [
            {"id": key, "tenantId": "t", **({} if value is ... else {"v": value})}
            for key, value in values.items()
        ],
    )
    expected = ["m1", "m2", "n1", "n2", "f", "t", "x1", "x2", "x3", "s1", "s2"]

    seen: list[str] = []
    token = None
    while True:
        page = store.query(
            "shards", partition_key="t", order_by="v", descending=descending, limit=1,
            continuation=token,
        )  # fmt: skip
        seen.extend(doc["id"] for doc in page.items)
        token = page.continuation
        if token is None:
            break

    assert seen == (expected[::-1] if descending else expected)


def test_an_existing_container_with_another_partition_key_is_refused(
    cosmos_env: dict[str, str],
) -> None:
    name = f"db-{uuid.uuid4().hex[:8]}"
    database = cosmos_client(cosmos_env).create_database(name)
    database.create_container(SHARDS.name, partition_key=PartitionKey("/wrong"))
    store = CosmosDocumentStore(lambda: cosmos_client(cosmos_env), name, containers=[SHARDS])

    with pytest.raises(PermanentError, match=r"shards exists with partition key \['/wrong'\]"):
        store.ping()


class ExpiredCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ClientAuthenticationError(message="the refresh token has expired")


def test_an_expired_credential_is_an_auth_error(cosmos_env: dict[str, str]) -> None:
    endpoint = cosmos_env["COSMOS_ENDPOINT"]
    store = CosmosDocumentStore(
        lambda: CosmosClient(endpoint, credential=ExpiredCredential(), connection_verify=False),
        "db",
    )

    with pytest.raises(AuthError, match="no credential could be obtained"):
        store.ping()


def test_an_unreachable_cosmos_account_is_transient() -> None:
    endpoint = f"https://127.0.0.1:{emulators.free_port()}"
    store = CosmosDocumentStore(
        lambda: CosmosClient(
            endpoint,
            credential=emulators.COSMOS_EMULATOR_KEY,
            connection_verify=False,
            retry_total=0,
            retry_connect=0,
            enable_endpoint_discovery=False,
        ),
        "db",
    )

    with pytest.raises(TransientError, match="cannot reach the service"):
        store.ping()


# ------------------------------------------------------------------------ Azurite


@pytest.fixture
def azurite_blobs() -> AzureBlobStore:
    return AzureBlobStore(
        blob_client(connection_string=emulators.azurite().env["BLOB_CONNECTION_STRING"])
    )


def test_download_url_is_a_working_read_only_sas(azurite_blobs: AzureBlobStore) -> None:
    container = f"c-{uuid.uuid4().hex[:10]}"
    azurite_blobs.put(container, "media/call.wav", b"RIFF....", content_type="audio/wav")

    url = azurite_blobs.download_url(container, "media/call.wav", expires_in=timedelta(minutes=5))

    assert "sig=" in url
    assert "sp=r" in url
    answer = httpx.get(url)
    assert (answer.status_code, answer.content) == (200, b"RIFF....")
    assert httpx.get(url.split("?", 1)[0]).status_code in (401, 403, 404)
    assert httpx.put(url, content=b"x", headers={"x-ms-blob-type": "BlockBlob"}).status_code == 403
    with pytest.raises(NotFoundError, match=f"{container}/missing"):
        azurite_blobs.download_url(container, "missing", expires_in=timedelta(minutes=5))
    with pytest.raises(PermanentError, match="expires_in"):
        azurite_blobs.download_url(container, "media/call.wav", expires_in=timedelta(days=8))


def test_a_wrong_account_key_is_an_auth_error_naming_the_blob() -> None:
    good = emulators.azurite().env["BLOB_CONNECTION_STRING"]
    bad = good.replace(emulators.AZURITE_KEY, "d3Jvbmcga2V5" * 8)
    blobs = AzureBlobStore(blob_client(connection_string=bad))

    with pytest.raises(AuthError, match=r"c-auth/a\.txt"):
        blobs.put("c-auth", "a.txt", b"x")


def test_an_unreachable_blob_account_is_transient() -> None:
    port = emulators.free_port()
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={emulators.AZURITE_ACCOUNT};"
        f"AccountKey={emulators.AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{emulators.AZURITE_ACCOUNT};"
    )
    blobs = AzureBlobStore(
        BlobServiceClient.from_connection_string(connection_string, retry_total=0)
    )

    with pytest.raises(TransientError, match="cannot reach the service"):
        blobs.ping()
