"""Mixed mode: the local host with the Cosmos-compatible server as its store and Azurite as
its blob storage (the bus and secrets stay local)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from azure.cosmos import CosmosClient

from core.containers import CONTAINERS
from samples.demo.generate import generate
from tests import emulators
from tests.e2e.crm_support import CrmWorld, check_sync_resync_and_a_stage_change

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


@pytest.fixture(scope="module")
def azure_env() -> Iterator[dict[str, str]]:
    yield {**emulators.cosmos().env, **emulators.azurite().env}
    emulators.stop_all()


def test_ready_with_cosmos_and_azurite(start_host, azure_env: dict[str, str]) -> None:
    host = start_host(env=azure_env)

    answer = httpx.get(f"{host.url}/api/ready", timeout=30)

    assert answer.status_code == 200, answer.text
    checks = answer.json()["checks"]
    assert checks == {"store": "ok", "bus": "ok", "blobs": "ok", "secrets": "ok"}
    client = CosmosClient(
        azure_env["COSMOS_ENDPOINT"], credential=azure_env["COSMOS_KEY"], connection_verify=False
    )
    database = client.get_database_client(azure_env["COSMOS_DATABASE"])
    assert {c["id"] for c in database.list_containers()} == {spec.name for spec in CONTAINERS}


def test_crm_flow_with_cosmos_and_azurite(start_host, azure_env: dict[str, str], tmp_path) -> None:
    """The CRM acceptance flow with STORE=cosmos and BLOBS=azure on the local servers (a
    smaller tenant: the Cosmos-compatible server takes ~3 ms a request)."""
    source = tmp_path / "source"
    generate(source, opportunities=120, accounts=30, contacts=150, leads=20)
    world = CrmWorld(
        tmp_path / "data", source, env=azure_env, tenant=f"mixed-{uuid.uuid4().hex[:8]}"
    )
    world.create_integration()
    start_host(env={**azure_env, "LOCAL_CONCURRENCY": "2"}, data_dir=world.data_dir)
    world.observe()
    check_sync_resync_and_a_stage_change(world)
    world.close()
