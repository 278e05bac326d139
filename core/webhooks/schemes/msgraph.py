"""Microsoft Graph change notifications delivered to a webhook.

https://learn.microsoft.com/graph/change-notifications-delivery-webhooks :
* on subscription creation Graph POSTs to notificationUrl?validationToken=...; the endpoint
  answers within 10 s with 200, text/plain and the URL-decoded token (HTML-escaped, as the docs
  advise against reflected script; Graph never sends markup, so real tokens are unchanged);
* every notification in `value` carries the `clientState` given at subscription, which must
  match. The registration's secret is that clientState, so each registration needs its own
  notification URL: a batch whose items disagree is refused whole and Graph retries it.
"""

from __future__ import annotations

import hmac
import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from core.webhooks.schemes.base import (
    JSON,
    TEXT_PLAIN,
    Accepted,
    DeliveryRejectedError,
    Handshake,
    RejectReason,
    WebhookEvent,
    WebhookRequest,
    WebhookResponse,
    WebhookScheme,
    WebhookVerdict,
    parse_json_object,
    require_media_type,
    require_secret,
    without_keys,
)

VALIDATION_TOKEN_PARAMETER = "validationToken"  # noqa: S105 - a parameter name
MAX_VALIDATION_TOKEN_LENGTH = 4096
"""Graph's tokens are a few hundred characters; a bound keeps the echo from being abused."""


@dataclass(frozen=True, slots=True)
class MicrosoftGraphScheme(WebhookScheme):
    name: ClassVar[str] = "msgraph"

    def _verify(self, request: WebhookRequest, secret: str | None, now: datetime) -> WebhookVerdict:
        query = parse_qs(urlsplit(request.url).query, keep_blank_values=True)
        if VALIDATION_TOKEN_PARAMETER in query:
            return self._validation(query[VALIDATION_TOKEN_PARAMETER][0])
        require_media_type(request, JSON)
        client_state = require_secret(secret)
        notifications = parse_json_object(request.body).get("value")
        if not isinstance(notifications, list) or not notifications:
            raise DeliveryRejectedError(
                RejectReason.INVALID_BODY, "body.value is missing, empty or not an array"
            )
        events = []
        for index, item in enumerate(notifications):
            if not isinstance(item, dict):
                raise DeliveryRejectedError(
                    RejectReason.INVALID_BODY, f"body.value[{index}] is not an object"
                )
            _require_client_state(item, client_state, index)
            events.append(_event(item))
        return Accepted(self.name, tuple(events), WebhookResponse(202))

    def _validation(self, token: str) -> Handshake:
        if not token or len(token) > MAX_VALIDATION_TOKEN_LENGTH:
            raise DeliveryRejectedError(
                RejectReason.INVALID_BODY,
                f"{VALIDATION_TOKEN_PARAMETER} is empty or longer than "
                f"{MAX_VALIDATION_TOKEN_LENGTH} characters",
            )
        body = html.escape(token, quote=True).encode("utf-8")
        return Handshake(self.name, WebhookResponse(200, TEXT_PLAIN, body))


def _require_client_state(item: dict[str, Any], client_state: str, index: int) -> None:
    received = item.get("clientState")
    if not isinstance(received, str) or not hmac.compare_digest(
        received.encode("utf-8"), client_state.encode("utf-8")
    ):
        raise DeliveryRejectedError(
            RejectReason.CLIENT_STATE_MISMATCH,
            f"body.value[{index}].clientState is missing or does not match",
        )


def _event(item: dict[str, Any]) -> WebhookEvent:
    event_type = item.get("lifecycleEvent") or item.get("changeType")
    return WebhookEvent(
        _event_id(item),
        event_type if isinstance(event_type, str) else None,
        without_keys(item, "clientState"),
    )


def _event_id(item: dict[str, Any]) -> str | None:
    """Graph has no delivery id. A notification's optional `id`, or else the resource's etag,
    tells one change from the next; with neither, repeats cannot be told from new changes."""
    resource_data = item.get("resourceData")
    etag = resource_data.get("@odata.etag") if isinstance(resource_data, dict) else None
    distinguishing = item.get("id") or etag
    if not distinguishing:
        return None
    parts = (item.get("subscriptionId"), item.get("changeType"), item.get("resource"))
    return "|".join(str(part) for part in (*parts, distinguishing))
