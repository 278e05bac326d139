"""Tenant API handlers for reading shards.

Reads are confined to the caller's partition (`/tenantId` from the token): a shard of
another tenant is not found (404), never forbidden, so ids of other tenants leak nothing.
"""

from __future__ import annotations

from typing import Any

from core import containers
from core.api.http import ApiError, ApiRequest, ApiResponse
from core.api.paging import continuation_checked, page_body, page_params
from core.errors import NotFoundError
from core.models.shards import SHARD_TYPE_NAMES
from core.ports import DocumentStore, Filter
from core.runtime import get_runtime

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def shard_view(document: dict[str, Any]) -> dict[str, Any]:
    """The shard as stored, without the store's bookkeeping (`_etag`, `_ts`, ...)."""
    return {key: value for key, value in document.items() if not key.startswith("_")}


class ShardReader:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def get(self, tenant_id: str, shard_id: str) -> dict[str, Any]:
        document = self._store.get(containers.SHARDS.name, tenant_id, shard_id)
        if document is None:
            raise NotFoundError(f"shard {shard_id!r} not found", resource=f"shards/{shard_id}")
        return shard_view(document)

    def list_page(
        self,
        tenant_id: str,
        *,
        shard_type_name: str | None,
        limit: int,
        continuation: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Oldest first (by `createdAt`), optionally of one shard type."""
        filters = [Filter("shardTypeName", "==", shard_type_name)] if shard_type_name else []
        page = self._store.query(
            containers.SHARDS.name,
            partition_key=tenant_id,
            filters=filters,
            order_by="createdAt",
            limit=limit,
            continuation=continuation,
        )
        return [shard_view(document) for document in page.items], page.continuation


def list_shards(request: ApiRequest) -> ApiResponse:
    limit, token = page_params(request.query, default_limit=DEFAULT_LIMIT, max_limit=MAX_LIMIT)
    shard_type_name = request.query.get("shardTypeName") or None
    if shard_type_name is not None and shard_type_name not in SHARD_TYPE_NAMES:
        raise ApiError(
            422,
            "invalid query parameter",
            errors=[
                {
                    "field": "shardTypeName",
                    "message": f"unknown shard type {shard_type_name!r} "
                    f"(known: {', '.join(SHARD_TYPE_NAMES)})",
                }
            ],
        )
    with continuation_checked(token):
        items, continuation = ShardReader(get_runtime().store).list_page(
            request.principal.tenant_id,
            shard_type_name=shard_type_name,
            limit=limit,
            continuation=token,
        )
    return ApiResponse.json(page_body(items, continuation))


def get_shard(request: ApiRequest) -> ApiResponse:
    shard = ShardReader(get_runtime().store).get(
        request.principal.tenant_id, request.route_params["id"]
    )
    return ApiResponse.json(shard)
