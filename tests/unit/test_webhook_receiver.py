"""Webhook receipt end to end below HTTP: registrations, the providers' documented examples
and handshakes through the receiver, what is published (and what never is), idempotency,
size and rate limits, health, and the claim check up to the consumer.

The signature vectors are the ones `test_webhook_verifiers.py` takes from each provider's
documentation; they are imported, not repeated.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core import containers
from core.adapters.local.env_secrets import EnvSecretStore
from core.adapters.local.folder_blobs import FolderBlobStore
from core.adapters.local.sqlite_bus import SqliteBus
from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.errors import ConflictError, NotFoundError, PoisonMessageError
from core.integrations.repository import IntegrationConfigCache, IntegrationRepository
from core.integrations.service import IntegrationService, InvalidInputError
from core.messaging import topology
from core.messaging.claim_check import CLAIM_CHECK_PROPERTY
from core.messaging.consumer import InboundMessage, consume
from core.metrics import REGISTRY
from core.models import crm_events
from core.models.events import EventEnvelope, decode_envelope
from core.ports import Filter, OutboundMessage, ReceivedMessage
from core.sync.executions import SyncExecutions, parse_task
from core.webhooks.commit import GroupCommit, PendingCommit, Publication
from core.webhooks.events import WEBHOOK_RECEIVED, parse_webhook_received
from core.webhooks.receiver import (
    UNAUTHORIZED,
    RegistrationDirectory,
    WebhookDelivery,
    WebhookReceiver,
    WebhookReply,
    queue_for,
)
from core.webhooks.registrations import WebhookRegistration, WebhookRegistrations, secret_name
from core.webhooks.schemes.base import MAX_BODY_BYTES, WebhookEvent, WebhookRequest
from tests.unit.test_webhook_verifiers import (
    GDRIVE_TOKEN,
    GITHUB_SECRET,
    GITHUB_SIGNATURE,
    GRAPH_CLIENT_STATE,
    GRAPH_NOTIFICATION,
    HMAC_BODY,
    HMAC_SECRET,
    HUBSPOT_DOC_URI,
    HUBSPOT_SDK_BODY,
    HUBSPOT_SECRET,
    HUBSPOT_V1_BODY,
    HUBSPOT_V3_BODY,
    NOTION_EVENT,
    NOTION_TOKEN,
    NOW,
    NOW_MS,
    SALESFORCE_MESSAGE,
    SALESFORCE_ORG,
    SLACK_NOW,
    SLACK_SECRET,
    SLACK_TIMESTAMP,
    URL,
    ZOOM_EVENT,
    ZOOM_SECRET,
    at,
    gdrive_request,
    generic,
    github_request,
    hex_hmac,
    hubspot_legacy,
    hubspot_v3,
    notion_request,
    post,
    signed_slack_json,
    slack_request,
    soap,
    zoom_request,
)

TENANT = "tenant-a"
ALL_QUEUES = tuple(queue.name for queue in topology.TOPOLOGY.queues)


class MovableClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


class Timer:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


class CountingBus(SqliteBus):
    """The local bus, recording every send, so a test can tell "nothing was sent" from
    "sent and dropped as a duplicate"."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.sends: list[tuple[str, int]] = []

    def send(self, entity: str, messages: Sequence[OutboundMessage]) -> None:
        self.sends.append((entity, len(messages)))
        super().send(entity, messages)


class World:
    def __init__(self, tmp_path: Path, **receiver_options: Any) -> None:
        self.tmp_path = tmp_path
        self.store = SqliteDocumentStore(tmp_path / "store.sqlite")
        self.bus = CountingBus(tmp_path / "bus.sqlite")
        self.blobs = FolderBlobStore(tmp_path / "blobs")
        self.secrets = EnvSecretStore({}, file=tmp_path / "secrets.json")
        self.clock = MovableClock(NOW)
        self.timer = Timer()
        self.executions = SyncExecutions(self.store, self.bus, self.clock)
        options: dict[str, Any] = {
            "inline_limit_bytes": 192 * 1024,
            "rate_per_second": 100.0,
            "rate_burst": 200,
        }
        options.update(receiver_options)
        self.receiver = WebhookReceiver(
            self.store,
            self.bus,
            self.blobs,
            self.secrets,
            self.clock,
            self.executions,
            timer=self.timer,
            **options,
        )
        self.registrations = self.receiver.registrations
        crm_dir = tmp_path / "crm"
        crm_dir.mkdir(exist_ok=True)
        service = IntegrationService(
            self.store,
            self.clock,
            IntegrationConfigCache(IntegrationRepository(self.store)),
            validation_mode="lenient",
        )
        self.integration_id = service.create(
            TENANT,
            {"provider": "files", "name": "CRM", "config": {"path": str(crm_dir)}},
        ).id
        service.replace_field_mappings(
            TENANT,
            self.integration_id,
            "deals",
            {
                "shardTypeName": "Opportunity",
                "fieldMappings": [{"source": "dealname", "target": "name"}],
            },
        )

    def register(self, provider: str, secret: str | None = None, **extra: Any) -> str | None:
        body: dict[str, Any] = {"provider": provider, **extra}
        if secret is not None:
            body["secret"] = secret
        _, generated = self.registrations.create(TENANT, self.integration_id, body)
        return generated

    def deliver(self, provider: str, request: WebhookRequest) -> WebhookReply:
        """On an event loop of its own, as the Functions worker runs the coroutine."""
        return asyncio.run(
            self.receiver.receive(
                WebhookDelivery(
                    provider,
                    self.integration_id,
                    request.method,
                    request.url,
                    dict(request.headers),
                    request.body,
                )
            )
        )

    def messages(self, queue: str) -> list[ReceivedMessage]:
        received = self.bus.receive(queue, max_messages=100)
        for message in received:
            self.bus.abandon(message)
        return received

    def envelopes(self, queue: str) -> list[EventEnvelope]:
        return [decode_envelope(message.body) for message in self.messages(queue)]

    def published(self) -> dict[str, int]:
        return {queue: depth for queue in ALL_QUEUES if (depth := self.bus.depth(queue).active) > 0}

    def registration(self, provider: str) -> WebhookRegistration:
        (found,) = self.registrations.list(TENANT, self.integration_id)
        assert found.provider == provider
        return found


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = World(tmp_path)
    yield built
    built.bus.close()
    built.store.close()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_total", labels) or 0.0


