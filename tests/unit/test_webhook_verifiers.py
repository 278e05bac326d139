"""Webhook authentication per provider, checked against each provider's published examples.

Where a provider publishes test values they are used verbatim, with the doc cited; expected
values computed in this file use `hmac`/`hashlib` directly, never the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.webhooks import (
    MAX_BODY_BYTES,
    VERIFIERS,
    Accepted,
    Handshake,
    Rejected,
    RejectReason,
    WebhookRequest,
    WebhookVerdict,
    verify_webhook,
)
from core.webhooks.schemes.generic_hmac import HmacSha256Scheme, hmac_signature
from core.webhooks.schemes.github import github_signature
from core.webhooks.schemes.hubspot import (
    HubSpotScheme,
    hubspot_signature_v1,
    hubspot_signature_v2,
    hubspot_signature_v3,
    hubspot_v3_uri,
)
from core.webhooks.schemes.notion import notion_signature
from core.webhooks.schemes.salesforce import ACK_ENVELOPE
from core.webhooks.schemes.slack import slack_signature
from core.webhooks.schemes.zoom import zoom_signature

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
URL = "https://func.example.net/api/webhooks/acme/integration-1"


def at(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC)


def post(
    headers: dict[str, str], body: bytes, url: str = URL, method: str = "POST"
) -> WebhookRequest:
    return WebhookRequest(method=method, url=url, headers=headers, body=body)


def rejected(verdict: WebhookVerdict, reason: RejectReason) -> Rejected:
    assert isinstance(verdict, Rejected), verdict
    assert verdict.reason is reason, verdict
    return verdict


def hex_hmac(key: str, message: bytes) -> str:
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------
# Slack — https://api.slack.com/authentication/verifying-requests-from-slack
# --------------------------------------------------------------------------------------

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SLACK_NOW = at(int(SLACK_TIMESTAMP) + 30)
SLACK = VERIFIERS["slack"]


def slack_request(
    body: bytes = SLACK_BODY,
    signature: str = SLACK_SIGNATURE,
    timestamp: str = SLACK_TIMESTAMP,
    content_type: str = "application/x-www-form-urlencoded",
) -> WebhookRequest:
    return post(
        {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        },
        body,
    )


def signed_slack_json(document: dict[str, object]) -> WebhookRequest:
    body = json.dumps(document).encode()
    signature = "v0=" + hex_hmac(SLACK_SECRET, b"v0:" + SLACK_TIMESTAMP.encode() + b":" + body)
    return slack_request(body, signature, content_type="application/json")


def test_slack_signature_matches_the_documented_example() -> None:
    assert slack_signature(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_BODY) == SLACK_SIGNATURE


def test_slack_documented_slash_command_is_accepted_without_its_verification_token() -> None:
    verdict = SLACK.verify(slack_request(), SLACK_SECRET, SLACK_NOW)

    assert isinstance(verdict, Accepted)
    (event,) = verdict.events
    assert event.event_id == "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    assert event.event_type == "slash_command"
    assert event.payload["command"] == "/webhook-collect"
    assert event.payload["text"] == ""
    assert "token" not in event.payload


def test_slack_headers_are_found_whatever_their_case() -> None:
    request = post(
        {
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": SLACK_TIMESTAMP,
            "X-SLACK-SIGNATURE": SLACK_SIGNATURE,
        },
        SLACK_BODY,
    )
    assert isinstance(SLACK.verify(request, SLACK_SECRET, SLACK_NOW), Accepted)


@pytest.mark.parametrize(
    ("request_", "secret", "now", "reason"),
    [
        (slack_request(body=SLACK_BODY + b"x"), SLACK_SECRET, SLACK_NOW, "signature_mismatch"),
        (slack_request(), "another-signing-secret", SLACK_NOW, "signature_mismatch"),
        (slack_request(), SLACK_SECRET, at(int(SLACK_TIMESTAMP) + 301), "stale_timestamp"),
        (slack_request(), SLACK_SECRET, at(int(SLACK_TIMESTAMP) - 301), "future_timestamp"),
        (slack_request(timestamp="1531420618.5"), SLACK_SECRET, SLACK_NOW, "malformed_timestamp"),
        (slack_request(timestamp="١٥٣١٤٢٠٦١٨"), SLACK_SECRET, SLACK_NOW, "malformed_timestamp"),
        (slack_request(signature=""), SLACK_SECRET, SLACK_NOW, "missing_header"),
        (slack_request(timestamp=""), SLACK_SECRET, SLACK_NOW, "missing_header"),
        (
            slack_request(content_type="text/plain"),
            SLACK_SECRET,
            SLACK_NOW,
            "unsupported_content_type",
        ),
        (slack_request(), None, SLACK_NOW, "secret_not_configured"),
    ],
    ids=[
        "tampered",
        "wrong-secret",
        "old",
        "future",
        "fractional-ts",
        "non-ascii-digits-ts",
        "no-sig",
        "no-ts",
        "ctype",
        "no-secret",
    ],
)
def test_slack_rejections(
    request_: WebhookRequest, secret: str | None, now: datetime, reason: str
) -> None:
    verdict = rejected(SLACK.verify(request_, secret, now), RejectReason(reason))
    assert SLACK_SECRET not in verdict.detail
    assert SLACK_SIGNATURE not in verdict.detail


def test_slack_url_verification_answers_the_challenge() -> None:
    # https://api.slack.com/events/url_verification
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    request = signed_slack_json(
        {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"}
    )

    verdict = SLACK.verify(request, SLACK_SECRET, SLACK_NOW)

    assert isinstance(verdict, Handshake)
    assert verdict.response.status == 200
    assert verdict.response.content_type == "text/plain; charset=utf-8"
    assert verdict.response.body == challenge.encode()


def test_slack_unsigned_url_verification_is_refused() -> None:
    body = b'{"challenge": "abc", "type": "url_verification"}'
    request = slack_request(body, "v0=" + "0" * 64, content_type="application/json")
    rejected(SLACK.verify(request, SLACK_SECRET, SLACK_NOW), RejectReason.SIGNATURE_MISMATCH)


def test_slack_event_callback_carries_its_event_id() -> None:
    # https://api.slack.com/apis/events-api#callback-field
    document = {
        "token": "XXYYZZ",
        "team_id": "T123ABC456",
        "api_app_id": "A123ABC456",
        "event": {"type": "message", "channel": "C123ABC456", "ts": "1355517523.000005"},
        "type": "event_callback",
        "event_id": "Ev123ABC456",
        "event_time": 1234567890,
    }
    verdict = SLACK.verify(signed_slack_json(document), SLACK_SECRET, SLACK_NOW)

    assert isinstance(verdict, Accepted)
    (event,) = verdict.events
    assert (event.event_id, event.event_type) == ("Ev123ABC456", "message")
    assert "token" not in event.payload


def test_slack_interaction_payload_is_unwrapped() -> None:
    interaction = {
        "type": "block_actions",
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
    }
    body = b"payload=" + json.dumps(interaction).replace(" ", "").encode()
    signature = "v0=" + hex_hmac(SLACK_SECRET, b"v0:" + SLACK_TIMESTAMP.encode() + b":" + body)

    verdict = SLACK.verify(slack_request(body, signature), SLACK_SECRET, SLACK_NOW)

    assert isinstance(verdict, Accepted)
    assert verdict.events[0].event_type == "block_actions"
    assert verdict.events[0].event_id == "13345224609.738474920.8088930838d88f008e0"


def test_slack_signed_but_truncated_json_is_invalid_body() -> None:
    body = b'{"type": "event_callback", "event_id": "Ev1"'
    signature = "v0=" + hex_hmac(SLACK_SECRET, b"v0:" + SLACK_TIMESTAMP.encode() + b":" + body)
    request = slack_request(body, signature, content_type="application/json")
    rejected(SLACK.verify(request, SLACK_SECRET, SLACK_NOW), RejectReason.INVALID_BODY)


# --------------------------------------------------------------------------------------
# GitHub — https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
# --------------------------------------------------------------------------------------

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
GITHUB = VERIFIERS["github"]
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def github_request(
    body: bytes, signature: str, content_type: str = "application/json", delivery: str = "d-1"
) -> WebhookRequest:
    return post(
        {
            "Content-Type": content_type,
            "X-Hub-Signature-256": signature,
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Event": "push",
        },
        body,
    )


def test_github_signature_matches_the_documented_test_values() -> None:
    assert github_signature(GITHUB_SECRET, b"Hello, World!") == GITHUB_SIGNATURE


def test_github_documented_example_passes_the_signature_and_fails_only_as_a_payload() -> None:
    """'Hello, World!' is GitHub's signing example, not a JSON event: the signature holds,
    then the body is refused, while a one-byte change fails the signature itself."""
    verdict = GITHUB.verify(github_request(b"Hello, World!", GITHUB_SIGNATURE), GITHUB_SECRET, NOW)
    rejected(verdict, RejectReason.INVALID_BODY)

    tampered = GITHUB.verify(github_request(b"Hello, World?", GITHUB_SIGNATURE), GITHUB_SECRET, NOW)
    rejected(tampered, RejectReason.SIGNATURE_MISMATCH)


def test_github_json_delivery_is_keyed_by_its_delivery_id() -> None:
    body = b'{"ref": "refs/heads/main", "commits": []}'
    request = github_request(body, "sha256=" + hex_hmac(GITHUB_SECRET, body), delivery="72d3162e")

    verdict = GITHUB.verify(request, GITHUB_SECRET, NOW)

    assert isinstance(verdict, Accepted)
    (event,) = verdict.events
    assert (event.event_id, event.event_type) == ("72d3162e", "push")
    assert event.payload == {"ref": "refs/heads/main", "commits": []}


def test_github_form_encoded_delivery_is_unwrapped() -> None:
    body = b"payload=%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%7D"
    request = github_request(
        body, "sha256=" + hex_hmac(GITHUB_SECRET, body), "application/x-www-form-urlencoded"
    )
    verdict = GITHUB.verify(request, GITHUB_SECRET, NOW)

    assert isinstance(verdict, Accepted)
    assert verdict.events[0].payload == {"zen": "Keep it logically awesome."}


@pytest.mark.parametrize(
    ("drop", "secret", "reason"),
    [
        ("X-Hub-Signature-256", GITHUB_SECRET, "missing_header"),
        ("X-GitHub-Delivery", GITHUB_SECRET, "missing_header"),
        (None, "not the secret", "signature_mismatch"),
    ],
)
def test_github_rejections(drop: str | None, secret: str, reason: str) -> None:
    body = b'{"zen": "Design for failure."}'
    headers = dict(github_request(body, "sha256=" + hex_hmac(GITHUB_SECRET, body)).headers)
    if drop is not None:
        headers.pop(drop.lower())
    rejected(GITHUB.verify(post(headers, body), secret, NOW), RejectReason(reason))


# --------------------------------------------------------------------------------------
# HubSpot — https://developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests
# SDK vectors: HubSpot/hubspot-api-python tests/spec/utils/test_signature.py and
# HubSpot/hubspot-api-ruby spec/helpers/signature_spec.rb
# --------------------------------------------------------------------------------------

HUBSPOT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
HUBSPOT_DOC_URI = "https://www.example.com/webhook_uri"
HUBSPOT_V1_BODY = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
    b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)
HUBSPOT_SDK_BODY = b"{'example_field':'example_value'}"
HUBSPOT = VERIFIERS["hubspot"]


def test_hubspot_signatures_match_the_documented_examples() -> None:
    assert (
        hubspot_signature_v1(HUBSPOT_SECRET, HUBSPOT_V1_BODY)
        == "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    )
    assert (
        hubspot_signature_v2(HUBSPOT_SECRET, "GET", HUBSPOT_DOC_URI, b"")
        == "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    )
    assert (
        hubspot_signature_v2(
            HUBSPOT_SECRET, "POST", HUBSPOT_DOC_URI, b'{"example_field":"example_value"}'
        )
        == "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"
    )


def test_hubspot_signatures_match_hubspots_own_sdk_vectors() -> None:
    assert (
        hubspot_signature_v1(HUBSPOT_SECRET, HUBSPOT_SDK_BODY)
        == "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
    )
    assert (
        hubspot_signature_v2(HUBSPOT_SECRET, "POST", HUBSPOT_DOC_URI, HUBSPOT_SDK_BODY)
        == "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"
    )
    for timestamp, expected in [
        ("15000000", "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="),
        ("1700000300000", "RnbPH7+UMKVkbV32P8bz450N4M56aPmcru1+D3kSDtw="),
    ]:
        signature = hubspot_signature_v3(
            HUBSPOT_SECRET, "POST", HUBSPOT_DOC_URI, HUBSPOT_SDK_BODY, timestamp
        )
        assert signature == expected


def hubspot_legacy(version: str, signature: str, body: bytes) -> WebhookRequest:
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature": signature,
        "X-HubSpot-Signature-Version": version,
    }
    return post(headers, body, url=HUBSPOT_DOC_URI)


def test_hubspot_documented_v1_batch_is_accepted() -> None:
    signature = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    verdict = HUBSPOT.verify(hubspot_legacy("v1", signature, HUBSPOT_V1_BODY), HUBSPOT_SECRET, NOW)

    assert isinstance(verdict, Accepted)
    (event,) = verdict.events
    assert event.event_id == "62515:12345:1:1564113600000"
    assert event.event_type == "contact.creation"
    assert event.payload["objectId"] == 123


def test_hubspot_documented_v2_post_is_accepted() -> None:
    signature = "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"
    body = b'{"example_field":"example_value"}'
    verdict = HUBSPOT.verify(hubspot_legacy("v2", signature, body), HUBSPOT_SECRET, NOW)

    assert isinstance(verdict, Accepted)
    assert verdict.events[0].payload == {"example_field": "example_value"}


def hubspot_v3(
    body: bytes, timestamp_ms: int, url: str = URL, signature: str | None = None
) -> WebhookRequest:
    timestamp = str(timestamp_ms)
    if signature is None:
        source = b"POST" + url.encode() + body + timestamp.encode()
        digest = hmac.new(HUBSPOT_SECRET.encode(), source, hashlib.sha256).digest()
        signature = base64.b64encode(digest).decode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
    }
    return post(headers, body, url=url)


def test_hubspot_sdk_v3_vector_passes_the_signature_and_fails_only_as_json() -> None:
    """HubSpot's SDK vector signs a body with single quotes, which is not JSON."""
    request = hubspot_v3(
        HUBSPOT_SDK_BODY,
        1700000300000,
        url=HUBSPOT_DOC_URI,
        signature="RnbPH7+UMKVkbV32P8bz450N4M56aPmcru1+D3kSDtw=",
    )
    now = at(1700000300 + 1)
    rejected(HUBSPOT.verify(request, HUBSPOT_SECRET, now), RejectReason.INVALID_BODY)
    rejected(HUBSPOT.verify(request, "another-client-secret", now), RejectReason.SIGNATURE_MISMATCH)


