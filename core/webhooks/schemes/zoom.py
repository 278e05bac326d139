"""Zoom webhook verification and URL validation.

https://developers.zoom.us/docs/api/webhooks/ :
x-zm-signature = "v0=" + hex(HMAC-SHA256(secret token, "v0:{x-zm-request-timestamp}:{body}")).
The `endpoint.url_validation` challenge (sent on setup and every 72 hours) is answered with
{"plainToken": ..., "encryptedToken": hex(HMAC-SHA256(secret token, plainToken))}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from core.webhooks.schemes.base import (
    DEFAULT_TOLERANCE_SECONDS,
    JSON,
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
)

SIGNATURE_HEADER = "x-zm-signature"
TIMESTAMP_HEADER = "x-zm-request-timestamp"
URL_VALIDATION_EVENT = "endpoint.url_validation"


def zoom_signature(secret_token: str, timestamp: str, body: bytes) -> str:
    return "v0=" + hmac_sha256_hex(secret_token, b"v0:" + timestamp.encode("ascii") + b":" + body)


def zoom_url_validation_response(secret_token: str, plain_token: str) -> dict[str, str]:
    return {
        "plainToken": plain_token,
        "encryptedToken": hmac_sha256_hex(secret_token, plain_token.encode("utf-8")),
    }


@dataclass(frozen=True, slots=True)
class ZoomScheme(WebhookScheme):
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS
    name: ClassVar[str] = "zoom"

    def _verify(self, request: WebhookRequest, secret: str | None, now: datetime) -> WebhookVerdict:
        require_media_type(request, JSON)
        secret_token = require_secret(secret)
        timestamp = require_header(request, TIMESTAMP_HEADER)
        check_timestamp(timestamp, now, self.tolerance_seconds, TIMESTAMP_HEADER)
        received = require_header(request, SIGNATURE_HEADER)
        expected = zoom_signature(secret_token, timestamp, request.body)
        require_equal(expected, received, RejectReason.SIGNATURE_MISMATCH, SIGNATURE_HEADER)
        document = parse_json_object(request.body)
        event = require_str(document, "event", "body")
        payload = document.get("payload")
        if not isinstance(payload, dict):
            raise DeliveryRejectedError(
                RejectReason.INVALID_BODY, "body.payload is missing or not an object"
            )
        if event == URL_VALIDATION_EVENT:
            plain_token = require_str(payload, "plainToken", "body.payload")
            answer = zoom_url_validation_response(secret_token, plain_token)
            body = json.dumps(answer, separators=(",", ":")).encode("utf-8")
            return Handshake(self.name, WebhookResponse(200, JSON, body))
        event_id = _event_id(event, document, payload)
        return Accepted(self.name, (WebhookEvent(event_id, event, document),))


def _event_id(event: str, document: dict[str, Any], payload: dict[str, Any]) -> str | None:
    """Zoom gives no delivery id; the event name, its millisecond `event_ts` and the object's
    id are what a retry repeats."""
    event_ts = document.get("event_ts")
    if not isinstance(event_ts, int):
        return None
    subject = payload.get("object")
    object_id = None
    if isinstance(subject, dict):
        object_id = subject.get("uuid") or subject.get("id")
    return ":".join(str(part) for part in (event, event_ts, object_id) if part is not None)
