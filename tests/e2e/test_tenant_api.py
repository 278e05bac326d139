"""The tenant API through the local host: integrations, mappings, syncs and shards, with
the tenant taken from the token."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import containers
from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.models.shards import Shard
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

SYNC_STATUSES = {"pending", "processing", "completed", "partial", "failed"}


def _token(data_dir: Path, tenant: str, role: str = "tenant_admin") -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.local",
            "token",
            "--tenant",
            tenant,
            "--role",
            role,
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


class Client:
    """One tenant's view of the API."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base = f"{base_url}/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", params=params, headers=self.headers, timeout=30)

    def send(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None):
        content = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        headers = {**self.headers, "Content-Type": "application/json"}
        return httpx.request(
            method, f"{self.base}{path}", content=content, headers=headers, timeout=30
        )


def _errors(response: httpx.Response) -> dict[str, str]:
    return {error["field"]: error["message"] for error in response.json().get("errors", [])}


@pytest.fixture
def crm_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "crm"
    directory.mkdir()
    records = [
        {"Id": "006A", "Name": "Big deal", "StageName": "Prospecting", "Amount": 1000},
        {"Id": "006B", "Name": "Small deal", "StageName": "Closed Won", "Amount": 10},
    ]
    (directory / "Opportunity.ndjson").write_text("\n".join(json.dumps(r) for r in records))
    return directory


