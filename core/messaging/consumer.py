"""How every queue consumer settles a message (ARCHITECTURE.md, Failure model).

* Malformed (not JSON, wrong envelope, unknown schema major, a claim check whose blob is
  gone or altered): `PoisonMessageError` propagates; the host dead-letters it with the
  reason. A claim-checked body is resolved before it is decoded (given the blob store).
* Permanent (`PermanentError`): no retry; the consumer's `give_up` quarantines and
  publishes the failure, and the message is settled.
* Transient (`TransientError`, `ConflictError`): the message is sent again, scheduled
  after 1 s, 2 s, 4 s (+ jitter, or the dependency's Retry-After) with an `attempt`
  property; after 3 retries `give_up` runs. Service Bus trigger retry policies do not
  exist, so this backoff is ours.
* Anything else is a bug or a crash: it propagates, the host abandons, and the broker
  dead-letters after max deliveries.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import (
    ConflictError,
    PermanentError,
    PoisonMessageError,
    PortError,
    TransientError,
)
from core.messaging.claim_check import resolve
from core.models.events import EventEnvelope, decode_envelope
from core.ports import BlobStore, Bus, OutboundMessage

log = logging.getLogger(__name__)

ATTEMPT_PROPERTY = "attempt"
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0)
MAX_RETRIES = 3


@dataclass(frozen=True, slots=True)
class InboundMessage:
    body: bytes
    message_id: str
    correlation_id: str | None = None
    subject: str | None = None
    content_type: str | None = None
    delivery_count: int = 1
    application_properties: Mapping[str, Any] = field(default_factory=dict)

    @property
    def attempt(self) -> int:
        value = self.application_properties.get(ATTEMPT_PROPERTY, 0)
        try:
            return max(0, int(value))
        except (TypeError, ValueError):
            return 0


Handler = Callable[[EventEnvelope, int], object]
GiveUp = Callable[[EventEnvelope, Exception, int], None]


def backoff_delay(attempt: int, error: Exception, rng: random.Random) -> float:
    retry_after = error.retry_after if isinstance(error, TransientError) else None
    base = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
    return max(retry_after or 0.0, base * (1 + rng.uniform(0, 0.25)))


def consume(
    message: InboundMessage,
    *,
    entity: str,
    bus: Bus,
    handler: Handler,
    give_up: GiveUp,
    rng: random.Random | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    blobs: BlobStore | None = None,
) -> str:
    """Run `handler` on the message's envelope; returns what happened (for logs/tests)."""
    body = message.body
    if blobs is not None:
        try:
            body = resolve(blobs, message.body, message.application_properties)
        except PermanentError as exc:
            raise PoisonMessageError("ClaimCheckUnresolvable", str(exc)) from exc
    envelope = decode_envelope(body)
    attempt = message.attempt
    try:
        handler(envelope, attempt)
        return "processed"
    except PermanentError as exc:
        log.warning("permanent failure on %s: %s", entity, exc)
        give_up(envelope, exc, attempt + 1)
        return "gave_up"
    except (TransientError, ConflictError) as exc:
        if attempt >= MAX_RETRIES:
            log.error("transient failures exhausted %d retries on %s: %s", attempt, entity, exc)
            give_up(envelope, exc, attempt + 1)
            return "gave_up"
        delay = backoff_delay(attempt, exc, rng or random.Random())  # noqa: S311 - jitter, not crypto
        retry = OutboundMessage(
            body=message.body,
            message_id=f"{message.message_id}:retry-{attempt + 1}",
            correlation_id=message.correlation_id,
            subject=message.subject,
            content_type=message.content_type,
            application_properties={
                **{k: v for k, v in message.application_properties.items() if _scalar(v)},
                ATTEMPT_PROPERTY: attempt + 1,
            },
            scheduled_enqueue_time=now() + timedelta(seconds=delay),
        )
        try:
            bus.send(entity, [retry])
        except PortError:
            log.exception("could not schedule the retry on %s; abandoning instead", entity)
            raise exc from None
        log.info("transient failure on %s, retry %d in %.1fs: %s", entity, attempt + 1, delay, exc)
        return "rescheduled"


def _scalar(value: object) -> bool:
    return isinstance(value, (str, int, float, bool))
