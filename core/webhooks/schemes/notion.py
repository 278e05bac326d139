"""Notion webhooks.

https://developers.notion.com/reference/webhooks :
* creating a subscription makes Notion POST {"verification_token": "secret_..."} once (again on
  "Resend token"); the admin pastes that token into Notion to activate the subscription, and it
  becomes the signing secret. That request proves nothing about its sender, so the token comes
  back as `Handshake.pending_secret` for the caller to store as pending and show the admin;
* every event carries X-Notion-Signature = "sha256=" + hex(HMAC-SHA256(verification_token, body)).
  Notion sends no timestamp header; the event `id` is the idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from core.webhooks.schemes.base import (
    EMPTY_OK,
    JSON,
    Accepted,
    Handshake,
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
    require_str,
)

SIGNATURE_HEADER = "X-Notion-Signature"
VERIFICATION_FIELD = "verification_token"


def notion_signature(verification_token: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256_hex(verification_token, body)


@dataclass(frozen=True, slots=True)
class NotionScheme(WebhookScheme):
    name: ClassVar[str] = "notion"

    def _verify(self, request: WebhookRequest, secret: str | None, now: datetime) -> WebhookVerdict:
        require_media_type(request, JSON)
        document = parse_json_object(request.body)
        if VERIFICATION_FIELD in document and "type" not in document:
            token = require_str(document, VERIFICATION_FIELD, "body")
            return Handshake(self.name, EMPTY_OK, pending_secret=token)
        verification_token = require_secret(secret)
        received = require_header(request, SIGNATURE_HEADER)
        expected = notion_signature(verification_token, request.body)
        require_equal(expected, received, RejectReason.SIGNATURE_MISMATCH, SIGNATURE_HEADER)
        event = WebhookEvent(
            require_str(document, "id", "body"), require_str(document, "type", "body"), document
        )
        return Accepted(self.name, (event,))
