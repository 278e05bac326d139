"""Tenant API: the fields a provider offers for an entity type (field discovery)."""

from __future__ import annotations

import azure.functions as func

from core.api.external_fields import list_external_fields
from functions.http_support import v1

bp = func.Blueprint()


@bp.route(
    route="v1/integrations/{id}/external-fields/{entityType}",
    methods=["GET"],
    auth_level=func.AuthLevel.ANONYMOUS,
)
def external_fields_get(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, list_external_fields)