HUBSPOT_V3_BODY = (
    b'[{"eventId":100,"subscriptionId":7,"portalId":62515,"occurredAt":1772452800000,'
    b'"subscriptionType":"deal.propertyChange","attemptNumber":0,"objectId":9,'
    b'"propertyName":"dealstage","propertyValue":"closedwon"}]'
)
NOW_MS = int(NOW.timestamp() * 1000)


def test_hubspot_v3_delivery_is_accepted() -> None:
    verdict = HUBSPOT.verify(hubspot_v3(HUBSPOT_V3_BODY, NOW_MS - 1000), HUBSPOT_SECRET, NOW)

    assert isinstance(verdict, Accepted)
    assert verdict.events[0].event_id == "62515:7:100:1772452800000"
    assert verdict.events[0].event_type == "deal.propertyChange"


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (hubspot_v3(HUBSPOT_V3_BODY, NOW_MS - 301_000), "stale_timestamp"),
        (hubspot_v3(HUBSPOT_V3_BODY, NOW_MS + 301_000), "future_timestamp"),
        (hubspot_v3(HUBSPOT_V3_BODY, NOW_MS, signature="bm90IGl0"), "signature_mismatch"),
        (
            post(dict(hubspot_v3(HUBSPOT_V3_BODY, NOW_MS).headers), HUBSPOT_V3_BODY, URL + "?x=1"),
            "signature_mismatch",
        ),
    ],
    ids=["old", "future", "bad-signature", "other-url"],
)
def test_hubspot_v3_rejections(request_: WebhookRequest, reason: str) -> None:
    rejected(HUBSPOT.verify(request_, HUBSPOT_SECRET, NOW), RejectReason(reason))