# --------------------------------------------------------------------------------------
# Registrations
# --------------------------------------------------------------------------------------


def test_a_generated_secret_is_returned_once_and_kept_only_in_the_secret_store(
    world: World,
) -> None:
    generated = world.register("github")

    assert generated is not None
    assert len(generated) >= 43
    registration = world.registration("github")
    assert registration.secret_name == secret_name(TENANT, world.integration_id, "github")
    assert world.secrets.get(registration.secret_name) == generated
    stored = world.store.get(containers.WEBHOOK_REGISTRATIONS.name, TENANT, registration.id)
    assert generated not in json.dumps(stored)

    world.registrations.delete(TENANT, world.integration_id, registration.id)
    assert world.secrets.get(registration.secret_name) is None
    assert world.registrations.list(TENANT, world.integration_id) == []


def test_a_secret_the_provider_issues_must_be_given(world: World) -> None:
    for provider in ("slack", "hubspot", "zoom", "salesforce"):
        with pytest.raises(InvalidInputError) as caught:
            world.register(provider)
        assert [problem.field for problem in caught.value.problems] == ["secret"]
    assert world.register("slack", SLACK_SECRET) is None
    with pytest.raises(InvalidInputError) as caught:
        world.register("salesforce", "not-an-org-id")
    assert [problem.field for problem in caught.value.problems] == ["secret"]


def test_registration_input_is_checked(world: World) -> None:
    with pytest.raises(InvalidInputError) as caught:
        world.registrations.create(
            TENANT, world.integration_id, {"provider": "pager", "events": [""], "extra": 1}
        )
    fields = {problem.field for problem in caught.value.problems}
    assert fields == {"provider", "events[0]", "extra"}
    with pytest.raises(NotFoundError):
        world.registrations.create(TENANT, "no-such-integration", {"provider": "hmac"})
    with pytest.raises(NotFoundError):
        world.registrations.create("tenant-b", world.integration_id, {"provider": "hmac"})


def test_a_second_registration_of_one_scheme_is_a_conflict_and_keeps_the_first_secret(
    world: World,
) -> None:
    first = world.register("hmac")
    with pytest.raises(ConflictError):
        world.register("hmac", "another-value")
    assert world.secrets.get(secret_name(TENANT, world.integration_id, "hmac")) == first


# --------------------------------------------------------------------------------------
# Documented examples and handshakes through the receiver
# --------------------------------------------------------------------------------------


def test_slack_documented_request_is_published_for_the_registered_tenant(world: World) -> None:
    world.register("slack", SLACK_SECRET)
    world.clock.current = SLACK_NOW
    accepted = counter("webhooks_received", provider="slack", outcome="accepted")

    reply = world.deliver("slack", slack_request())

    assert (reply.status, reply.body) == (200, b"")
    assert world.published() == {topology.INTEGRATION_COMMUNICATIONS: 1}
    (message,) = world.messages(topology.INTEGRATION_COMMUNICATIONS)
    envelope = decode_envelope(message.body)
    payload = parse_webhook_received(envelope)
    assert envelope.type == WEBHOOK_RECEIVED == message.subject
    assert envelope.tenant_id == TENANT == message.application_properties["tenantId"]
    assert payload.integration_id == world.integration_id
    assert payload.event_id == "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    assert payload.event_type == "slash_command"
    assert payload.payload["command"] == "/webhook-collect"
    assert "token" not in payload.payload
    assert payload.idempotency_key == f"webhook:{world.integration_id}:{payload.event_id}"
    assert envelope.time == payload.received_at == SLACK_NOW
    assert counter("webhooks_received", provider="slack", outcome="accepted") == accepted + 1