def test_integrations_mappings_and_syncs(start_host, crm_dir: Path) -> None:
    host = start_host()
    acme = Client(host.url, _token(host.data_dir, "acme"))
    globex = Client(host.url, _token(host.data_dir, "globex"))
    create_body = {"provider": "files", "name": "Demo CRM", "config": {"path": str(crm_dir)}}

    assert httpx.get(f"{acme.base}/integrations").status_code == 401
    assert httpx.post(f"{acme.base}/integrations", json=create_body).status_code == 401

    # create, list, get
    created = acme.send("POST", "/integrations", create_body)
    assert created.status_code == 201, created.text
    integration = created.json()
    integration_id = integration["id"]
    assert created.headers["location"] == f"/api/v1/integrations/{integration_id}"
    assert integration["provider"] == "files"
    assert integration["name"] == "Demo CRM"
    assert integration["config"] == {"path": str(crm_dir)}
    assert integration["configVersion"] == 1
    assert integration["enabled"] is True
    assert integration["status"] == "pending"
    assert integration["createdAt"] == integration["updatedAt"]
    assert integration["createdAt"].startswith("20")
    assert integration["syncConfig"]["syncMode"] == "incremental"
    assert "entityMappings" not in integration["syncConfig"]
    assert {m["entityType"] for m in integration["entityMappings"]} >= {"Opportunity", "Account"}
    assert {t["name"] for t in integration["customTransforms"]} == {
        "salesforceStageToStatus",
        "websiteToDomain",
    }
    assert "connection" not in integration
    assert "secretRefs" not in json.dumps(integration)

    listed = acme.get("/integrations")
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [integration_id]
    assert listed.json()["continuationToken"] is None
    assert acme.get(f"/integrations/{integration_id}").json() == integration

    # another tenant sees nothing of it
    assert globex.get("/integrations").json()["items"] == []
    assert globex.get(f"/integrations/{integration_id}").status_code == 404
    assert globex.get(f"/integrations/{integration_id}/sync-config").status_code == 404
    assert globex.get(f"/integrations/{integration_id}/field-mappings/Opportunity").status_code == (
        404
    )
    assert globex.send("POST", f"/integrations/{integration_id}/sync").status_code == 404

    # transform functions (a literal segment, not an integration id)
    transforms = acme.get("/integrations/transform-functions")
    assert transforms.status_code == 200
    by_name = {item["name"]: item for item in transforms.json()["items"]}
    assert {"dateToISO", "stringToNumber", "roundToDecimals", "trim"} <= set(by_name)
    assert all(item["description"] for item in by_name.values())
    assert "decimals" in by_name["roundToDecimals"]["optionsSchema"]["properties"]
    own = acme.get("/integrations/transform-functions", integrationId=integration_id).json()
    assert f"{integration_id}:salesforceStageToStatus" in {item["name"] for item in own["items"]}

    # field mappings: bad ones are refused at PUT time, naming the field
    mappings_path = f"/integrations/{integration_id}/field-mappings/Opportunity"
    current = acme.get(mappings_path)
    assert current.status_code == 200
    assert current.json()["entityType"] == "Opportunity"
    assert current.json()["configVersion"] == 1
    assert acme.get(f"/integrations/{integration_id}/field-mappings/Widget").status_code == 404

    unknown_transform = acme.send(
        "PUT",
        mappings_path,
        {
            "fieldMappings": [
                {"source": "Name", "target": "name"},
                {"source": "Amount", "target": "amount", "transform": "toMoney"},
            ]
        },
    )
    assert unknown_transform.status_code == 422
    assert "unknown transform 'toMoney'" in _errors(unknown_transform)["fieldMappings[1].transform"]

    unknown_target = acme.send(
        "PUT",
        mappings_path,
        {
            "fieldMappings": [
                {"source": "Name", "target": "name"},
                {"source": "X", "target": "amout"},
            ]
        },
    )
    assert unknown_target.status_code == 422
    assert "not a field of Opportunity" in _errors(unknown_target)["fieldMappings[1].target"]
    assert acme.get(f"/integrations/{integration_id}").json()["configVersion"] == 1

    good_mappings = {
        "fieldMappings": [
            {"source": "Name", "target": "name", "required": True},
            {"source": "Amount", "target": "amount", "transform": "stringToNumber"},
            {"source": "StageName", "target": "stage", "transform": "trim"},
            {"source": "Region__c", "target": "region"},
        ],
        "customFields": ["region"],
    }
    saved = acme.send("PUT", mappings_path, good_mappings)
    assert saved.status_code == 200, saved.text
    assert saved.json()["configVersion"] == 2
    assert saved.json()["customFields"] == ["region"]
    assert [m["target"] for m in saved.json()["fieldMappings"]] == [
        "name",
        "amount",
        "stage",
        "region",
    ]
    assert acme.get(f"/integrations/{integration_id}").json()["configVersion"] == 2
    assert globex.send("PUT", mappings_path, good_mappings).status_code == 404

    # what a GET returns can be PUT back; a stale configVersion is a conflict
    read_back = acme.get(mappings_path).json()
    rewritten = acme.send("PUT", mappings_path, read_back)
    assert rewritten.status_code == 200, rewritten.text
    assert rewritten.json() == read_back | {"configVersion": 3}
    stale = acme.send("PUT", mappings_path, read_back)
    assert stale.status_code == 409
    assert "configVersion 3, not 2" in stale.json()["error"]

    # test a mapping on a sample: result and per-field errors, nothing stored
    trial = acme.send(
        "POST",
        f"{mappings_path}/test",
        {"sample": {"Name": "Deal", "Amount": "a lot", "StageName": " Won ", "Region__c": "EU"}},
    )
    assert trial.status_code == 200, trial.text
    result = trial.json()
    assert result["data"] == {"name": "Deal", "stage": "Won", "region": "EU"}
    assert [(e["field"], e["source"], e["value"]) for e in result["errors"]] == [
        ("amount", "Amount", "a lot")
    ]
    assert result["validation"]["mode"] == "strict"
    assert result["validation"]["accepted"] is False
    assert result["validationByMode"]["lenient"]["accepted"] is True
    assert acme.get(f"/integrations/{integration_id}").json()["configVersion"] == 3
    bad_trial = acme.send("POST", f"{mappings_path}/test", {"sample": []})
    assert bad_trial.status_code == 422
    assert "sample" in _errors(bad_trial)

    # sync config
    sync_config_path = f"/integrations/{integration_id}/sync-config"
    sync_config = acme.get(sync_config_path).json()
    assert sync_config["syncMode"] == "incremental"
    assert sync_config["configVersion"] == 3
    sync_config |= {"syncMode": "full", "frequency": {"type": "interval", "intervalMinutes": 60}}
    replaced = acme.send("PUT", sync_config_path, sync_config)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["configVersion"] == 4
    assert replaced.json()["entityMappings"] == sync_config["entityMappings"]
    assert replaced.json()["frequency"]["intervalMinutes"] == 60
    assert "Opportunity" in {m["entityType"] for m in replaced.json()["entityMappings"]}
    too_often = acme.send(
        "PUT", sync_config_path, {"frequency": {"type": "interval", "intervalMinutes": 1}}
    )
    assert too_often.status_code == 422
    assert "frequency.intervalMinutes" in _errors(too_often)

    # a manual sync: 202 with the execution id, then visible in the history
    bad_sync = acme.send("POST", f"/integrations/{integration_id}/sync", {"entityTypes": ["Deal"]})
    assert bad_sync.status_code == 422
    assert "entityTypes[0]" in _errors(bad_sync)
    started = acme.send("POST", f"/integrations/{integration_id}/sync", {"mode": "full"})
    assert started.status_code == 202, started.text
    execution_id = started.json()["executionId"]
    assert started.json()["status"] == "pending"
    assert started.json()["mode"] == "full"
    assert started.headers["location"].endswith(f"/sync-history/{execution_id}")

    history = acme.get(f"/integrations/{integration_id}/sync-history")
    assert history.status_code == 200
    [item] = [item for item in history.json()["items"] if item["id"] == execution_id]
    assert item["status"] in SYNC_STATUSES
    assert item["trigger"] == "manual"
    one = acme.get(f"/integrations/{integration_id}/sync-history/{execution_id}")
    assert one.status_code == 200
    assert one.json()["id"] == execution_id
    assert one.json()["integrationId"] == integration_id
    assert globex.get(
        f"/integrations/{integration_id}/sync-history/{execution_id}"
    ).status_code == (404)
    assert acme.get(f"/integrations/{integration_id}/sync-history/nope").status_code == 404
    assert acme.get(f"/integrations/{integration_id}/sync-history", limit="0").status_code == 422