def test_hubspot_v3_tampered_body_and_missing_timestamp_are_refused() -> None:
    request = hubspot_v3(HUBSPOT_V3_BODY, NOW_MS)
    tampered = post(dict(request.headers), HUBSPOT_V3_BODY.replace(b"closedwon", b"closedlost"))
    rejected(HUBSPOT.verify(tampered, HUBSPOT_SECRET, NOW), RejectReason.SIGNATURE_MISMATCH)

    headers = dict(request.headers)
    headers.pop("x-hubspot-request-timestamp")
    verdict = HUBSPOT.verify(post(headers, HUBSPOT_V3_BODY), HUBSPOT_SECRET, NOW)
    rejected(verdict, RejectReason.MISSING_HEADER)


def test_hubspot_v3_decodes_only_the_documented_characters_of_the_uri() -> None:
    encoded = "https://func.example.net/api/hook?src=hs%3Aapp%2Fv3&x=%28a%29%2A%2C%3B%21%24%27%40%3F&sp=a%20b"
    assert hubspot_v3_uri(encoded) == (
        "https://func.example.net/api/hook?src=hs:app/v3&x=(a)*,;!$'@?&sp=a%20b"
    )
    # HubSpot signs the decoded form; the request arrives with the encoded one.
    signed = hubspot_v3(HUBSPOT_V3_BODY, NOW_MS, url=hubspot_v3_uri(encoded))
    arrived = post(dict(signed.headers), HUBSPOT_V3_BODY, url=encoded)
    assert isinstance(HUBSPOT.verify(arrived, HUBSPOT_SECRET, NOW), Accepted)


