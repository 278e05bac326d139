"""The one helper every `/api/v1` route goes through: Functions request in, core API
call with authentication, Functions response out."""

from __future__ import annotations

import azure.functions as func

from core.api.auth import TENANT_ROLES
from core.api.http import ApiResponse, Handler, run_api
from core.runtime import get_runtime


def to_http_response(response: ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(
        body=response.body,
        status_code=response.status,
        headers=response.headers,
        mimetype=response.content_type,
    )


def v1(
    req: func.HttpRequest, handler: Handler, *, roles: frozenset[str] = TENANT_ROLES
) -> func.HttpResponse:
    runtime = get_runtime()
    return to_http_response(
        run_api(
            handler,
            method=req.method,
            headers=dict(req.headers),
            route_params=dict(req.route_params),
            query=dict(req.params),
            body=req.get_body(),
            verifier=runtime.token_verifier,
            tenant_claim=runtime.settings.auth_tenant_claim,
            allowed_roles=roles,
        )
    )
