"""Webhooks through the local host: registration over the tenant API, signed deliveries to
the anonymous endpoint, handshakes, refusals that say nothing, and the queue behind it."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.adapters.local.sqlite_bus import SqliteBus
from core.api.auth import LocalTokenVerifier, local_signing_key
from core.config import Settings
from core.messaging import topology
from core.models.events import decode_envelope
from core.webhooks.events import WEBHOOK_RECEIVED

pytestmark = pytest.mark.e2e

TENANT = "acme"


def _api(host_url: str, data_dir: Path) -> httpx.Client:
    key = local_signing_key(Settings(DATA_DIR=str(data_dir)))
    token = LocalTokenVerifier(key).issue(
        tenant_id=TENANT, roles=["tenant_admin"], subject="e2e-admin"
    )
    return httpx.Client(
        base_url=f"{host_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _slack_headers(
    signing_secret: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(
        signing_secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256
    ).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }


def _communications(data_dir: Path) -> list[Any]:
    bus = SqliteBus(data_dir / "bus.sqlite")
    try:
        received = bus.receive(topology.INTEGRATION_COMMUNICATIONS, max_messages=100)
        for message in received:
            bus.abandon(message)
        return [decode_envelope(message.body) for message in received]
    finally:
        bus.close()


def test_webhooks_through_the_local_host(start_host, tmp_path: Path) -> None:
    host = start_host()
    crm_dir = tmp_path / "crm"
    crm_dir.mkdir()
    api = _api(host.url, host.data_dir)
    created = api.post(
        "/integrations", json={"provider": "files", "name": "CRM", "config": {"path": str(crm_dir)}}
    )
    assert created.status_code == 201, created.text
    integration_id = created.json()["id"]
    signing_secret = secrets.token_hex(16)

    # register Slack with the secret Slack issued; it is never shown back
    registered = api.post(
        f"/integrations/{integration_id}/webhooks",
        json={"provider": "slack", "secret": signing_secret},
    )
    assert registered.status_code == 201, registered.text
    registration = registered.json()
    assert registration["url"] == f"/api/webhooks/slack/{integration_id}"
    assert "secret" not in registration
    assert signing_secret not in registered.text
    hook = f"{host.url}{registration['url']}"

    # a correctly signed event is acknowledged and on the queue
    event = {
        "type": "event_callback",
        "team_id": "T1",
        "event_id": "Ev0E2E0001",
        "event": {"type": "message", "text": "hello from e2e"},
    }
    body = json.dumps(event).encode()
    accepted = httpx.post(hook, content=body, headers=_slack_headers(signing_secret, body))
    assert (accepted.status_code, accepted.content) == (200, b"")
    (envelope,) = _communications(host.data_dir)
    assert envelope.type == WEBHOOK_RECEIVED
    assert envelope.tenant_id == TENANT
    assert envelope.data["eventId"] == "Ev0E2E0001"
    assert envelope.data["payload"]["event"]["text"] == "hello from e2e"

    # tampered, stale and wrongly signed deliveries get the same 401 and publish nothing
    tampered = body.replace(b"hello", b"jello")
    stale = _slack_headers(signing_secret, body, int(time.time()) - 600)
    refusals = [
        httpx.post(hook, content=tampered, headers=_slack_headers(signing_secret, body)),
        httpx.post(hook, content=body, headers=stale),
        httpx.post(hook, content=body, headers=_slack_headers("not-the-secret", body)),
        httpx.post(
            f"{host.url}/api/webhooks/slack/no-such-integration",
            content=body,
            headers=_slack_headers(signing_secret, body),
        ),
    ]
    for refused in refusals:
        assert refused.status_code == 401
        assert refused.json() == {"error": "webhook authentication failed"}
    assert len(_communications(host.data_dir)) == 1

    # the same event again is acknowledged and not published twice
    replay = httpx.post(hook, content=body, headers=_slack_headers(signing_secret, body))
    assert replay.status_code == 200
    assert len(_communications(host.data_dir)) == 1

    # Slack's url_verification handshake
    challenge = json.dumps(
        {"token": "t", "challenge": "c-3eZbrw1aBm2rZgRNFdxV", "type": "url_verification"}
    ).encode()
    answered = httpx.post(
        hook, content=challenge, headers=_slack_headers(signing_secret, challenge)
    )
    assert answered.status_code == 200
    assert answered.headers["content-type"].startswith("text/plain")
    assert answered.text == "c-3eZbrw1aBm2rZgRNFdxV"

    # Microsoft Graph: a generated clientState (shown once), and the validationToken echo
    graph = api.post(f"/integrations/{integration_id}/webhooks", json={"provider": "msgraph"})
    assert graph.status_code == 201, graph.text
    assert len(graph.json()["secret"]) >= 43
    token = "Validation: Testing client application reachability for subscription"
    validated = httpx.post(
        f"{host.url}{graph.json()['url']}",
        params={"validationToken": token},
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    assert validated.status_code == 200
    assert validated.headers["content-type"].startswith("text/plain")
    assert validated.text == token

    # health and registrations, without any secret
    listed = api.get(f"/integrations/{integration_id}/webhooks")
    assert listed.status_code == 200
    by_provider = {item["provider"]: item for item in listed.json()["items"]}
    assert set(by_provider) == {"slack", "msgraph"}
    slack_health = by_provider["slack"]["health"]
    assert slack_health["receivedCount"] == 3
    assert slack_health["failureCount"] == 3
    assert slack_health["lastFailureReason"] == "signature"
    assert slack_health["lastReceivedAt"] is not None
    assert signing_secret not in listed.text
    assert graph.json()["secret"] not in listed.text

    metrics = httpx.get(f"{host.url}/api/metrics").text
    assert 'webhooks_received_total{outcome="rejected",provider="slack"} 3.0' in metrics
    assert 'webhooks_received_total{outcome="duplicate",provider="slack"} 1.0' in metrics

    # deleted: deliveries are refused
    deleted = api.delete(f"/integrations/{integration_id}/webhooks/{registration['id']}")
    assert deleted.status_code == 204
    gone = httpx.post(hook, content=body, headers=_slack_headers(signing_secret, body))
    assert gone.status_code == 401
