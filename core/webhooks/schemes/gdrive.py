"""Google Drive push notifications (files.watch / changes.watch channels).

https://developers.google.com/workspace/drive/api/guides/push : notifications carry no
signature; the channel `token` set at watch time comes back in X-Goog-Channel-Token and is
the registration's secret. The first message on a channel has X-Goog-Resource-State `sync` and
X-Goog-Message-Number 1 and announces the channel only. Bodies are empty or a bare
{"kind": "drive#changes"}: the notification says "something changed", the caller lists changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from core.webhooks.schemes.base import (
    EMPTY_OK,
    Accepted,
    DeliveryRejectedError,
    Handshake,
    RejectReason,
    WebhookEvent,
    WebhookRequest,
    WebhookScheme,
    WebhookVerdict,
    require_equal,
    require_header,
    require_secret,
)

TOKEN_HEADER = "X-Goog-Channel-Token"  # noqa: S105 - a header name
CHANNEL_ID_HEADER = "X-Goog-Channel-ID"
RESOURCE_ID_HEADER = "X-Goog-Resource-ID"
RESOURCE_STATE_HEADER = "X-Goog-Resource-State"
MESSAGE_NUMBER_HEADER = "X-Goog-Message-Number"
SYNC_STATE = "sync"
_OPTIONAL_HEADERS = {
    "resourceUri": "X-Goog-Resource-URI",
    "changed": "X-Goog-Changed",
    "channelExpiration": "X-Goog-Channel-Expiration",
}


@dataclass(frozen=True, slots=True)
class GoogleDriveScheme(WebhookScheme):
    name: ClassVar[str] = "gdrive"

    def _verify(self, request: WebhookRequest, secret: str | None, now: datetime) -> WebhookVerdict:
        channel_token = require_secret(secret)
        received = require_header(request, TOKEN_HEADER)
        require_equal(channel_token, received, RejectReason.CHANNEL_TOKEN_MISMATCH, TOKEN_HEADER)
        message_number = require_header(request, MESSAGE_NUMBER_HEADER)
        if not (message_number.isascii() and message_number.isdigit()):
            raise DeliveryRejectedError(
                RejectReason.MALFORMED_HEADER, f"header {MESSAGE_NUMBER_HEADER} is not an integer"
            )
        notification = {
            "channelId": require_header(request, CHANNEL_ID_HEADER),
            "resourceId": require_header(request, RESOURCE_ID_HEADER),
            "resourceState": require_header(request, RESOURCE_STATE_HEADER),
            "messageNumber": message_number,
        }
        for key, header in _OPTIONAL_HEADERS.items():
            value = request.header(header)
            if value:
                notification[key] = value
        if notification["resourceState"] == SYNC_STATE:
            return Handshake(self.name, EMPTY_OK, notification)
        event_id = f"{notification['channelId']}:{message_number}"
        event = WebhookEvent(event_id, notification["resourceState"], dict(notification))
        return Accepted(self.name, (event,))
