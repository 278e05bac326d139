"""Slack request signing (Events API, slash commands, interactivity).

https://api.slack.com/authentication/verifying-requests-from-slack :
X-Slack-Signature = "v0=" + hex(HMAC-SHA256(signing secret, "v0:{X-Slack-Request-Timestamp}:{body}")),
requests older than five minutes are refused. The Events API `url_verification` request is
signed too and is answered with its `challenge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from core.webhooks.schemes.base import (
    DEFAULT_TOLERANCE_SECONDS,
    FORM,
    JSON,
    TEXT_PLAIN,
    Accepted,
    DeliveryRejectedError,
    Handshake,
    RejectReason,
    WebhookEvent,
    WebhookRequest,
    WebhookResponse,
    WebhookScheme,
    WebhookVerdict,
    check_timestamp,
    hmac_sha256_hex,
    parse_json_object,
    require_equal,
    require_header,
    require_media_type,
    require_secret,
    require_str,
    without_keys,
)

SIGNATURE_HEADER = "X-Slack-Signature"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
# Slack's deprecated verification token rides in every body; it is a credential, not data.
_CREDENTIAL_FIELDS = ("token",)


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    return "v0=" + hmac_sha256_hex(signing_secret, b"v0:" + timestamp.encode("ascii") + b":" + body)


@dataclass(frozen=True, slots=True)
class SlackScheme(WebhookScheme):
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS
    name: ClassVar[str] = "slack"

    def _verify(self, request: WebhookRequest, secret: str | None, now: datetime) -> WebhookVerdict:
        media_type = require_media_type(request, JSON, FORM)
        signing_secret = require_secret(secret)
        timestamp = require_header(request, TIMESTAMP_HEADER)
        check_timestamp(timestamp, now, self.tolerance_seconds, TIMESTAMP_HEADER)
        received = require_header(request, SIGNATURE_HEADER)
        expected = slack_signature(signing_secret, timestamp, request.body)
        require_equal(expected, received, RejectReason.SIGNATURE_MISMATCH, SIGNATURE_HEADER)
        if media_type == FORM:
            return Accepted(self.name, (_form_event(request.body),))
        document = parse_json_object(request.body)
        if document.get("type") == "url_verification":
            challenge = require_str(document, "challenge", "body")
            return Handshake(self.name, WebhookResponse(200, TEXT_PLAIN, challenge.encode("utf-8")))
        return Accepted(self.name, (_events_api_event(document),))


def _events_api_event(document: dict[str, Any]) -> WebhookEvent:
    envelope_type = require_str(document, "type", "body")
    if envelope_type != "event_callback":
        return WebhookEvent(None, envelope_type, without_keys(document, *_CREDENTIAL_FIELDS))
    event = document.get("event")
    if not isinstance(event, dict):
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, "body.event is missing or not an object"
        )
    return WebhookEvent(
        require_str(document, "event_id", "body"),
        require_str(event, "type", "body.event"),
        without_keys(document, *_CREDENTIAL_FIELDS),
    )


def _form_event(body: bytes) -> WebhookEvent:
    """Slash commands post their fields; interactions post one `payload` field of JSON."""
    try:
        fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
    except (UnicodeDecodeError, ValueError) as error:
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, "body is not a valid form encoding"
        ) from error
    if "payload" in fields:
        payload = parse_json_object(fields["payload"].encode("utf-8"))
        trigger_id = payload.get("trigger_id")
        return WebhookEvent(
            trigger_id if isinstance(trigger_id, str) else None,
            require_str(payload, "type", "payload"),
            without_keys(payload, *_CREDENTIAL_FIELDS),
        )
    require_str(fields, "command", "body")
    return WebhookEvent(
        fields.get("trigger_id") or None,
        "slash_command",
        without_keys(fields, *_CREDENTIAL_FIELDS),
    )
