"""Webhook authentication, one scheme per provider, with no HTTP framework in sight."""

from core.webhooks.schemes.base import (
    MAX_BODY_BYTES,
    Accepted,
    Handshake,
    Rejected,
    RejectReason,
    WebhookEvent,
    WebhookRequest,
    WebhookResponse,
    WebhookScheme,
    WebhookVerdict,
)
from core.webhooks.verifiers import VERIFIERS, verify_webhook

__all__ = [
    "MAX_BODY_BYTES",
    "VERIFIERS",
    "Accepted",
    "Handshake",
    "RejectReason",
    "Rejected",
    "WebhookEvent",
    "WebhookRequest",
    "WebhookResponse",
    "WebhookScheme",
    "WebhookVerdict",
    "verify_webhook",
]