def test_hubspot_v3_takes_precedence_over_a_legacy_signature() -> None:
    valid_v1 = hubspot_signature_v1(HUBSPOT_SECRET, HUBSPOT_V3_BODY)
    headers = dict(hubspot_v3(HUBSPOT_V3_BODY, NOW_MS, signature="bm90IGl0").headers)
    headers |= {"X-HubSpot-Signature": valid_v1, "X-HubSpot-Signature-Version": "v1"}
    verdict = HUBSPOT.verify(post(headers, HUBSPOT_V3_BODY), HUBSPOT_SECRET, NOW)
    rejected(verdict, RejectReason.SIGNATURE_MISMATCH)


def test_hubspot_legacy_versions_can_be_refused_and_unknown_versions_are() -> None:
    valid_v1 = hubspot_legacy(
        "v1", hubspot_signature_v1(HUBSPOT_SECRET, HUBSPOT_V1_BODY), HUBSPOT_V1_BODY
    )
    v3_only = HubSpotScheme(allow_legacy_versions=False)
    rejected(v3_only.verify(valid_v1, HUBSPOT_SECRET, NOW), RejectReason.MISSING_HEADER)

    unknown = hubspot_legacy("v9", "0" * 64, HUBSPOT_V1_BODY)
    verdict = HUBSPOT.verify(unknown, HUBSPOT_SECRET, NOW)
    rejected(verdict, RejectReason.UNSUPPORTED_SIGNATURE_VERSION)


# --------------------------------------------------------------------------------------
# Zoom — https://developers.zoom.us/docs/api/webhooks/
# --------------------------------------------------------------------------------------

ZOOM_SECRET = "zoom-secret-token"
ZOOM = VERIFIERS["zoom"]
ZOOM_TS = str(int(NOW.timestamp()))


def zoom_request(
    body: bytes, secret: str = ZOOM_SECRET, timestamp: str = ZOOM_TS
) -> WebhookRequest:
    signature = "v0=" + hex_hmac(secret, f"v0:{timestamp}:".encode() + body)
    return post(
        {
            "Content-Type": "application/json",
            "x-zm-request-timestamp": timestamp,
            "x-zm-signature": signature,
        },
        body,
    )


def test_zoom_url_validation_answers_with_the_encrypted_token() -> None:
    # The challenge body as Zoom's docs show it; Zoom does not publish the secret behind its
    # sample encryptedToken, so the expected value is computed here with hmac directly.
    body = b'{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}'

    verdict = ZOOM.verify(zoom_request(body), ZOOM_SECRET, NOW)

    assert isinstance(verdict, Handshake)
    assert (verdict.response.status, verdict.response.content_type) == (200, "application/json")
    assert json.loads(verdict.response.body) == {
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": hex_hmac(ZOOM_SECRET, b"qgg8vlvZRS6UYooatFL8Aw"),
    }


ZOOM_EVENT = json.dumps(
    {
        "event": "meeting.started",
        "event_ts": 1626230691572,
        "payload": {
            "account_id": "AAAAAABBBB",
            "object": {"id": "1234567890", "uuid": "czLF6FFFoQOKgAB99DlDb9g==", "topic": "QBR"},
        },
    }
).encode()


def test_zoom_event_is_accepted_with_a_retry_stable_id() -> None:
    assert zoom_signature(ZOOM_SECRET, ZOOM_TS, ZOOM_EVENT) == zoom_request(ZOOM_EVENT).header(
        "x-zm-signature"
    )
    verdict = ZOOM.verify(zoom_request(ZOOM_EVENT), ZOOM_SECRET, NOW)

    assert isinstance(verdict, Accepted)
    (event,) = verdict.events
    assert event.event_id == "meeting.started:1626230691572:czLF6FFFoQOKgAB99DlDb9g=="
    assert event.event_type == "meeting.started"


@pytest.mark.parametrize(
    ("request_", "now", "reason"),
    [
        (zoom_request(ZOOM_EVENT, secret="other"), NOW, "signature_mismatch"),
        (zoom_request(ZOOM_EVENT), NOW + timedelta(seconds=301), "stale_timestamp"),
        (zoom_request(ZOOM_EVENT), NOW - timedelta(seconds=301), "future_timestamp"),
        (post({"Content-Type": "application/json"}, ZOOM_EVENT), NOW, "missing_header"),
    ],
    ids=["wrong-secret", "old", "future", "unsigned"],
)
def test_zoom_rejections(request_: WebhookRequest, now: datetime, reason: str) -> None:
    rejected(ZOOM.verify(request_, ZOOM_SECRET, now), RejectReason(reason))


