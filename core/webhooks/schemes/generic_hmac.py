"""Our own scheme for sources without one of their own (internal tools, custom senders).

The sender holds the registration's secret and sends, with `Content-Type: application/json`:

* `X-Signature: sha256=<hex>`, where hex = HMAC-SHA256(secret, signed bytes), lower-case hex;
* optionally `X-Timestamp: <unix seconds>`. When present the signed bytes are
  "{X-Timestamp}.{raw body}" and the timestamp must lie within the tolerance (five minutes by
  default) of the receiver's clock; when absent the signed bytes are the raw body alone.
  A sender that always sends the timestamp gets replay protection, and stripping the header
  cannot downgrade it, since its signatures never cover the body alone. A registration can
  insist on it with `require_timestamp=True`;
* optionally `X-Event-Id` (the idempotency key; else the body's top-level "id") and
  `X-Event-Type` (else the body's top-level "type").

The body is one JSON object: one event per delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from core.webhooks.schemes.base import (
    DEFAULT_TOLERANCE_SECONDS,
    JSON,
    Accepted,
    DeliveryRejectedError,
    RejectReason,
    WebhookEvent,
    WebhookRequest,
    WebhookScheme,
    WebhookVerdict,
    check_timestamp,
    hmac_sha256_hex,
    parse_json_object,
    require_equal,
    require_header,
    require_media_type,
    require_secret,
)

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"
EVENT_ID_HEADER = "X-Event-Id"
EVENT_TYPE_HEADER = "X-Event-Type"
SIGNATURE_PREFIX = "sha256="


def hmac_signature(secret: str, body: bytes, timestamp: str | None = None) -> str:
    signed = body if timestamp is None else timestamp.encode("ascii") + b"." + body
    return SIGNATURE_PREFIX + hmac_sha256_hex(secret, signed)


@dataclass(frozen=True, slots=True)
class HmacSha256Scheme(WebhookScheme):
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS
    require_timestamp: bool = False
    name: ClassVar[str] = "hmac"

    def _verify(self, request: WebhookRequest, secret: str | None, now: datetime) -> WebhookVerdict:
        require_media_type(request, JSON)
        key = require_secret(secret)
        received = require_header(request, SIGNATURE_HEADER)
        if not received.startswith(SIGNATURE_PREFIX):
            raise DeliveryRejectedError(
                RejectReason.MALFORMED_HEADER, f"header {SIGNATURE_HEADER} lacks {SIGNATURE_PREFIX}"
            )
        timestamp = request.header(TIMESTAMP_HEADER) or None
        if timestamp is None and self.require_timestamp:
            raise DeliveryRejectedError(
                RejectReason.MISSING_HEADER, f"header {TIMESTAMP_HEADER} is missing"
            )
        if timestamp is not None:
            check_timestamp(timestamp, now, self.tolerance_seconds, TIMESTAMP_HEADER)
        expected = hmac_signature(key, request.body, timestamp)
        require_equal(expected, received, RejectReason.SIGNATURE_MISMATCH, SIGNATURE_HEADER)
        document = parse_json_object(request.body)
        event_id = request.header(EVENT_ID_HEADER) or _text(document.get("id"))
        event_type = request.header(EVENT_TYPE_HEADER) or _text(document.get("type"))
        return Accepted(self.name, (WebhookEvent(event_id, event_type, document),))


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)
