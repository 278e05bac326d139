"""Webhook receipt (anonymous: each delivery is authenticated by its provider's signature) and
the tenant API for webhook registrations."""

from __future__ import annotations

import azure.functions as func

from core.api import webhooks as api
from core.runtime import get_runtime
from core.webhooks.receiver import WebhookDelivery
from functions.http_support import v1

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


@bp.route(route="webhooks/{provider}/{integrationId}", methods=["POST"], auth_level=ANONYMOUS)
async def webhook_receive(req: func.HttpRequest) -> func.HttpResponse:
    """A coroutine: receipt waits on the shared commit without holding a worker thread."""
    reply = await get_runtime().webhook_receiver.receive(
        WebhookDelivery(
            scheme=req.route_params["provider"],
            integration_id=req.route_params["integrationId"],
            method=req.method,
            url=req.url,
            headers=dict(req.headers),
            body=req.get_body(),
        )
    )
    headers = dict(reply.headers)
    if reply.content_type:
        headers["Content-Type"] = reply.content_type
    media_type = (reply.content_type or "text/plain").split(";", 1)[0]
    return func.HttpResponse(
        body=reply.body, status_code=reply.status, headers=headers, mimetype=media_type
    )


@bp.route(route="v1/integrations/{id}/webhooks", methods=["POST"], auth_level=ANONYMOUS)
def webhooks_create(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.create_webhook)


@bp.route(route="v1/integrations/{id}/webhooks", methods=["GET"], auth_level=ANONYMOUS)
def webhooks_list(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.list_webhooks)


@bp.route(
    route="v1/integrations/{id}/webhooks/{registrationId}",
    methods=["DELETE"],
    auth_level=ANONYMOUS,
)
def webhook_delete(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.delete_webhook)


@bp.route(
    route="v1/integrations/{id}/webhooks/{registrationId}/activate",
    methods=["POST"],
    auth_level=ANONYMOUS,
)
def webhook_activate(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.activate_webhook)
