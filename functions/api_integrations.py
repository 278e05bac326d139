"""Tenant API: integrations, their sync config and field mappings, transforms and syncs.

Thin routes: `v1` authenticates and runs the core handler. Literal segments win over
parameters (`transform-functions` is not an `{id}`), here as in Azure.
"""

from __future__ import annotations

import azure.functions as func

from core.api import integrations as api
from functions.http_support import v1

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


@bp.route(route="v1/integrations", methods=["POST"], auth_level=ANONYMOUS)
def integrations_create(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.create_integration)


@bp.route(route="v1/integrations", methods=["GET"], auth_level=ANONYMOUS)
def integrations_list(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.list_integrations)


@bp.route(route="v1/integrations/transform-functions", methods=["GET"], auth_level=ANONYMOUS)
def transform_functions_list(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.list_transform_functions)


@bp.route(route="v1/integrations/{id}", methods=["GET"], auth_level=ANONYMOUS)
def integration_get(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.get_integration)


@bp.route(route="v1/integrations/{id}/sync-config", methods=["GET"], auth_level=ANONYMOUS)
def sync_config_get(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.get_sync_config)


@bp.route(route="v1/integrations/{id}/sync-config", methods=["PUT"], auth_level=ANONYMOUS)
def sync_config_put(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.put_sync_config)


@bp.route(
    route="v1/integrations/{id}/field-mappings/{entityType}",
    methods=["GET"],
    auth_level=ANONYMOUS,
)
def field_mappings_get(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.get_field_mappings)


@bp.route(
    route="v1/integrations/{id}/field-mappings/{entityType}",
    methods=["PUT"],
    auth_level=ANONYMOUS,
)
def field_mappings_put(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.put_field_mappings)


@bp.route(
    route="v1/integrations/{id}/field-mappings/{entityType}/test",
    methods=["POST"],
    auth_level=ANONYMOUS,
)
def field_mappings_test(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.try_field_mappings)


@bp.route(route="v1/integrations/{id}/sync", methods=["POST"], auth_level=ANONYMOUS)
def integration_sync(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.request_sync)


@bp.route(
    route="v1/integrations/{id}/sync-history/{executionId?}",
    methods=["GET"],
    auth_level=ANONYMOUS,
)
def integration_sync_history(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.sync_history)