def test_zoom_tampered_event_and_unsigned_challenge_are_refused() -> None:
    tampered = post(dict(zoom_request(ZOOM_EVENT).headers), ZOOM_EVENT.replace(b"QBR", b"RBQ"))
    rejected(ZOOM.verify(tampered, ZOOM_SECRET, NOW), RejectReason.SIGNATURE_MISMATCH)

    challenge = b'{"payload":{"plainToken":"abc"},"event":"endpoint.url_validation"}'
    unsigned = post({"Content-Type": "application/json"}, challenge)
    rejected(ZOOM.verify(unsigned, ZOOM_SECRET, NOW), RejectReason.MISSING_HEADER)


# --------------------------------------------------------------------------------------
# Microsoft Graph — https://learn.microsoft.com/graph/change-notifications-delivery-webhooks
# --------------------------------------------------------------------------------------

GRAPH = VERIFIERS["msgraph"]
GRAPH_CLIENT_STATE = "secretClientValue"
GRAPH_NOTIFICATION = {
    "value": [
        {
            "id": "lsgTZMr9KwAAA",
            "subscriptionId": "{subscription_guid}",
            "subscriptionExpirationDateTime": "2016-03-19T22:11:09.952Z",
            "clientState": "secretClientValue",
            "changeType": "created",
            "resource": "users/{user_guid}@{tenant_guid}/messages/{long_id_string}",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": "Users/{user_guid}@{tenant_guid}/Messages/{long_id_string}",
                "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"',
                "id": "{long_id_string}",
            },
        }
    ]
}


def graph_request(document: object, content_type: str = "application/json") -> WebhookRequest:
    return post({"Content-Type": content_type}, json.dumps(document).encode())


def test_graph_validation_echoes_the_decoded_token_as_plain_text() -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 9f2a"
    url = (
        URL
        + "?validationToken=Validation%3A+Testing+client+application+reachability+for+subscription+Request-Id%3A+9f2a"
    )
    request = post({"Content-Type": "text/plain; charset=utf-8"}, b"", url=url)

    verdict = GRAPH.verify(request, GRAPH_CLIENT_STATE, NOW)

    assert isinstance(verdict, Handshake)
    assert verdict.response.status == 200
    assert verdict.response.content_type == "text/plain; charset=utf-8"
    assert verdict.response.body == token.encode()