def test_bad_bodies_and_secrets(start_host, crm_dir: Path) -> None:
    host = start_host()
    acme = Client(host.url, _token(host.data_dir, "acme"))

    not_json = acme.send("POST", "/integrations", raw=b"{not json")
    assert not_json.status_code == 400
    assert "not valid JSON" in not_json.json()["error"]
    assert acme.send("POST", "/integrations", raw=b"").status_code == 400

    with_secret = acme.send(
        "POST",
        "/integrations",
        {"provider": "files", "name": "x", "config": {"path": str(crm_dir), "apiKey": "sk-9"}},
    )
    assert with_secret.status_code == 422
    assert "secret store" in _errors(with_secret)["config.apiKey"]
    assert "sk-9" not in with_secret.text

    unknown_provider = acme.send("POST", "/integrations", {"provider": "nope", "name": "x"})
    assert unknown_provider.status_code == 422
    assert "unknown provider" in _errors(unknown_provider)["provider"]
    assert acme.get("/integrations").json()["items"] == []
    assert acme.get("/integrations", limit="many").status_code == 422


def _shard(tenant: str, shard_id: str, shard_type: str, created: datetime) -> dict[str, Any]:
    data = {"name": f"{shard_type} {shard_id}"}
    return Shard(
        id=shard_id,
        tenant_id=tenant,
        shard_type_id=shard_type,
        shard_type_name=shard_type,
        schema_version="1.0",
        structured_data=data,
        created_at=created,
        updated_at=created,
    ).to_document()


def test_shards_paging_and_tenant_isolation(start_host) -> None:
    host = start_host()
    store = SqliteDocumentStore(host.data_dir / "store.sqlite")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    opportunities = [f"opp-{n}" for n in range(5)]
    documents = [
        _shard("acme", shard_id, "Opportunity", start + timedelta(minutes=n))
        for n, shard_id in enumerate(opportunities)
    ]
    documents += [_shard("acme", f"acc-{n}", "Account", start) for n in range(2)]
    documents.append(_shard("globex", "globex-opp", "Opportunity", start))
    store.upsert_many(containers.SHARDS.name, documents)

    acme = Client(host.url, _token(host.data_dir, "acme"))
    globex = Client(host.url, _token(host.data_dir, "globex"))
    assert httpx.get(f"{acme.base}/shards").status_code == 401

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"shardTypeName": "Opportunity", "limit": "2"}
        if token:
            params["continuationToken"] = token
        page = acme.get("/shards", **params)
        assert page.status_code == 200, page.text
        pages += 1
        seen += [item["id"] for item in page.json()["items"]]
        token = page.json()["continuationToken"]
        if token is None:
            break
    assert pages == 3
    assert seen == opportunities

    everything = acme.get("/shards").json()
    assert len(everything["items"]) == 7
    assert everything["continuationToken"] is None
    assert all(not key.startswith("_") for item in everything["items"] for key in item)

    shard = acme.get("/shards/opp-3")
    assert shard.status_code == 200
    assert shard.json()["structuredData"] == {"name": "Opportunity opp-3"}
    assert shard.json()["tenantId"] == "acme"
    assert globex.get("/shards/opp-3").status_code == 404
    assert acme.get("/shards/globex-opp").status_code == 404
    assert [item["id"] for item in globex.get("/shards").json()["items"]] == ["globex-opp"]

    for bad_limit in ("0", "1001", "ten", "-1"):
        response = acme.get("/shards", limit=bad_limit)
        assert response.status_code == 422, bad_limit
        assert "limit" in _errors(response)
    bad_token = acme.get("/shards", continuationToken="bm90LWEtdG9rZW4")
    assert bad_token.status_code == 422
    assert "continuationToken" in _errors(bad_token)
    unknown_type = acme.get("/shards", shardTypeName="Widget")
    assert unknown_type.status_code == 422
    assert "shardTypeName" in _errors(unknown_type)
