import re
import subprocess
import sys

import httpx
import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e


def _token(data_dir, tenant: str, role: str, ttl: int = 600) -> str:
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
            "--ttl",
            str(ttl),
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture
def host(start_host):
    return start_host()


def test_health_ready_and_metrics(host):
    assert httpx.get(f"{host.url}/api/health").json() == {"status": "ok"}
    ready = httpx.get(f"{host.url}/api/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"store": "ok", "bus": "ok", "blobs": "ok", "secrets": "ok"}
    metrics = httpx.get(f"{host.url}/api/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    invocations = re.search(r'function_invocations_total\{function="ready"\} (\d+)', text)
    assert invocations is not None
    assert int(invocations.group(1)) == 1
    assert 'bus_dead_letter_messages{entity="integration_data_raw"} 0.0' in text
    assert 'bus_active_messages{entity="shard-events/subscriptions/entity-linking"} 0.0' in text


def test_unknown_routes_and_methods(host):
    missing = httpx.get(f"{host.url}/api/no/such/route")
    assert missing.status_code == 404
    assert "no function serves" in missing.json()["error"]
    assert httpx.get(f"{host.url}/elsewhere").status_code == 404
    wrong_method = httpx.post(f"{host.url}/api/health")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET"


def test_v1_routes_require_a_token_and_take_the_tenant_from_it(host):
    url = f"{host.url}/api/v1/whoami"
    unauthenticated = httpx.get(url)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(url, headers={"Authorization": "Bearer garbage"}).status_code == 401
    expired = _token(host.data_dir, "acme", "tenant_admin", ttl=-30)
    response = httpx.get(url, headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.json()["error"]

    token = _token(host.data_dir, "acme", "tenant_admin")
    response = httpx.get(
        url, params={"tenantId": "other"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json()["tenantId"] == "acme"
    assert response.json()["roles"] == ["tenant_admin"]
    assert response.headers["x-correlation-id"]