def test_slack_url_verification_answers_the_challenge_and_publishes_nothing(world: World) -> None:
    world.register("slack", SLACK_SECRET)
    world.clock.current = SLACK_NOW
    request = signed_slack_json(
        {"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
        | {"type": "url_verification"}
    )

    reply = world.deliver("slack", request)

    assert reply.status == 200
    assert reply.content_type == "text/plain; charset=utf-8"
    assert reply.body == b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    assert world.published() == {}


def test_github_documented_example_passes_the_signature_and_is_refused_as_a_payload(
    world: World,
) -> None:
    world.register("github", GITHUB_SECRET)
    invalid_body = counter("webhooks_rejected", provider="github", reason="invalid_body")

    reply = world.deliver("github", github_request(b"Hello, World!", GITHUB_SIGNATURE))

    assert reply == UNAUTHORIZED
    assert counter("webhooks_rejected", provider="github", reason="invalid_body") == (
        invalid_body + 1
    )
    assert world.published() == {}

    body = b'{"ref": "refs/heads/main"}'
    signed = github_request(body, "sha256=" + hex_hmac(GITHUB_SECRET, body), delivery="72d3162e")
    assert world.deliver("github", signed).status == 200
    (envelope,) = world.envelopes(topology.INTEGRATION_COMMUNICATIONS)
    assert envelope.data["eventId"] == "72d3162e"
    assert envelope.data["payload"] == {"ref": "refs/heads/main"}


def test_hubspot_documented_v1_batch_requests_a_targeted_sync(world: World) -> None:
    world.register("hubspot", HUBSPOT_SECRET)
    signature = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"

    reply = world.deliver("hubspot", hubspot_legacy("v1", signature, HUBSPOT_V1_BODY))

    assert reply.status == 200
    assert world.published() == {topology.SYNC_TASKS: 1}
    (envelope,) = world.envelopes(topology.SYNC_TASKS)
    task = parse_task(envelope)
    assert (task.tenant_id, task.integration_id) == (TENANT, world.integration_id)
    assert (task.trigger, task.entity_types) == ("webhook", ["Contact"])
    assert world.executions.get(TENANT, task.sync_task_id).trigger == "webhook"


def test_hubspot_documented_v2_request_is_authenticated_and_names_no_record(world: World) -> None:
    world.register("hubspot", HUBSPOT_SECRET)
    unmapped = counter("webhook_events", provider="hubspot", outcome="unmapped")
    signature = "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"

    reply = world.deliver(
        "hubspot", hubspot_legacy("v2", signature, b'{"example_field":"example_value"}')
    )

    assert reply.status == 200
    assert counter("webhook_events", provider="hubspot", outcome="unmapped") == unmapped + 1
    assert world.published() == {}


def test_hubspot_v3_sdk_vector_verifies_and_a_v3_delivery_requests_a_deals_sync(
    world: World,
) -> None:
    world.register("hubspot", HUBSPOT_SECRET)
    invalid_body = counter("webhooks_rejected", provider="hubspot", reason="invalid_body")
    world.clock.current = at(1700000300 + 1)
    sdk_vector = hubspot_v3(
        HUBSPOT_SDK_BODY,
        1700000300000,
        url=HUBSPOT_DOC_URI,
        signature="RnbPH7+UMKVkbV32P8bz450N4M56aPmcru1+D3kSDtw=",
    )
    assert world.deliver("hubspot", sdk_vector) == UNAUTHORIZED
    assert counter("webhooks_rejected", provider="hubspot", reason="invalid_body") == (
        invalid_body + 1
    )

    world.clock.current = NOW
    assert world.deliver("hubspot", hubspot_v3(HUBSPOT_V3_BODY, NOW_MS - 1000)).status == 200
    (envelope,) = world.envelopes(topology.SYNC_TASKS)
    assert parse_task(envelope).entity_types == ["deals"]


def test_notion_handshake_keeps_the_token_pending_until_an_admin_activates_it(
    world: World,
) -> None:
    assert world.register("notion") is None
    assert world.registration("notion").secret_name is None
    verification = json.dumps({"verification_token": NOTION_TOKEN}, separators=(",", ":"))
    documented = "sha256=461e8cbcba8a75c3edd866f0e71280f5a85cbf21eff040ebd10fe266df38a735"
    signed_event = notion_request(NOTION_EVENT, "sha256=" + hex_hmac(NOTION_TOKEN, NOTION_EVENT))

    reply = world.deliver("notion", notion_request(verification.encode(), documented))
    assert (reply.status, reply.body) == (200, b"")
    pending = world.registration("notion")
    assert pending.pending_secret_name is not None
    assert pending.secret_name is None
    assert world.deliver("notion", signed_event) == UNAUTHORIZED

    activated, token = world.registrations.activate(TENANT, world.integration_id, pending.id)

    assert token == NOTION_TOKEN
    assert activated.secret_name is not None
    assert activated.pending_secret_name is None
    assert world.secrets.get(pending.pending_secret_name) is None
    assert world.deliver("notion", signed_event).status == 200
    (envelope,) = world.envelopes(topology.INTEGRATION_DOCUMENTS)
    assert envelope.data["eventType"] == "page.created"
    with pytest.raises(ConflictError):
        world.registrations.activate(TENANT, world.integration_id, pending.id)


def test_a_notion_handshake_never_replaces_an_active_secret(world: World) -> None:
    world.register("notion", NOTION_TOKEN)
    forged = json.dumps({"verification_token": "secret_chosen_by_someone_else"}).encode()

    assert world.deliver("notion", notion_request(forged, None)).status == 200

    registration = world.registration("notion")
    assert registration.secret_name is not None
    assert world.secrets.get(registration.secret_name) == NOTION_TOKEN
    assert registration.pending_secret_name is not None
    assert world.secrets.get(registration.pending_secret_name) == "secret_chosen_by_someone_else"
    another = json.dumps({"verification_token": "secret_another_one"}).encode()
    assert world.deliver("notion", notion_request(another, None)).status == 200
    assert world.secrets.get(registration.pending_secret_name) == "secret_chosen_by_someone_else"
    signed = notion_request(NOTION_EVENT, "sha256=" + hex_hmac(NOTION_TOKEN, NOTION_EVENT))
    assert world.deliver("notion", signed).status == 200


def test_zoom_url_validation_answers_with_the_encrypted_token(world: World) -> None:
    world.register("zoom", ZOOM_SECRET)
    plain_token = secrets.token_urlsafe(16)
    challenge = {
        "payload": {"plainToken": plain_token},
        "event_ts": 1654503849680,
        "event": "endpoint.url_validation",
    }

    reply = world.deliver("zoom", zoom_request(json.dumps(challenge).encode()))

    assert (reply.status, reply.content_type) == (200, "application/json")
    assert json.loads(reply.body) == {
        "plainToken": plain_token,
        "encryptedToken": hex_hmac(ZOOM_SECRET, plain_token.encode()),
    }
    assert world.published() == {}
    assert world.deliver("zoom", zoom_request(ZOOM_EVENT)).status == 200
    assert world.published() == {topology.INTEGRATION_MEETINGS: 1}


def test_graph_validation_is_echoed_and_notifications_are_published(world: World) -> None:
    world.register("msgraph", GRAPH_CLIENT_STATE)
    token = "Validation: Testing client application reachability for subscription"
    validation = post(
        {"Content-Type": "text/plain; charset=utf-8"},
        b"",
        url=URL + "?validationToken=" + token.replace(" ", "+").replace(":", "%3A"),
    )

    reply = world.deliver("msgraph", validation)

    assert (reply.status, reply.content_type, reply.body) == (
        200,
        "text/plain; charset=utf-8",
        token.encode(),
    )
    assert world.published() == {}
    notification = post(
        {"Content-Type": "application/json"}, json.dumps(GRAPH_NOTIFICATION).encode()
    )
    assert world.deliver("msgraph", notification).status == 202
    (envelope,) = world.envelopes(topology.INTEGRATION_COMMUNICATIONS)
    assert "clientState" not in envelope.data["payload"]


def test_gdrive_sync_message_is_acknowledged_and_changes_go_to_documents(world: World) -> None:
    world.register("gdrive", GDRIVE_TOKEN)
    sync = gdrive_request(**{"X-Goog-Resource-State": "sync", "X-Goog-Message-Number": "1"})

    assert world.deliver("gdrive", sync).status == 200
    assert world.published() == {}
    assert world.deliver("gdrive", gdrive_request()).status == 200
    assert world.published() == {topology.INTEGRATION_DOCUMENTS: 1}


def test_salesforce_records_become_raw_crm_events_and_are_acknowledged(world: World) -> None:
    world.register("salesforce", SALESFORCE_ORG)

    reply = world.deliver("salesforce", soap(SALESFORCE_MESSAGE))

    assert reply.status == 200
    assert reply.content_type == "text/xml; charset=utf-8"
    assert b"<Ack>true</Ack>" in reply.body
    envelopes = world.envelopes(topology.INTEGRATION_DATA_RAW)
    assert len(envelopes) == 2
    raw = crm_events.parse_payload(envelopes[0])
    assert isinstance(raw, crm_events.DataRaw)
    assert (raw.tenant_id, raw.entity_type, raw.external_id) == (
        TENANT,
        "Opportunity",
        "0065e00000ZkM3hAAF",
    )
    assert raw.sync_task_id is None
    assert raw.raw_data["StageName"] == "Perception Analysis"
    assert "Session" not in json.dumps(raw.model_dump(by_alias=True))


def test_salesforce_messages_with_only_ids_request_a_sync_instead(world: World) -> None:
    world.register("salesforce", SALESFORCE_ORG)
    only_ids = re.sub(
        r"\s*<sf:(?!Id>)(\w+)[^>]*?(/>|>[^<]*</sf:\1>)", "", SALESFORCE_MESSAGE.decode()
    )
    assert "<sf:Amount>" not in only_ids
    assert "<sf:Id>0065e00000ZkM3hAAF</sf:Id>" in only_ids

    reply = world.deliver("salesforce", soap(only_ids.encode()))

    assert reply.status == 200
    assert world.published() == {topology.SYNC_TASKS: 1}
    (envelope,) = world.envelopes(topology.SYNC_TASKS)
    assert parse_task(envelope).entity_types == ["Opportunity"]


def test_generic_hmac_event_is_published(world: World) -> None:
    world.register("hmac", HMAC_SECRET)

    assert world.deliver("hmac", generic()).status == 200

    (envelope,) = world.envelopes(topology.INTEGRATION_COMMUNICATIONS)
    assert (envelope.data["eventId"], envelope.data["payload"]) == ("evt-42", json.loads(HMAC_BODY))


# --------------------------------------------------------------------------------------
# Bad input publishes nothing and is counted
# --------------------------------------------------------------------------------------

SLACK_EVENT = {
    "type": "event_callback",
    "event_id": "Ev0PV52K21",
    "event": {"type": "message", "text": "hello"},
}


def _slack_variants() -> dict[str, tuple[WebhookRequest, str]]:
    good = signed_slack_json(SLACK_EVENT)
    headers = dict(good.headers)
    body = good.body
    without_signature = {k: v for k, v in headers.items() if k != "x-slack-signature"}
    wrong_secret = "v0=" + hex_hmac("not-the-secret", f"v0:{SLACK_TIMESTAMP}:".encode() + body)
    truncated = body[:-5]
    truncated_signed = "v0=" + hex_hmac(SLACK_SECRET, f"v0:{SLACK_TIMESTAMP}:".encode() + truncated)
    return {
        "tampered": (post(headers, body.replace(b"hello", b"jello")), "signature_mismatch"),
        "wrong-secret": (
            post(headers | {"x-slack-signature": wrong_secret}, body),
            "signature_mismatch",
        ),
        "missing-header": (post(without_signature, body), "missing_header"),
        "content-type": (
            post(headers | {"content-type": "text/plain"}, body),
            "unsupported_content_type",
        ),
        "truncated-json": (
            post(headers | {"x-slack-signature": truncated_signed}, truncated),
            "invalid_body",
        ),
    }


@pytest.mark.parametrize(
    "variant", ["tampered", "wrong-secret", "missing-header", "content-type", "truncated-json"]
)
def test_refused_slack_deliveries_publish_nothing_and_are_counted(
    world: World, variant: str
) -> None:
    world.register("slack", SLACK_SECRET)
    world.clock.current = SLACK_NOW
    request, reason = _slack_variants()[variant]
    rejected = counter("webhooks_received", provider="slack", outcome="rejected")
    by_reason = counter("webhooks_rejected", provider="slack", reason=reason)

    reply = world.deliver("slack", request)

    assert reply == UNAUTHORIZED
    assert json.loads(reply.body) == {"error": "webhook authentication failed"}
    assert world.bus.sends == []
    assert world.published() == {}
    assert counter("webhooks_received", provider="slack", outcome="rejected") == rejected + 1
    assert counter("webhooks_rejected", provider="slack", reason=reason) == by_reason + 1


@pytest.mark.parametrize(
    ("moment", "reason"),
    [(SLACK_NOW + timedelta(seconds=301), "stale_timestamp"), (at(0), "future_timestamp")],
    ids=["old", "future"],
)
def test_timestamps_outside_the_tolerance_publish_nothing(
    world: World, moment: datetime, reason: str
) -> None:
    world.register("slack", SLACK_SECRET)
    world.clock.current = moment
    by_reason = counter("webhooks_rejected", provider="slack", reason=reason)

    assert world.deliver("slack", signed_slack_json(SLACK_EVENT)) == UNAUTHORIZED

    assert world.bus.sends == []
    assert counter("webhooks_rejected", provider="slack", reason=reason) == by_reason + 1
    world.receiver.flush_health(TENANT)
    health = world.registration("slack").health
    assert (health.failure_count, health.last_failure_reason) == (1, "timestamp")


def test_tampered_hubspot_and_wrong_org_salesforce_publish_nothing(world: World) -> None:
    world.register("hubspot", HUBSPOT_SECRET)
    world.register("salesforce", "00D000000000062EAA")
    request = hubspot_v3(HUBSPOT_V3_BODY, NOW_MS)
    tampered = post(dict(request.headers), HUBSPOT_V3_BODY.replace(b"closedwon", b"closedlost"))

    assert world.deliver("hubspot", tampered) == UNAUTHORIZED
    assert world.deliver("salesforce", soap(SALESFORCE_MESSAGE)) == UNAUTHORIZED
    assert world.bus.sends == []
    assert world.store.count(containers.SYNC_EXECUTIONS.name, partition_key=TENANT) == 0


def test_unknown_registrations_look_like_bad_signatures(world: World) -> None:
    world.clock.current = SLACK_NOW
    unknown = counter("webhooks_received", provider="slack", outcome="unknown_registration")

    assert world.deliver("slack", slack_request()) == UNAUTHORIZED
    assert counter("webhooks_received", provider="slack", outcome="unknown_registration") == (
        unknown + 1
    )
    assert world.deliver("pager", slack_request()).status == 404
    assert world.bus.sends == []


# --------------------------------------------------------------------------------------
# Idempotency, limits, health
# --------------------------------------------------------------------------------------


def test_a_replayed_event_id_is_acknowledged_and_publishes_nothing(world: World) -> None:
    world.register("slack", SLACK_SECRET)
    world.clock.current = SLACK_NOW
    duplicates = counter("webhooks_received", provider="slack", outcome="duplicate")
    retry = signed_slack_json(SLACK_EVENT | {"retry": 1})
    assert retry.header("X-Slack-Signature") != signed_slack_json(SLACK_EVENT).header(
        "X-Slack-Signature"
    )

    assert world.deliver("slack", signed_slack_json(SLACK_EVENT)).status == 200
    assert world.deliver("slack", retry).status == 200

    assert world.bus.sends == [(topology.INTEGRATION_COMMUNICATIONS, 1)]
    assert counter("webhooks_received", provider="slack", outcome="duplicate") == duplicates + 1
    key = f"webhook:{world.integration_id}:Ev0PV52K21"
    (document,) = world.store.query(
        containers.IDEMPOTENCY.name, filters=[Filter("key", "==", key)], limit=5
    ).items
    assert document["tenantId"] == TENANT


def test_repeats_inside_one_batch_and_across_batches_are_published_once(world: World) -> None:
    world.register("msgraph", GRAPH_CLIENT_STATE)
    item = GRAPH_NOTIFICATION["value"][0]
    second = item | {"id": "another-notification"}
    batch = post({"Content-Type": "application/json"}, json.dumps({"value": [item, item]}).encode())
    again = post(
        {"Content-Type": "application/json"}, json.dumps({"value": [item, second]}).encode()
    )

    assert world.deliver("msgraph", batch).status == 202
    assert world.deliver("msgraph", again).status == 202

    assert [
        e.data["payload"]["id"] for e in world.envelopes(topology.INTEGRATION_COMMUNICATIONS)
    ] == [
        "lsgTZMr9KwAAA",
        "another-notification",
    ]


def test_events_outside_the_registered_filter_are_counted_not_published(world: World) -> None:
    world.register("slack", SLACK_SECRET, events=["app_mention", "reaction_*"])
    world.clock.current = SLACK_NOW
    filtered = counter("webhook_events", provider="slack", outcome="filtered")

    assert world.deliver("slack", signed_slack_json(SLACK_EVENT)).status == 200
    reaction = SLACK_EVENT | {"event_id": "Ev2", "event": {"type": "reaction_added"}}
    assert world.deliver("slack", signed_slack_json(reaction)).status == 200

    assert counter("webhook_events", provider="slack", outcome="filtered") == filtered + 1
    (envelope,) = world.envelopes(topology.INTEGRATION_COMMUNICATIONS)
    assert envelope.data["eventType"] == "reaction_added"


def test_a_body_over_10_mb_is_refused_with_413(world: World) -> None:
    world.register("hmac", HMAC_SECRET)
    body = b'{"id": "big", "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'

    reply = world.deliver("hmac", generic(body=body))

    assert reply.status == 413
    assert world.bus.sends == []
    world.receiver.flush_health(TENANT)
    assert world.registration("hmac").health.last_failure_reason == "too_large"


def test_the_per_integration_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    world = World(tmp_path, rate_per_second=1.0, rate_burst=2)
    world.register("hmac", HMAC_SECRET)
    limited = counter("webhooks_received", provider="hmac", outcome="rate_limited")

    first, second, third = (world.deliver("hmac", generic()) for _ in range(3))

    assert (first.status, second.status) == (200, 200)
    assert (third.status, third.headers) == (429, {"Retry-After": "1"})
    assert counter("webhooks_received", provider="hmac", outcome="rate_limited") == limited + 1
    world.timer.value += 1.0
    assert world.deliver("hmac", generic()).status == 200
    assert world.bus.sends == [(topology.INTEGRATION_COMMUNICATIONS, 1)]


def test_health_is_written_at_most_once_per_interval(world: World) -> None:
    world.register("hmac", HMAC_SECRET)

    assert world.deliver("hmac", generic()).status == 200
    assert world.registration("hmac").health.received_count == 1
    assert world.deliver("hmac", generic(signature="sha256=" + "0" * 64)) == UNAUTHORIZED
    other = generic(body=b'{"id": "evt-43", "type": "deal.updated"}')
    assert world.deliver("hmac", other).status == 200
    assert world.registration("hmac").health.received_count == 1

    world.timer.value += 30.0
    assert world.deliver("hmac", other).status == 200

    health = world.registration("hmac").health
    assert (health.received_count, health.failure_count) == (3, 1)
    assert health.last_failure_reason == "signature"
    assert health.last_received_at == NOW


# --------------------------------------------------------------------------------------
# Claim check, from the receiver to the consumer
# --------------------------------------------------------------------------------------


def test_a_large_event_goes_by_claim_check_and_the_consumer_resolves_it(tmp_path: Path) -> None:
    world = World(tmp_path, inline_limit_bytes=1024)
    world.register("hmac", HMAC_SECRET)
    body = json.dumps({"id": "evt-big", "type": "note", "text": "y" * 5000}).encode()
    assert world.deliver("hmac", generic(body=body)).status == 200

    (message,) = world.messages(topology.INTEGRATION_COMMUNICATIONS)
    assert CLAIM_CHECK_PROPERTY in message.application_properties
    assert len(message.body) < 1024
    inbound = InboundMessage(
        body=message.body,
        message_id=message.message_id,
        application_properties=message.application_properties,
    )
    handled: list[EventEnvelope] = []

    outcome = consume(
        inbound,
        entity=topology.INTEGRATION_COMMUNICATIONS,
        bus=world.bus,
        handler=lambda envelope, attempt: handled.append(envelope),
        give_up=lambda envelope, error, attempts: None,
        blobs=world.blobs,
    )

    assert outcome == "processed"
    (envelope,) = handled
    assert parse_webhook_received(envelope).payload["text"] == "y" * 5000


def test_a_claim_check_whose_blob_changed_is_dead_lettered_not_processed(tmp_path: Path) -> None:
    world = World(tmp_path, inline_limit_bytes=1024)
    world.register("hmac", HMAC_SECRET)
    body = json.dumps({"id": "evt-big", "type": "note", "text": "z" * 5000}).encode()
    assert world.deliver("hmac", generic(body=body)).status == 200
    (message,) = world.messages(topology.INTEGRATION_COMMUNICATIONS)
    container, name = message.application_properties[CLAIM_CHECK_PROPERTY].split("/", 1)
    world.blobs.put(container, name, b"{}")
    inbound = InboundMessage(
        body=message.body,
        message_id=message.message_id,
        application_properties=message.application_properties,
    )

    with pytest.raises(PoisonMessageError) as caught:
        consume(
            inbound,
            entity=topology.INTEGRATION_COMMUNICATIONS,
            bus=world.bus,
            handler=lambda envelope, attempt: pytest.fail("must not be handled"),
            give_up=lambda envelope, error, attempts: pytest.fail("must not give up"),
            blobs=world.blobs,
        )
    assert caught.value.reason == "ClaimCheckUnresolvable"


# --------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "event_type", "payload", "queue"),
    [
        ("slack", "message", {}, topology.INTEGRATION_COMMUNICATIONS),
        ("zoom", "meeting.ended", {}, topology.INTEGRATION_MEETINGS),
        ("zoom", "chat_message.sent", {}, topology.INTEGRATION_COMMUNICATIONS),
        ("notion", "page.created", {}, topology.INTEGRATION_DOCUMENTS),
        ("notion", "comment.created", {}, topology.INTEGRATION_COMMUNICATIONS),
        ("gdrive", "update", {}, topology.INTEGRATION_DOCUMENTS),
        (
            "msgraph",
            "created",
            {"resource": "Users/u1/Events/e1"},
            topology.INTEGRATION_EVENTS_QUEUE,
        ),
        ("msgraph", "updated", {"resource": "drives/d1/root"}, topology.INTEGRATION_DOCUMENTS),
        ("msgraph", "created", {"resource": "me/messages"}, topology.INTEGRATION_COMMUNICATIONS),
    ],
)
def test_events_go_to_the_queue_of_their_kind(
    scheme: str, event_type: str, payload: dict[str, Any], queue: str
) -> None:
    assert queue_for(scheme, WebhookEvent("id", event_type, payload)) == queue