def test_graph_validation_token_is_html_escaped_and_bounded() -> None:
    script = post({}, b"", url=URL + "?validationToken=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    verdict = GRAPH.verify(script, GRAPH_CLIENT_STATE, NOW)
    assert isinstance(verdict, Handshake)
    assert verdict.response.body == b"&lt;script&gt;alert(1)&lt;/script&gt;"

    too_long = post({}, b"", url=URL + "?validationToken=" + "a" * 4097)
    rejected(GRAPH.verify(too_long, GRAPH_CLIENT_STATE, NOW), RejectReason.INVALID_BODY)


def test_graph_documented_notification_is_accepted_without_its_client_state() -> None:
    verdict = GRAPH.verify(graph_request(GRAPH_NOTIFICATION), GRAPH_CLIENT_STATE, NOW)

    assert isinstance(verdict, Accepted)
    assert verdict.response.status == 202
    (event,) = verdict.events
    assert event.event_type == "created"
    assert event.event_id == (
        "{subscription_guid}|created|users/{user_guid}@{tenant_guid}/messages/{long_id_string}"
        "|lsgTZMr9KwAAA"
    )
    assert "clientState" not in event.payload
    assert event.payload["tenantId"] == "84bd8158-6d4d-4958-8b9f-9d6445542f95"


def test_graph_refuses_a_wrong_missing_or_mixed_client_state() -> None:
    rejected(
        GRAPH.verify(graph_request(GRAPH_NOTIFICATION), "anotherClientState", NOW),
        RejectReason.CLIENT_STATE_MISMATCH,
    )
    item = dict(GRAPH_NOTIFICATION["value"][0])
    item.pop("clientState")
    rejected(
        GRAPH.verify(graph_request({"value": [item]}), GRAPH_CLIENT_STATE, NOW),
        RejectReason.CLIENT_STATE_MISMATCH,
    )
    mixed = {"value": [GRAPH_NOTIFICATION["value"][0], item | {"clientState": "other"}]}
    rejected(
        GRAPH.verify(graph_request(mixed), GRAPH_CLIENT_STATE, NOW),
        RejectReason.CLIENT_STATE_MISMATCH,
    )


def test_graph_refuses_truncated_json_and_other_content_types() -> None:
    truncated = post(
        {"Content-Type": "application/json"}, json.dumps(GRAPH_NOTIFICATION)[:-3].encode()
    )
    rejected(GRAPH.verify(truncated, GRAPH_CLIENT_STATE, NOW), RejectReason.INVALID_BODY)
    as_text = graph_request(GRAPH_NOTIFICATION, "text/plain")
    rejected(GRAPH.verify(as_text, GRAPH_CLIENT_STATE, NOW), RejectReason.UNSUPPORTED_CONTENT_TYPE)


# --------------------------------------------------------------------------------------
# Google Drive — https://developers.google.com/workspace/drive/api/guides/push
# --------------------------------------------------------------------------------------

GDRIVE = VERIFIERS["gdrive"]
GDRIVE_TOKEN = "398348u3tu83ut8uu38"


def gdrive_request(**overrides: str) -> WebhookRequest:
    """The documented files-resource `update` notification (values padded as in the docs)."""
    headers = {
        "Content-Type": "application/json; utf-8",
        "Content-Length": "0",
        "X-Goog-Channel-ID": "4ba78bf0-6a47-11e2-bcfd-0800200c9a66",
        "X-Goog-Channel-Token": GDRIVE_TOKEN,
        "X-Goog-Channel-Expiration": "Tue, 19 Nov 2013 01:13:52 GMT",
        "X-Goog-Resource-ID": " ret08u3rv24htgh289g",
        "X-Goog-Resource-URI": "https://www.googleapis.com/drive/v3/files/ret08u3rv24htgh289g",
        "X-Goog-Resource-State": " update",
        "X-Goog-Changed": "content,properties",
        "X-Goog-Message-Number": "10",
    }
    return post(headers | overrides, b"")


def test_gdrive_sync_message_is_acknowledged_with_nothing_to_do() -> None:
    request = gdrive_request(**{"X-Goog-Resource-State": "sync", "X-Goog-Message-Number": "1"})
    verdict = GDRIVE.verify(request, GDRIVE_TOKEN, NOW)

    assert isinstance(verdict, Handshake)
    assert (verdict.response.status, verdict.response.body) == (200, b"")
    assert verdict.details["resourceId"] == "ret08u3rv24htgh289g"
    assert verdict.details["resourceState"] == "sync"
    assert verdict.details["messageNumber"] == "1"


def test_gdrive_documented_update_is_accepted_with_channel_and_message_number() -> None:
    verdict = GDRIVE.verify(gdrive_request(), GDRIVE_TOKEN, NOW)

    assert isinstance(verdict, Accepted)
    (event,) = verdict.events
    assert event.event_id == "4ba78bf0-6a47-11e2-bcfd-0800200c9a66:10"
    assert event.event_type == "update"
    assert event.payload == {
        "channelId": "4ba78bf0-6a47-11e2-bcfd-0800200c9a66",
        "resourceId": "ret08u3rv24htgh289g",
        "resourceState": "update",
        "messageNumber": "10",
        "resourceUri": "https://www.googleapis.com/drive/v3/files/ret08u3rv24htgh289g",
        "changed": "content,properties",
        "channelExpiration": "Tue, 19 Nov 2013 01:13:52 GMT",
    }


def test_gdrive_rejections() -> None:
    rejected(
        GDRIVE.verify(gdrive_request(), "245t1234tt83trrt333", NOW),
        RejectReason.CHANNEL_TOKEN_MISMATCH,
    )
    rejected(
        GDRIVE.verify(gdrive_request(**{"X-Goog-Channel-Token": ""}), GDRIVE_TOKEN, NOW),
        RejectReason.MISSING_HEADER,
    )
    rejected(
        GDRIVE.verify(gdrive_request(**{"X-Goog-Message-Number": "ten"}), GDRIVE_TOKEN, NOW),
        RejectReason.MALFORMED_HEADER,
    )
    rejected(
        GDRIVE.verify(gdrive_request(**{"X-Goog-Resource-ID": ""}), GDRIVE_TOKEN, NOW),
        RejectReason.MISSING_HEADER,
    )


# --------------------------------------------------------------------------------------
# Notion — https://developers.notion.com/reference/webhooks
# --------------------------------------------------------------------------------------

NOTION = VERIFIERS["notion"]
NOTION_TOKEN = "secret_tMrlL1qK5vuQAh1b6cZGhFChZTSYJlce98V0pYn7yBl"
NOTION_EVENT = json.dumps(
    {
        "id": "367cba44-b6f3-4c92-81e7-6a2e9659efd4",
        "timestamp": "2024-12-05T23:55:34.285Z",
        "workspace_id": "13950b26-c203-4f3b-b97d-93ec06319565",
        "subscription_id": "29d75c0d-5546-4414-8459-7b7a92f1fc4b",
        "integration_id": "0ef2e755-4912-8096-91c1-00376a88a5ca",
        "type": "page.created",
        "attempt_number": 1,
        "entity": {"id": "153104cd-477e-809d-8dc4-ff2d96ae3090", "type": "page"},
        "data": {"parent": {"id": "13950b26-c203-4f3b-b97d-93ec06319565", "type": "space"}},
    }
).encode()


def notion_request(body: bytes, signature: str | None) -> WebhookRequest:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Notion-Signature"] = signature
    return post(headers, body)


def test_notion_signature_matches_the_documented_example() -> None:
    body = json.dumps({"verification_token": NOTION_TOKEN}, separators=(",", ":")).encode()
    assert (
        notion_signature(NOTION_TOKEN, body)
        == "sha256=461e8cbcba8a75c3edd866f0e71280f5a85cbf21eff040ebd10fe266df38a735"
    )


def test_notion_verification_request_surfaces_the_token_as_pending() -> None:
    body = b'{\n  "verification_token": "' + NOTION_TOKEN.encode() + b'"\n}'
    verdict = NOTION.verify(notion_request(body, None), None, NOW)

    assert isinstance(verdict, Handshake)
    assert (verdict.response.status, verdict.response.body) == (200, b"")
    assert verdict.pending_secret == NOTION_TOKEN
    assert NOTION_TOKEN not in repr(verdict)


def test_notion_event_naming_a_verification_token_still_needs_its_signature() -> None:
    body = json.dumps({"verification_token": "secret_x", "type": "page.created", "id": "1"})
    verdict = NOTION.verify(notion_request(body.encode(), None), NOTION_TOKEN, NOW)
    rejected(verdict, RejectReason.MISSING_HEADER)


def test_notion_signed_event_is_accepted() -> None:
    signature = "sha256=" + hex_hmac(NOTION_TOKEN, NOTION_EVENT)
    verdict = NOTION.verify(notion_request(NOTION_EVENT, signature), NOTION_TOKEN, NOW)

    assert isinstance(verdict, Accepted)
    (event,) = verdict.events
    assert (event.event_id, event.event_type) == (
        "367cba44-b6f3-4c92-81e7-6a2e9659efd4",
        "page.created",
    )
    assert event.payload["entity"] == {"id": "153104cd-477e-809d-8dc4-ff2d96ae3090", "type": "page"}


@pytest.mark.parametrize(
    ("body", "signature", "secret", "reason"),
    [
        (
            NOTION_EVENT.replace(b"page.created", b"page.deleted"),
            "good",
            NOTION_TOKEN,
            "signature_mismatch",
        ),
        (NOTION_EVENT, "good", "secret_other", "signature_mismatch"),
        (NOTION_EVENT, None, NOTION_TOKEN, "missing_header"),
        (NOTION_EVENT, "good", None, "secret_not_configured"),
        (NOTION_EVENT[:-10], "good", NOTION_TOKEN, "invalid_body"),
    ],
    ids=["tampered", "wrong-token", "unsigned", "not-yet-verified", "truncated"],
)
def test_notion_rejections(
    body: bytes, signature: str | None, secret: str | None, reason: str
) -> None:
    if signature == "good":
        signature = "sha256=" + hex_hmac(NOTION_TOKEN, NOTION_EVENT)
    rejected(NOTION.verify(notion_request(body, signature), secret, NOW), RejectReason(reason))


# --------------------------------------------------------------------------------------
# Salesforce outbound messages — structure from
# https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_wsdl.htm
# --------------------------------------------------------------------------------------

SALESFORCE = VERIFIERS["salesforce"]
SALESFORCE_ORG = "00D5e000000KQ2eEAG"
SALESFORCE_MESSAGE = (FIXTURES / "salesforce_outbound_message.xml").read_bytes()


def soap(body: bytes, content_type: str = "text/xml; charset=utf-8") -> WebhookRequest:
    return post({"Content-Type": content_type, "SOAPAction": '""'}, body)


@pytest.mark.parametrize("registered", [SALESFORCE_ORG, SALESFORCE_ORG[:15]], ids=["18", "15"])
def test_salesforce_message_from_the_registered_org_is_accepted_and_acked(registered: str) -> None:
    verdict = SALESFORCE.verify(soap(SALESFORCE_MESSAGE), registered, NOW)

    assert isinstance(verdict, Accepted)
    assert verdict.response.status == 200
    assert verdict.response.content_type == "text/xml; charset=utf-8"
    assert verdict.response.body == (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        b'<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
        b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
    )
    assert [event.event_id for event in verdict.events] == [
        "04l5e00000Gx7QzAAJ",
        "04l5e00000Gx7R0AAJ",
    ]
    first = verdict.events[0]
    assert first.event_type == "Opportunity"
    assert first.payload == {
        "organizationId": SALESFORCE_ORG,
        "actionId": "04k5e000000CaRkAAK",
        "notificationId": "04l5e00000Gx7QzAAJ",
        "sObjectType": "Opportunity",
        "sObjectId": "0065e00000ZkM3hAAF",
        "fields": {
            "Id": "0065e00000ZkM3hAAF",
            "AccountId": "0015e00000ZkM3hAAF",
            "Amount": "120000.0",
            "CloseDate": "2026-04-03",
            "Name": "Express Logistics SLA",
            "NextStep": None,
            "StageName": "Perception Analysis",
        },
    }
    assert all(b"Session" not in json.dumps(e.payload).encode() for e in verdict.events)


def test_salesforce_ack_envelope_parses_as_the_documented_notifications_response() -> None:
    from defusedxml.ElementTree import fromstring

    envelope = fromstring(ACK_ENVELOPE)
    ack = envelope.find(
        "{http://schemas.xmlsoap.org/soap/envelope/}Body/"
        "{http://soap.sforce.com/2005/09/outbound}notificationsResponse/"
        "{http://soap.sforce.com/2005/09/outbound}Ack"
    )
    assert ack is not None
    assert ack.text == "true"


def test_salesforce_message_from_another_org_is_refused() -> None:
    verdict = SALESFORCE.verify(soap(SALESFORCE_MESSAGE), "00D000000000062EAA", NOW)
    detail = rejected(verdict, RejectReason.ORGANIZATION_MISMATCH).detail
    assert SALESFORCE_ORG not in detail


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">&lol2;</soapenv:Envelope>'
)
PLAIN_DOCTYPE = SALESFORCE_MESSAGE.replace(
    b'<?xml version="1.0" encoding="UTF-8"?>',
    b'<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE soapenv:Envelope>',
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">&xxe;</soapenv:Envelope>'
)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (BILLION_LAUGHS, "text/xml", "invalid_body"),
        (EXTERNAL_ENTITY, "text/xml", "invalid_body"),
        (PLAIN_DOCTYPE, "text/xml", "invalid_body"),
        (SALESFORCE_MESSAGE[:-40], "text/xml", "invalid_body"),
        (b"<Envelope/>", "text/xml", "invalid_body"),
        (SALESFORCE_MESSAGE.replace(b"00D5e000000KQ2eEAG", b""), "text/xml", "invalid_body"),
        (SALESFORCE_MESSAGE, "application/json", "unsupported_content_type"),
    ],
    ids=[
        "entity-expansion",
        "external-entity",
        "any-dtd",
        "truncated",
        "not-soap",
        "no-org-id",
        "json",
    ],
)
def test_salesforce_rejections(body: bytes, content_type: str, reason: str) -> None:
    rejected(SALESFORCE.verify(soap(body, content_type), SALESFORCE_ORG, NOW), RejectReason(reason))


