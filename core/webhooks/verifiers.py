"""The registry of webhook authentication schemes, keyed by the name a webhook registration
stores. Every scheme is pure over (request, secret, now): the HTTP layer builds the
`WebhookRequest` from the raw delivery, looks up the registration's secret, and acts on the
verdict (publish and acknowledge, answer the handshake, or answer 401 without saying why).
"""

from __future__ import annotations

from datetime import datetime

from core.webhooks.schemes.base import WebhookRequest, WebhookScheme, WebhookVerdict
from core.webhooks.schemes.gdrive import GoogleDriveScheme
from core.webhooks.schemes.generic_hmac import HmacSha256Scheme
from core.webhooks.schemes.github import GitHubScheme
from core.webhooks.schemes.hubspot import HubSpotScheme
from core.webhooks.schemes.msgraph import MicrosoftGraphScheme
from core.webhooks.schemes.notion import NotionScheme
from core.webhooks.schemes.salesforce import SalesforceOutboundMessageScheme
from core.webhooks.schemes.slack import SlackScheme
from core.webhooks.schemes.zoom import ZoomScheme

VERIFIERS: dict[str, WebhookScheme] = {
    scheme.name: scheme
    for scheme in (
        SlackScheme(),
        GitHubScheme(),
        HubSpotScheme(),
        ZoomScheme(),
        MicrosoftGraphScheme(),
        GoogleDriveScheme(),
        NotionScheme(),
        SalesforceOutboundMessageScheme(),
        HmacSha256Scheme(),
    )
}


def verify_webhook(
    scheme_name: str, request: WebhookRequest, secret: str | None, now: datetime
) -> WebhookVerdict:
    scheme = VERIFIERS.get(scheme_name)
    if scheme is None:
        known = ", ".join(sorted(VERIFIERS))
        raise ValueError(f"unknown webhook scheme {scheme_name!r}; known schemes: {known}")
    return scheme.verify(request, secret, now)
