"""`integration.webhook.received`: one authenticated provider event, as the receiver publishes
it for the processors of its queue (messages, documents, meetings, calendar events).

CRM deliveries do not use it: records that arrive whole go out as `integration.data.raw`,
and notifications that only name records become a targeted sync task.
The payload never holds the provider's credentials: the schemes strip them (Slack's
verification token, Graph's clientState, Salesforce's session id) before an event exists.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from core.errors import PermanentError
from core.models.crm_events import EventPayload, validate_payload
from core.models.events import EventEnvelope, envelope_message
from core.models.shards import NonEmptyStr, UtcDateTime
from core.ports import OutboundMessage

WEBHOOK_RECEIVED = "integration.webhook.received"
SOURCE = "webhook-receiver"


class WebhookReceived(EventPayload):
    """`eventId` is the provider's (None when it gives none, and then `idempotencyKey` is None
    too); `idempotencyKey` is `webhook:{integrationId}:{eventId}`, which a consumer may use to
    recognise a redelivered message."""

    integration_id: NonEmptyStr
    tenant_id: NonEmptyStr
    registration_id: NonEmptyStr
    provider: NonEmptyStr
    event_id: str | None = None
    event_type: str | None = None
    idempotency_key: str | None = None
    correlation_id: NonEmptyStr
    received_at: UtcDateTime
    payload: dict[str, Any]


def message_id_for(idempotency_key: str) -> str:
    """A deterministic bus message id (32 hex digits of the key's SHA-256), so a redelivery
    racing its original is dropped by the broker's duplicate detection as well as by the
    idempotency container."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def webhook_message(payload: WebhookReceived, *, time: str | None = None) -> OutboundMessage:
    """The bus message of one received event; its id is derived from the idempotency key
    when there is one, so a republished event keeps its id. `time` (ISO 8601) is the
    envelope's, now when omitted."""
    envelope_id = (
        message_id_for(payload.idempotency_key) if payload.idempotency_key else str(uuid.uuid4())
    )
    return envelope_message(
        WEBHOOK_RECEIVED,
        payload,
        source=f"{SOURCE}/{payload.provider}",
        message_id=envelope_id,
        tenant_id=payload.tenant_id,
        correlation_id=payload.correlation_id,
        properties={"provider": payload.provider},
        time=time,
    )


@dataclass(frozen=True, slots=True)
class WebhookReceivedDraft:
    """An `integration.webhook.received` event whose message is built by the group commit's
    writer, off the event loop: validating the payload and writing its JSON were a third of
    the loop's work per delivery. `fields` are `WebhookReceived`'s, by name; `time` is the
    envelope's. A repeat is never built."""

    fields: dict[str, Any]
    time: str

    def build(self) -> OutboundMessage:
        return webhook_message(WebhookReceived(**self.fields), time=self.time)


def parse_webhook_received(envelope: EventEnvelope) -> WebhookReceived:
    """The typed payload of a received `integration.webhook.received` event; PermanentError
    (naming the event and each bad field) for another type, invalid data or a payload whose
    tenant differs from the envelope's."""
    if envelope.type != WEBHOOK_RECEIVED:
        raise PermanentError(
            f"event {envelope.id}: {envelope.type!r} is not {WEBHOOK_RECEIVED}",
            resource=envelope.type,
        )
    return validate_payload(envelope, WebhookReceived)