def test_salesforce_registration_must_hold_an_org_id() -> None:
    verdict = SALESFORCE.verify(soap(SALESFORCE_MESSAGE), "not-an-org-id", NOW)
    rejected(verdict, RejectReason.SECRET_NOT_CONFIGURED)


# --------------------------------------------------------------------------------------
# Generic HMAC-SHA256 (our own scheme, documented in core/webhooks/schemes/generic_hmac.py)
# --------------------------------------------------------------------------------------

HMAC_SCHEME = VERIFIERS["hmac"]
HMAC_SECRET = "shared-secret"
HMAC_BODY = b'{"id": "evt-42", "type": "deal.updated", "amount": 100}'
HMAC_TS = str(int(NOW.timestamp()))


def generic(
    body: bytes = HMAC_BODY, timestamp: str | None = HMAC_TS, signature: str | None = None
) -> WebhookRequest:
    signed = body if timestamp is None else timestamp.encode() + b"." + body
    headers = {
        "Content-Type": "application/json",
        "X-Signature": signature or "sha256=" + hex_hmac(HMAC_SECRET, signed),
    }
    if timestamp is not None:
        headers["X-Timestamp"] = timestamp
    return post(headers, body)


@pytest.mark.parametrize("timestamp", [HMAC_TS, None], ids=["timestamped", "body-only"])
def test_generic_hmac_accepts_both_documented_forms(timestamp: str | None) -> None:
    assert generic(timestamp=timestamp).header("X-Signature") == hmac_signature(
        HMAC_SECRET, HMAC_BODY, timestamp
    )
    verdict = HMAC_SCHEME.verify(generic(timestamp=timestamp), HMAC_SECRET, NOW)

    assert isinstance(verdict, Accepted)
    assert (verdict.events[0].event_id, verdict.events[0].event_type) == ("evt-42", "deal.updated")


