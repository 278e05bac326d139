"""Field discovery for the mapping API: `GET /api/v1/integrations/{id}/external-fields/
{entityType}` lists the fields a provider has for an entity type, named as the mapping's
`source` paths read them from `rawData`, so an admin maps fields that exist.

The provider is asked live with the integration's own credentials (one describe call);
its refusals keep their meaning: an unknown entity type is 404, refused credentials 502
with the provider's reason (the integration needs reconnecting), throttling 503 with
Retry-After.
"""

from __future__ import annotations

from typing import cast

from core.api.http import ApiError, ApiRequest, ApiResponse
from core.errors import AuthError
from core.integrations.repository import IntegrationRepository
from core.providers.base import DescribableAdapter
from core.providers.registry import build_provider
from core.runtime import get_runtime


def list_external_fields(request: ApiRequest) -> ApiResponse:
    runtime = get_runtime()
    tenant_id = request.principal.tenant_id
    integration_id = request.route_params["id"]
    entity_type = request.route_params["entityType"].strip()
    if not entity_type:
        raise ApiError(400, "entityType is empty")
    integration = IntegrationRepository(runtime.store).get(tenant_id, integration_id)
    provider = integration.integration_type_id
    adapter = build_provider(
        provider, integration.connection.settings, secrets=runtime.secrets, integration=integration
    )
    describe = getattr(adapter, "describe", None)
    if describe is None:
        raise ApiError(
            400, f"provider {provider!r} cannot list its fields; map the fields its records carry"
        )
    try:
        fields = cast(DescribableAdapter, adapter).describe(entity_type)
    except AuthError as exc:
        raise ApiError(502, f"the provider refused the integration's credentials: {exc}") from exc
    finally:
        close = getattr(adapter, "close", None)
        if close is not None:
            close()
    return ApiResponse.json(
        {
            "integrationId": integration.id,
            "provider": provider,
            "entityType": entity_type,
            "fields": [field.to_json() for field in fields],
        }
    )
