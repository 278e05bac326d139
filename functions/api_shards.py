"""Tenant API: reading shards (the caller's tenant only)."""

from __future__ import annotations

import azure.functions as func

from core.api import shards as api
from functions.http_support import v1

bp = func.Blueprint()


@bp.route(route="v1/shards", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def shards_list(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.list_shards)


@bp.route(route="v1/shards/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def shard_get(req: func.HttpRequest) -> func.HttpResponse:
    return v1(req, api.get_shard)