def test_generic_hmac_rejections() -> None:
    stale = generic(timestamp=str(int(NOW.timestamp()) - 301))
    rejected(HMAC_SCHEME.verify(stale, HMAC_SECRET, NOW), RejectReason.STALE_TIMESTAMP)
    future = generic(timestamp=str(int(NOW.timestamp()) + 301))
    rejected(HMAC_SCHEME.verify(future, HMAC_SECRET, NOW), RejectReason.FUTURE_TIMESTAMP)

    tampered = post(dict(generic().headers), HMAC_BODY.replace(b"100", b"999"))
    rejected(HMAC_SCHEME.verify(tampered, HMAC_SECRET, NOW), RejectReason.SIGNATURE_MISMATCH)
    rejected(HMAC_SCHEME.verify(generic(), "other", NOW), RejectReason.SIGNATURE_MISMATCH)

    stripped = dict(generic().headers)
    stripped.pop("x-timestamp")
    rejected(
        HMAC_SCHEME.verify(post(stripped, HMAC_BODY), HMAC_SECRET, NOW),
        RejectReason.SIGNATURE_MISMATCH,
    )

    strict = HmacSha256Scheme(require_timestamp=True)
    rejected(strict.verify(generic(timestamp=None), HMAC_SECRET, NOW), RejectReason.MISSING_HEADER)
    rejected(
        HMAC_SCHEME.verify(generic(signature="md5=abc"), HMAC_SECRET, NOW),
        RejectReason.MALFORMED_HEADER,
    )


def test_generic_hmac_event_id_header_wins_over_the_body() -> None:
    headers = dict(generic().headers) | {"X-Event-Id": "delivery-7"}
    verdict = HMAC_SCHEME.verify(post(headers, HMAC_BODY), HMAC_SECRET, NOW)
    assert isinstance(verdict, Accepted)
    assert verdict.events[0].event_id == "delivery-7"


# --------------------------------------------------------------------------------------
# What every scheme shares
# --------------------------------------------------------------------------------------


def test_the_registry_holds_every_scheme_by_its_registration_name() -> None:
    assert set(VERIFIERS) == {
        "slack",
        "github",
        "hubspot",
        "zoom",
        "msgraph",
        "gdrive",
        "notion",
        "salesforce",
        "hmac",
    }
    assert all(scheme.name == name for name, scheme in VERIFIERS.items())


def test_verify_webhook_dispatches_and_names_unknown_schemes() -> None:
    assert isinstance(verify_webhook("slack", slack_request(), SLACK_SECRET, SLACK_NOW), Accepted)
    with pytest.raises(ValueError, match="'stripe'"):
        verify_webhook("stripe", slack_request(), SLACK_SECRET, SLACK_NOW)


@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_every_scheme_refuses_other_methods_and_oversized_bodies(name: str) -> None:
    scheme = VERIFIERS[name]
    get = post({"Content-Type": "application/json"}, b"{}", method="GET")
    rejected(scheme.verify(get, "secret", NOW), RejectReason.METHOD_NOT_ALLOWED)
    huge = post({"Content-Type": "application/json"}, b" " * (MAX_BODY_BYTES + 1))
    rejected(scheme.verify(huge, "secret", NOW), RejectReason.BODY_TOO_LARGE)


def test_a_naive_clock_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SLACK.verify(slack_request(), SLACK_SECRET, datetime(2026, 3, 2, 12, 0))


def test_a_body_that_is_not_bytes_is_refused_at_construction() -> None:
    with pytest.raises(TypeError, match=r"WebhookRequest\.body"):
        WebhookRequest("POST", URL, {}, "text")  # type: ignore[arg-type]
