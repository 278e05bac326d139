"""Operational endpoints: liveness, readiness, metrics, and who-am-I for token checks."""

from __future__ import annotations

import json

import azure.functions as func

from core import metrics
from core.api.http import ApiRequest, ApiResponse
from core.errors import PortError
from core.runtime import get_runtime
from functions.http_support import v1

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse('{"status":"ok"}', mimetype="application/json")


@bp.route(route="ready", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def ready(req: func.HttpRequest) -> func.HttpResponse:
    checks: dict[str, str] = {}
    for name, probe in get_runtime().probes().items():
        try:
            probe()
            checks[name] = "ok"
        except (PortError, OSError, RuntimeError) as exc:
            checks[name] = f"failed: {exc}"
    failing = sorted(name for name, state in checks.items() if state != "ok")
    body = {"status": "ready" if not failing else "not ready", "failing": failing, "checks": checks}
    return func.HttpResponse(
        json.dumps(body), status_code=503 if failing else 200, mimetype="application/json"
    )


@bp.route(route="metrics", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def prometheus_metrics(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        metrics.render(get_runtime().bus), mimetype="text/plain; version=0.0.4"
    )


def _whoami(request: ApiRequest) -> ApiResponse:
    principal = request.principal
    return ApiResponse.json(
        {
            "subject": principal.subject,
            "tenantId": principal.tenant_id,
            "roles": sorted(principal.roles),
        }
    )


@bp.route(route="v1/whoami", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def whoami(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, _whoami)
