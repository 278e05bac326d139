"""GitHub webhook deliveries.

https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries :
X-Hub-Signature-256 = "sha256=" + hex(HMAC-SHA256(secret, body)). GitHub sends no timestamp, so
replays are caught only by the X-GitHub-Delivery idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar
from urllib.parse import parse_qs

from core.webhooks.schemes.base import (
    FORM,
    JSON,
    Accepted,
    DeliveryRejectedError,
    RejectReason,
    WebhookEvent,
    WebhookRequest,
    WebhookScheme,
    WebhookVerdict,
    hmac_sha256_hex,
    parse_json_object,
    require_equal,
    require_header,
    require_media_type,
    require_secret,
)

SIGNATURE_HEADER = "X-Hub-Signature-256"
DELIVERY_HEADER = "X-GitHub-Delivery"
EVENT_HEADER = "X-GitHub-Event"


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256_hex(secret, body)


@dataclass(frozen=True, slots=True)
class GitHubScheme(WebhookScheme):
    name: ClassVar[str] = "github"

    def _verify(self, request: WebhookRequest, secret: str | None, now: datetime) -> WebhookVerdict:
        media_type = require_media_type(request, JSON, FORM)
        key = require_secret(secret)
        received = require_header(request, SIGNATURE_HEADER)
        require_equal(
            github_signature(key, request.body),
            received,
            RejectReason.SIGNATURE_MISMATCH,
            SIGNATURE_HEADER,
        )
        delivery = require_header(request, DELIVERY_HEADER)
        event_type = require_header(request, EVENT_HEADER)
        body = request.body if media_type == JSON else _form_payload(request.body)
        return Accepted(self.name, (WebhookEvent(delivery, event_type, parse_json_object(body)),))


def _form_payload(body: bytes) -> bytes:
    """A webhook set to application/x-www-form-urlencoded sends the JSON as `payload=`."""
    try:
        payload = parse_qs(body.decode("utf-8"), strict_parsing=True).get("payload")
    except (UnicodeDecodeError, ValueError) as error:
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, "body is not a valid form encoding"
        ) from error
    if not payload:
        raise DeliveryRejectedError(RejectReason.INVALID_BODY, "form body has no payload field")
    return payload[0].encode("utf-8")
