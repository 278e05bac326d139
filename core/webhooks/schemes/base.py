"""What every webhook scheme shares: the request it checks, the verdicts it returns, and the
checks (headers, timestamps, HMAC, JSON) whose failures each carry their own reason.

A scheme never answers the provider itself: it returns a verdict, and the HTTP layer turns a
`Rejected` into a bare 401 (the reason is for logs and counters only, never for the caller).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

MAX_BODY_BYTES = 10 * 1024 * 1024
"""The architecture's webhook size limit; larger bodies are refused before any hashing."""

DEFAULT_TOLERANCE_SECONDS = 300.0
"""Slack and HubSpot document five minutes; the other timestamped schemes use the same."""

_MAX_TIMESTAMP_DIGITS = 16
"""Milliseconds until the year 2286 fit in 13; more digits are junk, not a timestamp."""

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
TEXT_PLAIN = "text/plain; charset=utf-8"


class RejectReason(StrEnum):
    """Why a delivery was refused: one value per distinct failure, for logs and counters."""

    METHOD_NOT_ALLOWED = "method_not_allowed"
    BODY_TOO_LARGE = "body_too_large"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"
    MALFORMED_TIMESTAMP = "malformed_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    SECRET_NOT_CONFIGURED = "secret_not_configured"  # noqa: S105 - a reason name
    UNSUPPORTED_SIGNATURE_VERSION = "unsupported_signature_version"
    SIGNATURE_MISMATCH = "signature_mismatch"
    CLIENT_STATE_MISMATCH = "client_state_mismatch"
    CHANNEL_TOKEN_MISMATCH = "channel_token_mismatch"  # noqa: S105 - a reason name
    ORGANIZATION_MISMATCH = "organization_mismatch"
    INVALID_BODY = "invalid_body"


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One delivery exactly as received: the body is the raw bytes every signature covers.

    `url` is the full URL the provider called (scheme, host, path and raw query); HubSpot signs
    it and Microsoft Graph puts its validation token in it. Header names are matched without
    regard to case; values lose surrounding whitespace, as HTTP parsers do.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.body, bytes):
            raise TypeError(f"WebhookRequest.body must be bytes, got {type(self.body).__name__}")
        object.__setattr__(self, "method", self.method.upper())
        normalized = {name.lower(): value.strip() for name, value in self.headers.items()}
        object.__setattr__(self, "headers", normalized)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-cased ('' when absent)."""
        return (self.header("Content-Type") or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """What the HTTP layer sends back to the provider."""

    status: int
    content_type: str | None = None
    body: bytes = b""


EMPTY_OK = WebhookResponse(200)


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One provider event from a verified delivery.

    `event_id` is the idempotency key the provider's redeliveries repeat; it is None when the
    provider gives nothing that tells a redelivery from a new change, and the caller must then
    not deduplicate on it.
    """

    event_id: str | None
    event_type: str | None
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Accepted:
    """Authentic delivery: publish the events, then send `response` (never before publishing,
    since providers stop retrying once they have their acknowledgement)."""

    scheme: str
    events: tuple[WebhookEvent, ...]
    response: WebhookResponse = EMPTY_OK