# --------------------------------------------------------------------------------------
# Group commit and the registration cache
# --------------------------------------------------------------------------------------


def test_concurrent_copies_of_one_event_are_published_once(world: World) -> None:
    world.register("slack", SLACK_SECRET)
    world.clock.current = SLACK_NOW
    same = signed_slack_json(SLACK_EVENT)
    others = [signed_slack_json(SLACK_EVENT | {"event_id": f"Ev{n}"}) for n in range(6)]

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda r: world.deliver("slack", r), [same] * 6 + others))

    assert {reply.status for reply in replies} == {200}
    ids = [e.data["eventId"] for e in world.envelopes(topology.INTEGRATION_COMMUNICATIONS)]
    assert sorted(ids) == sorted(["Ev0PV52K21", *(f"Ev{n}" for n in range(6))])


class GatedBus(SqliteBus):
    """Holds the first send until released, so later commits queue behind it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[str]] = []

    def send(self, entity: str, messages: Sequence[OutboundMessage]) -> None:
        self.batches.append([m.message_id or "" for m in messages])
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
        super().send(entity, messages)


def _pending(entity: str, message_id: str) -> PendingCommit:
    message = OutboundMessage(body=b"{}", message_id=message_id)
    return PendingCommit([Publication(entity, message, None)])


def test_queued_commits_share_one_write_and_a_bad_one_fails_alone(tmp_path: Path) -> None:
    bus = GatedBus(tmp_path / "bus.sqlite")
    committer = GroupCommit(bus, SqliteDocumentStore(tmp_path / "store.sqlite"))
    queue = topology.INTEGRATION_COMMUNICATIONS
    first = _pending(queue, "m1")
    queued = {
        "second": _pending(queue, "m2"),
        "third": _pending(queue, "m3"),
        "bad": _pending("nowhere", "m4"),
    }
    outcomes: dict[str, BaseException | None] = {}

    def commit(name: str, pending: PendingCommit) -> None:
        try:
            asyncio.run(committer.commit(pending))
            outcomes[name] = None
        except Exception as error:
            outcomes[name] = error

    leader = threading.Thread(target=commit, args=("first", first))
    leader.start()
    assert bus.entered.wait(10)
    followers = []
    for name, pending in queued.items():
        followers.append(threading.Thread(target=commit, args=(name, pending)))
        followers[-1].start()
        while len(committer._queue) < len(followers):
            time.sleep(0.01)
    bus.release.set()
    for thread in (leader, *followers):
        thread.join(10)

    assert outcomes == {"first": None, "second": None, "third": None, "bad": outcomes["bad"]}
    assert isinstance(outcomes["bad"], NotFoundError)
    assert bus.batches[:3] == [["m1"], ["m2", "m3"], ["m4"]]
    received = bus.receive(queue, max_messages=10)
    assert [m.message_id for m in received] == ["m1", "m2", "m3"]


def _keyed(entity: str, key: str) -> PendingCommit:
    message = OutboundMessage(body=b"{}", message_id=f"id-{key}")
    document = {"id": f"doc-{key}", "key": key, "tenantId": TENANT}
    return PendingCommit([Publication(entity, message, document)])


def _commit_in_thread(committer: GroupCommit, pending: PendingCommit) -> threading.Thread:
    """Commits on a thread and loop of its own; a failure stays on `pending.error`."""

    def run() -> None:
        try:
            asyncio.run(committer.commit(pending))
        except Exception:
            assert pending.error is not None

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_when_a_shared_commit_fails_copies_in_it_still_publish_once(tmp_path: Path) -> None:
    bus = GatedBus(tmp_path / "bus.sqlite")
    committer = GroupCommit(bus, SqliteDocumentStore(tmp_path / "store.sqlite"))
    queue = topology.INTEGRATION_COMMUNICATIONS
    leader = _commit_in_thread(committer, _keyed(queue, "k0"))
    assert bus.entered.wait(10)
    copies = [_keyed(queue, "k1"), _keyed(queue, "k1")]
    bad = _keyed("nowhere", "k2")
    followers = []
    for pending in (*copies, bad):
        followers.append(_commit_in_thread(committer, pending))
        while len(committer._queue) < len(followers):
            time.sleep(0.01)
    bus.release.set()
    for thread in (leader, *followers):
        thread.join(10)

    assert [(p.published, p.repeats, p.error) for p in copies] == [(1, 0, None), (0, 1, None)]
    assert isinstance(bad.error, NotFoundError)
    assert [m.message_id for m in bus.receive(queue, max_messages=10)] == ["id-k0", "id-k1"]


def test_an_idle_commit_writer_ends_and_the_next_commit_starts_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.webhooks.commit.COMMIT_WRITER_IDLE_SECONDS", 0.05)
    bus = SqliteBus(tmp_path / "bus.sqlite")
    committer = GroupCommit(bus, SqliteDocumentStore(tmp_path / "store.sqlite"))
    queue = topology.INTEGRATION_COMMUNICATIONS

    asyncio.run(committer.commit(_pending(queue, "m1")))
    first_writer = committer._writer
    assert first_writer is not None
    first_writer.join(5)
    assert not first_writer.is_alive()
    assert committer._writer is None

    asyncio.run(committer.commit(_pending(queue, "m2")))
    received = bus.receive(queue, max_messages=10)
    assert [m.message_id for m in received] == ["m1", "m2"]


def test_a_registration_made_elsewhere_is_seen_once_the_miss_expires(world: World) -> None:
    world.clock.current = SLACK_NOW
    assert world.deliver("slack", slack_request()) == UNAUTHORIZED
    elsewhere = WebhookRegistrations(world.store, world.secrets, world.clock)
    elsewhere.create(TENANT, world.integration_id, {"provider": "slack", "secret": SLACK_SECRET})

    assert world.deliver("slack", slack_request()) == UNAUTHORIZED
    world.timer.value += 11
    assert world.deliver("slack", slack_request()).status == 200


def test_the_registration_cache_is_bounded(world: World) -> None:
    directory = RegistrationDirectory(world.store, world.secrets, max_entries=3, timer=world.timer)
    for number in range(10):
        assert directory.resolve(f"integration-{number}", "slack") is None
    assert len(directory._entries) == 3
    assert ("integration-9", "slack") in directory._entries
