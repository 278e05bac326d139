"""Tenant API handlers for webhook registrations (`/api/v1/integrations/{id}/webhooks`).

The tenant comes from the token. Secrets are never shown, except once: the one we generate
when a registration omits it (in the 201), and a Notion verification token when the admin
activates it. Health is written to the store in batches, so this process's pending tally is
flushed before it is shown.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python

from core.api.http import ApiError, ApiRequest, ApiResponse
from core.integrations.service import InvalidInputError
from core.runtime import get_runtime
from core.webhooks.receiver import WebhookIntake
from core.webhooks.registrations import WebhookRegistration, delivery_path


def registration_view(registration: WebhookRegistration) -> dict[str, Any]:
    return {
        "id": registration.id,
        "integrationId": registration.integration_id,
        "provider": registration.provider,
        "url": delivery_path(registration.provider, registration.integration_id),
        "events": registration.events,
        "secretConfigured": registration.secret_name is not None,
        "verification": {
            "pending": registration.pending_secret_name is not None,
            "receivedAt": to_jsonable_python(registration.pending_secret_received_at),
        },
        "health": registration.health.model_dump(mode="json", by_alias=True),
        "createdAt": to_jsonable_python(registration.created_at),
        "updatedAt": to_jsonable_python(registration.updated_at),
    }


def _receiver() -> WebhookIntake:
    return get_runtime().webhook_receiver


def create_webhook(request: ApiRequest) -> ApiResponse:
    tenant_id, integration_id = request.principal.tenant_id, request.route_params["id"]
    try:
        registration, generated = _receiver().registrations.create(
            tenant_id, integration_id, request.json()
        )
    except InvalidInputError as exc:
        errors = [problem.as_dict() for problem in exc.problems]
        raise ApiError(422, "request is invalid", errors=errors) from exc
    body = registration_view(registration)
    if generated is not None:
        body["secret"] = generated
    location = f"/api/v1/integrations/{integration_id}/webhooks/{registration.id}"
    return ApiResponse.json(body, 201, {"Location": location, "Cache-Control": "no-store"})


def list_webhooks(request: ApiRequest) -> ApiResponse:
    tenant_id, integration_id = request.principal.tenant_id, request.route_params["id"]
    receiver = _receiver()
    receiver.flush_health(tenant_id)
    registrations = receiver.registrations.list(tenant_id, integration_id)
    return ApiResponse.json({"items": [registration_view(r) for r in registrations]})


def delete_webhook(request: ApiRequest) -> ApiResponse:
    _receiver().registrations.delete(
        request.principal.tenant_id,
        request.route_params["id"],
        request.route_params["registrationId"],
    )
    return ApiResponse(204, b"")


def activate_webhook(request: ApiRequest) -> ApiResponse:
    registration, token = _receiver().registrations.activate(
        request.principal.tenant_id,
        request.route_params["id"],
        request.route_params["registrationId"],
    )
    body = registration_view(registration) | {"secret": token}
    return ApiResponse.json(body, 200, {"Cache-Control": "no-store"})