@dataclass(frozen=True, slots=True)
class Handshake:
    """A provider's endpoint check: send `response` and do nothing else.

    `pending_secret` carries a secret the provider hands over in the handshake (Notion's
    verification token). The caller stores it as pending and shows it to the tenant admin; it
    must never silently replace an active secret, since the handshake itself is unsigned.
    """

    scheme: str
    response: WebhookResponse
    details: Mapping[str, str] = field(default_factory=dict)
    pending_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Not authentic or not usable. `detail` is for internal logs; it never holds secrets."""

    scheme: str
    reason: RejectReason
    detail: str


WebhookVerdict = Accepted | Handshake | Rejected


class DeliveryRejectedError(Exception):
    """Raised by the checks below; `WebhookScheme.verify` turns it into a `Rejected`."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class WebhookScheme(ABC):
    """One provider's authentication: `verify` is pure over (request, secret, now)."""

    name: ClassVar[str]

    def verify(self, request: WebhookRequest, secret: str | None, now: datetime) -> WebhookVerdict:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")
        try:
            if request.method != "POST":
                raise DeliveryRejectedError(
                    RejectReason.METHOD_NOT_ALLOWED, f"method {request.method} is not POST"
                )
            if len(request.body) > MAX_BODY_BYTES:
                raise DeliveryRejectedError(
                    RejectReason.BODY_TOO_LARGE,
                    f"body of {len(request.body)} bytes exceeds {MAX_BODY_BYTES}",
                )
            return self._verify(request, secret, now)
        except DeliveryRejectedError as rejection:
            return Rejected(self.name, rejection.reason, rejection.detail)

    @abstractmethod
    def _verify(self, request: WebhookRequest, secret: str | None, now: datetime) -> WebhookVerdict:
        """Raise `DeliveryRejectedError` for any failure; return the verdict otherwise."""


def require_media_type(request: WebhookRequest, *allowed: str) -> str:
    media_type = request.media_type
    if media_type not in allowed:
        raise DeliveryRejectedError(
            RejectReason.UNSUPPORTED_CONTENT_TYPE,
            f"content type {media_type or '(none)'!r} is not one of {', '.join(allowed)}",
        )
    return media_type


def require_header(request: WebhookRequest, name: str) -> str:
    value = request.header(name)
    if not value:
        raise DeliveryRejectedError(RejectReason.MISSING_HEADER, f"header {name} is missing")
    return value


def require_secret(secret: str | None) -> str:
    if not secret:
        raise DeliveryRejectedError(
            RejectReason.SECRET_NOT_CONFIGURED, "the registration has no secret for this scheme"
        )
    return secret


def check_timestamp(
    value: str, now: datetime, tolerance_seconds: float, header: str, *, units_per_second: int = 1
) -> None:
    """Refuse a timestamp header outside `now` ± tolerance (replays and clock-skewed forgeries)."""
    if not (value.isascii() and value.isdigit()) or len(value) > _MAX_TIMESTAMP_DIGITS:
        raise DeliveryRejectedError(
            RejectReason.MALFORMED_TIMESTAMP, f"header {header} is not an integer timestamp"
        )
    age_seconds = now.timestamp() - int(value) / units_per_second
    if age_seconds > tolerance_seconds:
        raise DeliveryRejectedError(
            RejectReason.STALE_TIMESTAMP,
            f"header {header} is {age_seconds:.0f}s old, tolerance {tolerance_seconds:.0f}s",
        )
    if age_seconds < -tolerance_seconds:
        raise DeliveryRejectedError(
            RejectReason.FUTURE_TIMESTAMP,
            f"header {header} is {-age_seconds:.0f}s ahead, tolerance {tolerance_seconds:.0f}s",
        )


def hmac_sha256_hex(key: str, message: bytes) -> str:
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def require_equal(expected: str, received: str, reason: RejectReason, what: str) -> None:
    """Constant-time comparison; the detail never includes either value."""
    if not hmac.compare_digest(expected.encode("utf-8"), received.encode("utf-8")):
        raise DeliveryRejectedError(reason, f"{what} does not match")


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, f"body is not UTF-8 (byte {error.start})"
        ) from error
    except json.JSONDecodeError as error:
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, f"body is not valid JSON: {error.msg} at {error.pos}"
        ) from error


def parse_json_object(body: bytes) -> dict[str, Any]:
    document = parse_json(body)
    if not isinstance(document, dict):
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, f"body is a JSON {type(document).__name__}, not an object"
        )
    return document


def require_str(document: Mapping[str, Any], key: str, where: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, f"{where}.{key} is missing or not text"
        )
    return value


def without_keys(document: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """A copy without fields that hold provider credentials, which must not reach events."""
    return {key: value for key, value in document.items() if key not in keys}
