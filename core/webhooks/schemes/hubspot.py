"""HubSpot request validation, signature versions v1, v2 and v3.

https://developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests :
* v1: X-HubSpot-Signature = hex(SHA-256(client secret + body)), X-HubSpot-Signature-Version v1;
* v2: X-HubSpot-Signature = hex(SHA-256(client secret + method + URI + body)), version v2;
* v3: X-HubSpot-Signature-v3 = base64(HMAC-SHA256(client secret,
  method + URI + body + X-HubSpot-Request-Timestamp)), the timestamp in milliseconds and no older
  than five minutes, the URI with the twelve characters of `_V3_DECODED` decoded first.

v3 is used whenever its header is present. v1 and v2 carry no timestamp, so a captured request
can be replayed; `allow_legacy_versions=False` refuses them for registrations that only need v3.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
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
    parse_json,
    require_equal,
    require_header,
    require_media_type,
    require_secret,
)

V3_SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
LEGACY_SIGNATURE_HEADER = "X-HubSpot-Signature"
VERSION_HEADER = "X-HubSpot-Signature-Version"

# HubSpot's table of the URL-encoded characters to decode in the request URI before v3 signing.
_V3_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_V3_ENCODED = re.compile("|".join(_V3_DECODED))


def hubspot_v3_uri(uri: str) -> str:
    return _V3_ENCODED.sub(lambda match: _V3_DECODED[match.group(0)], uri)


def hubspot_signature_v1(client_secret: str, body: bytes) -> str:
    return hashlib.sha256(client_secret.encode("utf-8") + body).hexdigest()


def hubspot_signature_v2(client_secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(f"{client_secret}{method}{uri}".encode() + body).hexdigest()


def hubspot_signature_v3(
    client_secret: str, method: str, uri: str, body: bytes, timestamp: str
) -> str:
    source = f"{method}{hubspot_v3_uri(uri)}".encode() + body + timestamp.encode("ascii")
    digest = hmac.new(client_secret.encode("utf-8"), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class HubSpotScheme(WebhookScheme):
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS
    allow_legacy_versions: bool = True
    name: ClassVar[str] = "hubspot"

    def _verify(self, request: WebhookRequest, secret: str | None, now: datetime) -> WebhookVerdict:
        require_media_type(request, JSON)
        client_secret = require_secret(secret)
        v3_signature = request.header(V3_SIGNATURE_HEADER)
        if v3_signature is not None or not self.allow_legacy_versions:
            received = require_header(request, V3_SIGNATURE_HEADER)
            timestamp = require_header(request, TIMESTAMP_HEADER)
            check_timestamp(
                timestamp, now, self.tolerance_seconds, TIMESTAMP_HEADER, units_per_second=1000
            )
            expected = hubspot_signature_v3(
                client_secret, request.method, request.url, request.body, timestamp
            )
            require_equal(expected, received, RejectReason.SIGNATURE_MISMATCH, V3_SIGNATURE_HEADER)
        else:
            self._verify_legacy(request, client_secret)
        return Accepted(self.name, _events(parse_json(request.body)))

    def _verify_legacy(self, request: WebhookRequest, client_secret: str) -> None:
        version = require_header(request, VERSION_HEADER).lower()
        received = require_header(request, LEGACY_SIGNATURE_HEADER)
        if version == "v1":
            expected = hubspot_signature_v1(client_secret, request.body)
        elif version == "v2":
            expected = hubspot_signature_v2(
                client_secret, request.method, request.url, request.body
            )
        else:
            raise DeliveryRejectedError(
                RejectReason.UNSUPPORTED_SIGNATURE_VERSION,
                f"header {VERSION_HEADER} names an unknown version",
            )
        require_equal(expected, received, RejectReason.SIGNATURE_MISMATCH, LEGACY_SIGNATURE_HEADER)


def _events(document: Any) -> tuple[WebhookEvent, ...]:
    """Webhooks API deliveries are a batch (array); workflow actions and CRM cards one object."""
    items = document if isinstance(document, list) else [document]
    if not items:
        raise DeliveryRejectedError(RejectReason.INVALID_BODY, "body is an empty array")
    events = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DeliveryRejectedError(
                RejectReason.INVALID_BODY, f"body[{index}] is not an object"
            )
        events.append(WebhookEvent(_event_id(item), _event_type(item), item))
    return tuple(events)


def _event_id(item: dict[str, Any]) -> str | None:
    """HubSpot says eventId alone "is not guaranteed to be unique"; with the portal, the
    subscription and the occurrence time it names one notification across its retries."""
    if "eventId" in item:
        parts = (item.get("portalId"), item.get("subscriptionId"), item["eventId"])
        return ":".join(str(part) for part in (*parts, item.get("occurredAt")))
    callback_id = item.get("callbackId")
    return callback_id if isinstance(callback_id, str) and callback_id else None


def _event_type(item: dict[str, Any]) -> str | None:
    event_type = item.get("subscriptionType") or item.get("eventType")
    return event_type if isinstance(event_type, str) else None
