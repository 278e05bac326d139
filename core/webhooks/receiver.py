"""Webhook receipt: `POST /api/webhooks/{scheme}/{integrationId}` from the provider to a
durably enqueued message, and the answer the provider expects.

Per delivery, in this order:

1. The scheme must be one of `VERIFIERS` (404 otherwise: that is public knowledge).
2. The registration of (integration, scheme) is looked up across tenants; the tenant comes
   from it, never from the request. Lookups and secrets are cached in-process for a minute
   (misses for ten seconds, bounded), so a steady stream costs no store or vault reads; a
   registration deleted in another instance keeps working here for at most that minute.
   No registration answers 401, like a bad signature, so the URL does not reveal which
   integrations exist.
3. Per-integration token bucket (WEBHOOK_RATE_PER_SECOND, WEBHOOK_RATE_BURST): 429 with
   Retry-After. 4. Over 10 MB: 413.
5. The scheme's verifier, over the raw body bytes, with a constant-time comparison. Any
   refusal is a bare 401 whose body never says which part failed; the reason goes to the
   log, to `webhooks_rejected_total{provider,reason}` and, as a category, to the
   registration's health.
6. Handshakes are answered (Slack challenge, Zoom encryptedToken, Graph validationToken,
   Google's sync message); Notion's verification token is kept as pending.
7. Events the registration does not subscribe to (`events`, shell-style wildcards) are
   counted and acknowledged. The rest are deduplicated on the provider's event id
   (`webhook:{integrationId}:{eventId}` in `idempotency`, 24 h): a repeat is acknowledged
   and publishes nothing.
8. Publish, then acknowledge: Salesforce records that arrive with their fields become
   `integration.data.raw` events; CRM notifications that only carry ids (HubSpot, Salesforce
   messages with just the Id) become one targeted sync task for the entity types they name;
   every other scheme's events go out as `integration.webhook.received` to the queue of
   their kind. Bodies over the inline limit go by claim check. Concurrent deliveries share
   the idempotency read, the bus send and the key write (`core.webhooks.commit`), and each waits for
   its own write: only once the bus has the messages are the keys written and the provider
   answered, so a crash in between makes the provider retry, and the retry is dropped by
   the broker's duplicate detection (deterministic message ids) or published again to
   idempotent consumers.

Health (`lastReceivedAt`, counts, last failure category) is tallied in memory and written
to the registration at most every `health_flush_seconds` per registration, not per request;
counters are always incremented. A process that stops loses at most that window's tally.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import itertools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Protocol

from prometheus_client import Counter

from core import containers, metrics
from core.errors import NotFoundError, PermanentError, PortError
from core.ids import unique_hex
from core.integrations.repository import IntegrationRepository
from core.messaging import topology
from core.messaging.claim_check import offload
from core.models import crm_events
from core.models.integration import TenantIntegration
from core.ports import BlobStore, Bus, Clock, DocumentStore, OutboundMessage, SecretStore
from core.sync.executions import SyncExecutions
from core.webhooks.commit import Committer, GroupCommit, PendingCommit, Publication
from core.webhooks.events import SOURCE, WebhookReceivedDraft, message_id_for
from core.webhooks.registrations import (
    WebhookHealth,
    WebhookRegistration,
    WebhookRegistrations,
    find_registrations,
)
from core.webhooks.schemes.base import (
    MAX_BODY_BYTES,
    Accepted,
    Handshake,
    Rejected,
    RejectReason,
    WebhookEvent,
    WebhookRequest,
    WebhookResponse,
)
from core.webhooks.verifiers import VERIFIERS

log = logging.getLogger(__name__)

REGISTRATION_TTL_SECONDS = 60.0
MISSING_REGISTRATION_TTL_SECONDS = 10.0
MAX_CACHED_REGISTRATIONS = 10_000
HEALTH_FLUSH_SECONDS = 30.0
PENDING_SECRET_INTERVAL_SECONDS = 60.0
UNAVAILABLE_RETRY_AFTER_SECONDS = 5
MAX_EVENT_ID_LENGTH = 256
"""Longer provider ids (Graph's carry resource paths) are hashed into the idempotency key."""
MAX_JSON_GROWTH = 5
ENVELOPE_ALLOWANCE_BYTES = 8192
"""A payload parsed from a body and written again as JSON grows at most about fivefold (a
number like 1e15 comes back as 1000000000000000.0), and the envelope and its fields take a
few kilobytes: a delivery under that bound cannot make a message over the inline limit."""

JSON_CONTENT_TYPE = "application/json"
CRM_SCHEMES = frozenset({"salesforce", "hubspot"})


class Outcome(StrEnum):
    """What became of one delivery (`webhooks_received_total{provider,outcome}`)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    HANDSHAKE = "handshake"
    REJECTED = "rejected"
    UNKNOWN_PROVIDER = "unknown_provider"
    UNKNOWN_REGISTRATION = "unknown_registration"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"


class EventOutcome(StrEnum):
    """What became of one event of an accepted delivery (`webhook_events_total`)."""

    PUBLISHED = "published"
    SYNC_REQUESTED = "sync_requested"
    DUPLICATE = "duplicate"
    FILTERED = "filtered"
    UNMAPPED = "unmapped"
    INTEGRATION_UNAVAILABLE = "integration_unavailable"


_REASON_CATEGORIES: dict[RejectReason, str] = {
    RejectReason.SIGNATURE_MISMATCH: "signature",
    RejectReason.UNSUPPORTED_SIGNATURE_VERSION: "signature",
    RejectReason.CLIENT_STATE_MISMATCH: "signature",
    RejectReason.CHANNEL_TOKEN_MISMATCH: "signature",
    RejectReason.ORGANIZATION_MISMATCH: "signature",
    RejectReason.STALE_TIMESTAMP: "timestamp",
    RejectReason.FUTURE_TIMESTAMP: "timestamp",
    RejectReason.MALFORMED_TIMESTAMP: "timestamp",
    RejectReason.SECRET_NOT_CONFIGURED: "not_configured",
    RejectReason.BODY_TOO_LARGE: "too_large",
}
"""The health's failure category: enough to tell a wrong secret from a skewed clock or a
malformed request, without the detail an attacker could learn from."""


def failure_category(reason: RejectReason) -> str:
    return _REASON_CATEGORIES.get(reason, "request")


_COUNTER_CHILDREN: dict[tuple[Counter, str, str], Any] = {}


def count_metric(counter: Counter, provider: str, outcome: str, amount: int = 1) -> None:
    """`counter.labels(provider, outcome).inc(amount)`, keeping the labelled child: the label
    values are bounded (schemes, outcomes, reasons), and `labels()` costs as much as the
    rest of a counter update."""
    key = (counter, provider, outcome)
    child = _COUNTER_CHILDREN.get(key)
    if child is None:
        child = _COUNTER_CHILDREN.setdefault(key, counter.labels(provider, str(outcome)))
    child.inc(amount)


class CountSink(Protocol):
    """Where a receiver's counts go: this process's counters (`count_metric`), or, in a
    receipt process, the host's (`core.webhooks.receipt_process`)."""

    def __call__(self, counter: Counter, provider: str, outcome: str, amount: int = 1) -> None: ...


# --------------------------------------------------------------------------------------
# Input and output
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One request as the HTTP layer received it; `body` is the raw bytes."""

    scheme: str
    integration_id: str
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class WebhookReply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, response: WebhookResponse) -> WebhookReply:
        return cls(response.status, response.body, response.content_type)

    @classmethod
    def error(
        cls, status: int, message: str, headers: dict[str, str] | None = None
    ) -> WebhookReply:
        body = json.dumps({"error": message}).encode()
        return cls(status, body, JSON_CONTENT_TYPE, headers or {})


UNAUTHORIZED = WebhookReply.error(401, "webhook authentication failed")


def unavailable_reply() -> WebhookReply:
    return WebhookReply.error(
        503,
        "temporarily unavailable; retry later",
        {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
    )


# --------------------------------------------------------------------------------------
# Registration lookup, rate limit, health tally
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedRegistration:
    registration: WebhookRegistration
    secret: str | None = field(repr=False)


class _Miss(Enum):
    MISS = "miss"


MISS = _Miss.MISS


class RegistrationDirectory:
    """(integrationId, scheme) -> registration and its secret, cached briefly in-process.

    A plain dict of (expiry, entry): the lookup is on every delivery's path, where a general
    TTL cache costs more than the rest of the lookup. Misses are cached for a shorter time,
    and the dict is bounded: past `max_entries`, expired entries go, then the oldest.
    """

    def __init__(
        self,
        store: DocumentStore,
        secrets: SecretStore,
        *,
        ttl_seconds: float = REGISTRATION_TTL_SECONDS,
        missing_ttl_seconds: float = MISSING_REGISTRATION_TTL_SECONDS,
        max_entries: int = MAX_CACHED_REGISTRATIONS,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._ttl = ttl_seconds
        self._missing_ttl = missing_ttl_seconds
        self._max_entries = max_entries
        self._timer = timer
        self._entries: dict[tuple[str, str], tuple[float, ResolvedRegistration | None]] = {}
        self._lock = threading.Lock()

    def cached(self, integration_id: str, scheme: str) -> ResolvedRegistration | _Miss | None:
        """The cached answer, or `MISS` when only `resolve` (which reads the store) can tell."""
        cached = self._entries.get((integration_id, scheme))
        if cached is not None and cached[0] > self._timer():
            return cached[1]
        return MISS

    def resolve(self, integration_id: str, scheme: str) -> ResolvedRegistration | None:
        cached = self.cached(integration_id, scheme)
        if cached is not MISS:
            return cached
        now = self._timer()
        resolved = self._load(integration_id, scheme)
        expires = now + (self._ttl if resolved is not None else self._missing_ttl)
        with self._lock:
            self._entries[(integration_id, scheme)] = (expires, resolved)
            if len(self._entries) > self._max_entries:
                self._evict(now)
        return resolved

    def _evict(self, now: float) -> None:
        for key in [key for key, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        excess = len(self._entries) - self._max_entries
        for key in list(itertools.islice(self._entries, max(0, excess))):
            del self._entries[key]

    def forget(self, integration_id: str, scheme: str) -> None:
        with self._lock:
            self._entries.pop((integration_id, scheme), None)

    def _load(self, integration_id: str, scheme: str) -> ResolvedRegistration | None:
        found = find_registrations(self._store, integration_id, scheme)
        if len(found) > 1:
            log.error(
                "refusing %s webhooks for integration %s: registered by several tenants",
                scheme,
                integration_id,
                extra={"tenants": sorted(r.tenant_id for r in found)},
            )
            return None
        if not found:
            return None
        registration = found[0]
        secret = self._secrets.get(registration.secret_name) if registration.secret_name else None
        return ResolvedRegistration(registration, secret)


class RateLimiter:
    """A token bucket per key: `rate` tokens a second, at most `burst` saved up."""

    def __init__(
        self, rate: float, burst: int, *, timer: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate} and {burst}")
        self._rate = rate
        self._burst = float(burst)
        self._timer = timer
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """0.0 when a token was taken; otherwise the seconds until one is available."""
        now = self._timer()
        with self._lock:
            tokens, then = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - then) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate


@dataclass(slots=True)
class _Tally:
    tenant_id: str
    registration_id: str
    received: int = 0
    failures: int = 0
    last_received_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_failure_reason: str | None = None
    flushed_at: float = -math.inf

    @property
    def pending(self) -> bool:
        return bool(self.received or self.failures)

    def take(self) -> _Tally:
        """The counts so far, leaving this tally empty."""
        taken = _Tally(
            self.tenant_id,
            self.registration_id,
            self.received,
            self.failures,
            self.last_received_at,
            self.last_failure_at,
            self.last_failure_reason,
        )
        self.received = self.failures = 0
        self.last_received_at = self.last_failure_at = self.last_failure_reason = None
        return taken

    def add(self, other: _Tally) -> None:
        """Put back counts whose write failed (the later timestamps win)."""
        self.received += other.received
        self.failures += other.failures
        self.last_received_at = self.last_received_at or other.last_received_at
        if self.last_failure_at is None:
            self.last_failure_at = other.last_failure_at
            self.last_failure_reason = other.last_failure_reason

    def apply(self, registration: WebhookRegistration) -> WebhookRegistration:
        return registration.model_copy(update={"health": self.applied_to(registration.health)})

    def applied_to(self, health: WebhookHealth) -> WebhookHealth:
        update: dict[str, Any] = {
            "received_count": health.received_count + self.received,
            "failure_count": health.failure_count + self.failures,
        }
        if self.last_received_at is not None:
            update["last_received_at"] = _later(health.last_received_at, self.last_received_at)
        if self.last_failure_at is not None and (
            health.last_failure_at is None or self.last_failure_at >= health.last_failure_at
        ):
            update["last_failure_at"] = self.last_failure_at
            update["last_failure_reason"] = self.last_failure_reason
        return health.model_copy(update=update)


def _later(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current


# --------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------

_GRAPH_CALENDAR = re.compile(r"(^|/)(events|calendars?|calendarview)(/|$|\()", re.IGNORECASE)
_GRAPH_DOCUMENTS = re.compile(r"(^|/)(drives?|driveitems?|root)(/|$|\()", re.IGNORECASE)
_GRAPH_MEETINGS = re.compile(r"(^|/)(onlinemeetings|callrecords)(/|$|\()", re.IGNORECASE)


def queue_for(scheme: str, event: WebhookEvent) -> str:
    """The queue whose processors handle this kind of event (ARCHITECTURE.md, topology)."""
    event_type = (event.event_type or "").casefold()
    if scheme == "gdrive":
        return topology.INTEGRATION_DOCUMENTS
    if scheme == "notion":
        if event_type.startswith("comment."):
            return topology.INTEGRATION_COMMUNICATIONS
        return topology.INTEGRATION_DOCUMENTS
    if scheme == "zoom" and event_type.startswith(("meeting.", "recording.", "webinar.")):
        return topology.INTEGRATION_MEETINGS
    if scheme == "msgraph":
        resource = str(event.payload.get("resource") or "")
        if _GRAPH_CALENDAR.search(resource):
            return topology.INTEGRATION_EVENTS_QUEUE
        if _GRAPH_DOCUMENTS.search(resource):
            return topology.INTEGRATION_DOCUMENTS
        if _GRAPH_MEETINGS.search(resource):
            return topology.INTEGRATION_MEETINGS
    return topology.INTEGRATION_COMMUNICATIONS


_HUBSPOT_OBJECT_TYPE_IDS = {"0-1": "contact", "0-2": "company", "0-3": "deal", "0-5": "ticket"}
_HUBSPOT_ENTITY_NAMES = {
    "contact": ("contact", "contacts"),
    "company": ("company", "companies"),
    "deal": ("deal", "deals"),
    "ticket": ("ticket", "tickets"),
    "product": ("product", "products"),
    "line_item": ("line_item", "line_items"),
}


def crm_object_names(scheme: str, event: WebhookEvent) -> tuple[str, ...]:
    """Entity type names a CRM notification may be about, best first ('' for none)."""
    if scheme == "salesforce":
        sobject = event.payload.get("sObjectType")
        return (sobject,) if isinstance(sobject, str) and sobject else ()
    subscription = (event.event_type or "").casefold()
    object_name = subscription.split(".", 1)[0] if "." in subscription else ""
    if object_name == "object":
        object_name = _HUBSPOT_OBJECT_TYPE_IDS.get(str(event.payload.get("objectTypeId")), "")
    return _HUBSPOT_ENTITY_NAMES.get(object_name, (object_name,) if object_name else ())


def _carries_record(event: WebhookEvent) -> bool:
    """A Salesforce outbound message carries the fields the admin selected; just the Id
    means "this record changed" and is synced instead."""
    fields = event.payload.get("fields")
    return isinstance(fields, dict) and any(name != "Id" for name in fields)


def _enabled_entity_type(integration: TenantIntegration, names: Sequence[str]) -> str | None:
    enabled = {
        mapping.entity_type.casefold(): mapping.entity_type
        for mapping in integration.sync_config.entity_mappings
        if mapping.enabled
    }
    for name in names:
        found = enabled.get(name.casefold())
        if found is not None:
            return found
    return None


def idempotency_key(integration_id: str, event_id: str) -> str:
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        event_id = "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()
    return f"webhook:{integration_id}:{event_id}"


def _idempotency_document_id(key: str) -> str:
    """Provider ids may hold characters a Cosmos id may not (`/`, `#`, `?`)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _subscribed(patterns: Sequence[str], event_type: str | None) -> bool:
    if not patterns:
        return True
    return event_type is not None and any(
        fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns
    )


# --------------------------------------------------------------------------------------
# The receiver
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Keyed:
    event: WebhookEvent
    key: str | None


class WebhookIntake(Protocol):
    """What the HTTP function and the tenant API use: a `WebhookReceiver` in this process,
    or `core.webhooks.receipt_process.ReceiptProcess`, which runs one in a process of its
    own."""

    registrations: WebhookRegistrations

    async def receive(self, delivery: WebhookDelivery) -> WebhookReply: ...

    def flush_health(self, tenant_id: str | None = None) -> None: ...

    def close(self) -> None: ...


class WebhookReceiver:
    def __init__(
        self,
        store: DocumentStore,
        bus: Bus,
        blobs: BlobStore,
        secrets: SecretStore,
        clock: Clock,
        executions: SyncExecutions,
        *,
        inline_limit_bytes: int,
        rate_per_second: float,
        rate_burst: int,
        health_flush_seconds: float = HEALTH_FLUSH_SECONDS,
        directory: RegistrationDirectory | None = None,
        committer: Committer | None = None,
        count: CountSink = count_metric,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._count = count
        self._blobs = blobs
        self._clock = clock
        self._executions = executions
        self._inline_limit = inline_limit_bytes
        self._health_flush_seconds = health_flush_seconds
        self._timer = timer
        self.directory = directory or RegistrationDirectory(store, secrets, timer=timer)
        self.registrations = WebhookRegistrations(
            store, secrets, clock, on_change=self.directory.forget
        )
        self._limiter = RateLimiter(rate_per_second, rate_burst, timer=timer)
        self._committer = committer or GroupCommit(bus, store)
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._tally_lock = threading.Lock()

    def close(self) -> None:
        """Ends the commit writer once its current batch is written."""
        self._committer.close()

    # -- the delivery ------------------------------------------------------------------------

    async def receive(self, delivery: WebhookDelivery) -> WebhookReply:
        """Runs on the event loop: the common path (a cached registration, verification, the
        group commit) never blocks it; store, vault and blob calls off that path (a
        registration not cached, a handshake's pending secret, a CRM sync request, a claim
        check, a health write) run in worker threads."""
        scheme = delivery.scheme
        if scheme not in VERIFIERS:
            self._count(metrics.WEBHOOKS_RECEIVED, "unknown", Outcome.UNKNOWN_PROVIDER)
            known = ", ".join(sorted(VERIFIERS))
            return WebhookReply.error(404, f"unknown webhook provider; known: {known}")
        try:
            return await self._receive(delivery)
        except PortError as exc:
            log.warning(
                "%s webhook for integration %s not taken (%s): %s",
                scheme,
                delivery.integration_id,
                type(exc).__name__,
                exc,
            )
            self._count(metrics.WEBHOOKS_RECEIVED, scheme, Outcome.UNAVAILABLE)
            return unavailable_reply()

    async def _receive(self, delivery: WebhookDelivery) -> WebhookReply:
        scheme, integration_id = delivery.scheme, delivery.integration_id
        resolved = self.directory.cached(integration_id, scheme)
        if resolved is MISS:
            resolved = await asyncio.to_thread(self.directory.resolve, integration_id, scheme)
        if resolved is None:
            self._count(metrics.WEBHOOKS_RECEIVED, scheme, Outcome.UNKNOWN_REGISTRATION)
            log.warning("%s webhook for unregistered integration %s", scheme, integration_id)
            return UNAUTHORIZED
        registration = resolved.registration
        wait = self._limiter.acquire(integration_id)
        if wait > 0:
            await self._failed(registration, Outcome.RATE_LIMITED, "rate_limited")
            seconds = max(1, math.ceil(wait))
            return WebhookReply.error(
                429, f"rate limit exceeded; retry after {seconds}s", {"Retry-After": str(seconds)}
            )
        if len(delivery.body) > MAX_BODY_BYTES:
            await self._failed(registration, Outcome.TOO_LARGE, "too_large")
            return WebhookReply.error(
                413, f"body of {len(delivery.body)} bytes exceeds the {MAX_BODY_BYTES}-byte limit"
            )
        request = WebhookRequest(delivery.method, delivery.url, delivery.headers, delivery.body)
        now = self._clock.now()
        verdict = VERIFIERS[scheme].verify(request, resolved.secret, now)
        if isinstance(verdict, Rejected):
            self._count(metrics.WEBHOOKS_REJECTED, scheme, verdict.reason.value)
            log.warning(
                "%s webhook for integration %s refused: %s (%s)",
                scheme,
                integration_id,
                verdict.reason.value,
                verdict.detail,
            )
            await self._failed(registration, Outcome.REJECTED, failure_category(verdict.reason))
            return UNAUTHORIZED
        if isinstance(verdict, Handshake):
            if verdict.pending_secret is not None:
                await asyncio.to_thread(
                    self._keep_pending_secret, registration, verdict.pending_secret, now
                )
            await self._received(registration, Outcome.HANDSHAKE, now)
            return WebhookReply.of(verdict.response)
        return await self._accept(registration, verdict, now, len(delivery.body))

    def _keep_pending_secret(
        self, registration: WebhookRegistration, token: str, now: datetime
    ) -> None:
        """Handshakes are unsigned, so anyone who knows the URL can send one: at most one
        token a minute per registration reaches the secret store."""
        last = registration.pending_secret_received_at
        if last is not None and (now - last).total_seconds() < PENDING_SECRET_INTERVAL_SECONDS:
            log.warning(
                "%s verification token for integration %s ignored: another arrived at %s",
                registration.provider,
                registration.integration_id,
                last.isoformat(),
            )
            return
        self.registrations.record_pending_secret(registration, token, now)
        log.info(
            "%s verification token for integration %s kept as pending",
            registration.provider,
            registration.integration_id,
        )

    async def _accept(
        self, registration: WebhookRegistration, verdict: Accepted, now: datetime, body_size: int
    ) -> WebhookReply:
        scheme = registration.provider
        subscribed: list[_Keyed] = []
        for event in verdict.events:
            if not _subscribed(registration.events, event.event_type):
                self._count(metrics.WEBHOOK_EVENTS, scheme, EventOutcome.FILTERED)
                continue
            key = None
            if event.event_id:
                key = idempotency_key(registration.integration_id, event.event_id)
            subscribed.append(_Keyed(event, key))
        repeats = 0
        if subscribed:
            correlation_id = f"webhook-{unique_hex()}-{int(now.timestamp() * 1000)}"
            if scheme in CRM_SCHEMES:
                publications, repeats = await asyncio.to_thread(
                    self._crm_publications, registration, subscribed, correlation_id, now
                )
            else:
                publications = self._event_publications(
                    registration, subscribed, correlation_id, now, body_size
                )
            oversized = [
                message
                for publication in publications
                if isinstance(message := publication.message, OutboundMessage)
                and len(message.body) > self._inline_limit
            ]
            if oversized:
                await asyncio.to_thread(self._offload, oversized, now)
            if publications:
                pending = PendingCommit(publications)
                await self._committer.commit(pending)
                repeats += pending.repeats
                if pending.published:
                    self._count(
                        metrics.WEBHOOK_EVENTS, scheme, EventOutcome.PUBLISHED, pending.published
                    )
        if repeats:
            self._count(metrics.WEBHOOK_EVENTS, scheme, EventOutcome.DUPLICATE, repeats)
        duplicate = bool(subscribed) and repeats == len(subscribed)
        await self._received(
            registration, Outcome.DUPLICATE if duplicate else Outcome.ACCEPTED, now
        )
        return WebhookReply.of(verdict.response)

    # -- idempotency -------------------------------------------------------------------------

    def _unseen(self, events: Sequence[_Keyed]) -> list[_Keyed]:
        """Events whose key is neither in `idempotency` nor earlier in this delivery (checked
        before a CRM notification requests a sync; the commit checks every event again)."""
        wanted = {(item.key, _idempotency_document_id(item.key)) for item in events if item.key}
        found = self._store.get_many(containers.IDEMPOTENCY.name, list(wanted)) if wanted else {}
        seen = {key for key, _ in found}
        fresh: list[_Keyed] = []
        for item in events:
            if item.key is None:
                fresh.append(item)
            elif item.key not in seen:
                seen.add(item.key)
                fresh.append(item)
        return fresh

    @staticmethod
    def _key_document(
        registration: WebhookRegistration, key: str | None, created_at: str
    ) -> dict[str, Any] | None:
        if key is None:
            return None
        return {
            "id": _idempotency_document_id(key),
            "key": key,
            "tenantId": registration.tenant_id,
            "integrationId": registration.integration_id,
            "provider": registration.provider,
            "createdAt": created_at,
        }

    # -- publishing --------------------------------------------------------------------------

    def _offload(self, messages: Iterable[OutboundMessage], now: datetime) -> None:
        """Bodies over the inline limit go to blob storage before their messages are sent."""
        for message in messages:
            body, properties = offload(
                self._blobs,
                message.body,
                self._inline_limit,
                content_type=message.content_type,
                now=now,
            )
            if properties:
                message.body = body
                message.application_properties.update(properties)

    def _event_publications(
        self,
        registration: WebhookRegistration,
        events: Sequence[_Keyed],
        correlation_id: str,
        now: datetime,
        body_size: int,
    ) -> list[Publication]:
        """The messages of a small delivery are drafts the commit's writer builds; a large
        one's are built here, where a message over the inline limit goes by claim check."""
        publications = []
        moment = now.isoformat()
        drafted = body_size * MAX_JSON_GROWTH + ENVELOPE_ALLOWANCE_BYTES <= self._inline_limit
        for item in events:
            fields = {
                "integration_id": registration.integration_id,
                "tenant_id": registration.tenant_id,
                "registration_id": registration.id,
                "provider": registration.provider,
                "event_id": item.event.event_id,
                "event_type": item.event.event_type,
                "idempotency_key": item.key,
                "correlation_id": correlation_id,
                "received_at": now,
                "payload": item.event.payload,
            }
            draft = WebhookReceivedDraft(fields, moment)
            message = draft if drafted else draft.build()
            publications.append(
                Publication(
                    queue_for(registration.provider, item.event),
                    message,
                    self._key_document(registration, item.key, moment),
                )
            )
        return publications

    def _crm_publications(
        self,
        registration: WebhookRegistration,
        events: Sequence[_Keyed],
        correlation_id: str,
        now: datetime,
    ) -> tuple[list[Publication], int]:
        """(publications, repeats). Records go out as raw CRM events; notifications that only
        name records request their sync here and then only record their keys. Blocking (a
        store read first, so a repeat requests no sync)."""
        fresh = self._unseen(events)
        moment = now.isoformat()
        records: list[_Keyed] = []
        notifications: list[_Keyed] = []
        for item in fresh:
            whole = registration.provider == "salesforce" and _carries_record(item.event)
            (records if whole else notifications).append(item)
        if notifications:
            self._request_sync(registration, notifications)
        publications = [
            Publication(None, None, self._key_document(registration, item.key, moment))
            for item in notifications
        ]
        for item in records:
            message = self._record_message(registration, item, correlation_id)
            publications.append(
                Publication(
                    topology.INTEGRATION_DATA_RAW,
                    message,
                    self._key_document(registration, item.key, moment),
                )
            )
        return publications, len(events) - len(fresh)

    @staticmethod
    def _record_message(
        registration: WebhookRegistration, item: _Keyed, correlation_id: str
    ) -> OutboundMessage:
        """`integration.data.raw` for one record; its idempotency key names the notification,
        so a later change of the same record is a new key (the CRM processor's rule)."""
        payload = item.event.payload
        external_id = str(payload["sObjectId"])
        notification = item.event.event_id or unique_hex()
        raw = crm_events.DataRaw(
            integration_id=registration.integration_id,
            tenant_id=registration.tenant_id,
            entity_type=str(payload["sObjectType"]),
            raw_data=payload["fields"],
            external_id=external_id,
            idempotency_key=f"{registration.integration_id}-{external_id}-webhook-{notification}",
            correlation_id=correlation_id,
            metadata={
                "trigger": "webhook",
                "provider": registration.provider,
                "webhookEventId": item.event.event_id,
            },
        )
        event = crm_events.make_event(
            crm_events.DATA_RAW, raw, source=f"{SOURCE}/{registration.provider}"
        )
        message_id = message_id_for(item.key) if item.key else event.id
        return event.to_message(message_id=message_id)

    def _request_sync(
        self, registration: WebhookRegistration, notifications: Sequence[_Keyed]
    ) -> None:
        """One targeted sync for the entity types the notifications name. Repeats of a delivery
        are caught by the idempotency keys; two copies racing each other may each request
        one, which costs a sync and changes nothing (syncs are idempotent)."""
        scheme = registration.provider
        try:
            integration = IntegrationRepository(self._store).get(
                registration.tenant_id, registration.integration_id
            )
        except (NotFoundError, PermanentError) as exc:
            log.warning("%s notifications not synced: %s", scheme, exc)
            self._count(
                metrics.WEBHOOK_EVENTS,
                scheme,
                EventOutcome.INTEGRATION_UNAVAILABLE,
                len(notifications),
            )
            return
        entity_types: list[str] = []
        unmapped = 0
        for item in notifications:
            entity_type = _enabled_entity_type(integration, crm_object_names(scheme, item.event))
            if entity_type is None:
                unmapped += 1
                log.warning(
                    "%s notification %s (%s) names no enabled entity mapping of integration %s",
                    scheme,
                    item.event.event_id,
                    item.event.event_type,
                    integration.id,
                )
            elif entity_type not in entity_types:
                entity_types.append(entity_type)
        if unmapped:
            self._count(metrics.WEBHOOK_EVENTS, scheme, EventOutcome.UNMAPPED, unmapped)
        if not entity_types:
            return
        mapped = len(notifications) - unmapped
        try:
            execution = self._executions.request(
                registration.tenant_id,
                registration.integration_id,
                trigger="webhook",
                entity_types=entity_types,
            )
        except PermanentError as exc:
            log.warning("%s notifications not synced: %s", scheme, exc)
            self._count(
                metrics.WEBHOOK_EVENTS, scheme, EventOutcome.INTEGRATION_UNAVAILABLE, mapped
            )
            return
        log.info(
            "%s webhook requested sync %s of %s for integration %s",
            scheme,
            execution.id,
            ", ".join(entity_types),
            integration.id,
        )
        self._count(metrics.WEBHOOK_EVENTS, scheme, EventOutcome.SYNC_REQUESTED, mapped)

    # -- health --------------------------------------------------------------------------------

    async def _received(
        self, registration: WebhookRegistration, outcome: Outcome, now: datetime
    ) -> None:
        self._count(metrics.WEBHOOKS_RECEIVED, registration.provider, outcome)
        await self._tally(registration, lambda tally: _count_received(tally, now))

    async def _failed(
        self, registration: WebhookRegistration, outcome: Outcome, category: str
    ) -> None:
        self._count(metrics.WEBHOOKS_RECEIVED, registration.provider, outcome)
        now = self._clock.now()
        await self._tally(registration, lambda tally: _count_failure(tally, now, category))

    async def _tally(
        self, registration: WebhookRegistration, count: Callable[[_Tally], None]
    ) -> None:
        key = (registration.tenant_id, registration.id)
        moment = self._timer()
        with self._tally_lock:
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = _Tally(registration.tenant_id, registration.id)
            count(tally)
            if moment - tally.flushed_at < self._health_flush_seconds:
                return
            tally.flushed_at = moment
            taken = tally.take()
        await asyncio.to_thread(self._write_health, [taken])

    def flush_health(self, tenant_id: str | None = None) -> None:
        """Write every pending tally now (one tenant's, or all): the API does before it shows
        health, and tests do."""
        with self._tally_lock:
            taken = [
                tally.take()
                for (tenant, _), tally in self._tallies.items()
                if tally.pending and tenant_id in (None, tenant)
            ]
        self._write_health(taken)

    def _write_health(self, tallies: Iterable[_Tally]) -> None:
        for tally in tallies:
            try:
                self.registrations.update(
                    tally.tenant_id,
                    tally.registration_id,
                    tally.apply,
                )
            except NotFoundError:
                continue
            except PortError:
                log.warning(
                    "could not write the health of webhook registration %s; kept for later",
                    tally.registration_id,
                    exc_info=True,
                )
                with self._tally_lock:
                    key = (tally.tenant_id, tally.registration_id)
                    self._tallies.setdefault(key, _Tally(*key)).add(tally)


def _count_received(tally: _Tally, now: datetime) -> None:
    tally.received += 1
    tally.last_received_at = _later(tally.last_received_at, now)


def _count_failure(tally: _Tally, now: datetime, category: str) -> None:
    tally.failures += 1
    tally.last_failure_at = now
    tally.last_failure_reason = category
