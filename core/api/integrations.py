"""Tenant API handlers for integrations, their mappings and their syncs.

Each handler takes the `ApiRequest` (tenant from the token), calls `IntegrationService`
or `SyncExecutions`, and shapes the JSON answer. Rules live in the services; an
integration of another tenant does not exist here (404). Responses never carry secrets:
an integration shows its non-secret connection settings only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic_core import to_jsonable_python

from core.api.http import ApiError, ApiRequest, ApiResponse
from core.api.paging import continuation_checked, page_body, page_params
from core.integrations.service import (
    IntegrationService,
    InvalidInputError,
    MappingTrial,
    custom_fields_of,
)
from core.mapping import FieldError, ValidationOutcome
from core.models.integration import EntityMapping, SyncExecution, TenantIntegration
from core.runtime import get_runtime

INTEGRATIONS_PAGE = (50, 200)
HISTORY_PAGE = (20, 200)


def _service() -> IntegrationService:
    runtime = get_runtime()
    return IntegrationService(
        runtime.store,
        runtime.clock,
        runtime.integration_cache,
        validation_mode=runtime.settings.validation_mode,
    )


@contextmanager
def _unprocessable() -> Iterator[None]:
    try:
        yield
    except InvalidInputError as exc:
        errors = [problem.as_dict() for problem in exc.problems]
        raise ApiError(422, "request is invalid", errors=errors) from exc


def _body(request: ApiRequest) -> Any:
    """The JSON body, or None when there is none (for bodies that are optional)."""
    return request.json() if request.body.strip() else None


# --------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------


def entity_mapping_view(mapping: EntityMapping) -> dict[str, Any]:
    return mapping.model_dump(mode="json", by_alias=True) | {
        "customFields": custom_fields_of(mapping)
    }


def integration_view(integration: TenantIntegration) -> dict[str, Any]:
    return {
        "id": integration.id,
        "provider": integration.integration_type_id,
        "name": integration.name,
        "status": integration.status,
        "enabled": integration.enabled,
        "config": to_jsonable_python(integration.connection.settings),
        "syncConfig": integration.sync_config.model_dump(
            mode="json", by_alias=True, exclude={"entity_mappings"}
        ),
        "entityMappings": [
            entity_mapping_view(mapping) for mapping in integration.sync_config.entity_mappings
        ],
        "customTransforms": [
            transform.model_dump(mode="json", by_alias=True)
            for transform in integration.custom_transforms
        ],
        "configVersion": integration.config_version,
        "createdAt": to_jsonable_python(integration.created_at),
        "updatedAt": to_jsonable_python(integration.updated_at),
    }


def sync_config_view(integration: TenantIntegration) -> dict[str, Any]:
    return integration.sync_config.model_dump(
        mode="json", by_alias=True, exclude={"entity_mappings"}
    ) | {
        "entityMappings": [
            entity_mapping_view(mapping) for mapping in integration.sync_config.entity_mappings
        ],
        "configVersion": integration.config_version,
    }


def field_mappings_view(mapping: EntityMapping, config_version: int) -> dict[str, Any]:
    return entity_mapping_view(mapping) | {"configVersion": config_version}


def execution_view(execution: SyncExecution) -> dict[str, Any]:
    document = execution.to_document()
    document.pop("docType", None)
    return document


def _field_errors(errors: list[FieldError]) -> list[dict[str, Any]]:
    return [
        to_jsonable_python(error.model_dump(exclude_none=True), fallback=repr) for error in errors
    ]


def _outcome_view(outcome: ValidationOutcome) -> dict[str, Any]:
    return {
        "accepted": outcome.accepted,
        "data": to_jsonable_python(outcome.data, fallback=repr),
        "errors": _field_errors(outcome.errors),
        "warnings": _field_errors(outcome.warnings),
    }


def trial_view(trial: MappingTrial) -> dict[str, Any]:
    return {
        "entityType": trial.entity_mapping.entity_type,
        "shardTypeName": trial.entity_mapping.shard_type_name,
        "data": to_jsonable_python(trial.result.data, fallback=repr),
        "errors": _field_errors(trial.result.errors),
        "warnings": _field_errors(trial.result.warnings),
        "validation": {"mode": trial.mode.value, **_outcome_view(trial.outcomes[trial.mode])},
        "validationByMode": {
            mode.value: _outcome_view(outcome) for mode, outcome in trial.outcomes.items()
        },
    }


# --------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------


def create_integration(request: ApiRequest) -> ApiResponse:
    with _unprocessable():
        integration = _service().create(request.principal.tenant_id, request.json())
    location = f"/api/v1/integrations/{integration.id}"
    return ApiResponse.json(integration_view(integration), 201, {"Location": location})


def list_integrations(request: ApiRequest) -> ApiResponse:
    default_limit, max_limit = INTEGRATIONS_PAGE
    limit, token = page_params(request.query, default_limit=default_limit, max_limit=max_limit)
    with continuation_checked(token):
        integrations, continuation = _service().list_integrations(
            request.principal.tenant_id, limit=limit, continuation=token
        )
    return ApiResponse.json(page_body([integration_view(i) for i in integrations], continuation))


def get_integration(request: ApiRequest) -> ApiResponse:
    integration = _service().get(request.principal.tenant_id, request.route_params["id"])
    return ApiResponse.json(integration_view(integration))


def get_sync_config(request: ApiRequest) -> ApiResponse:
    integration = _service().get(request.principal.tenant_id, request.route_params["id"])
    return ApiResponse.json(sync_config_view(integration))


def put_sync_config(request: ApiRequest) -> ApiResponse:
    with _unprocessable():
        integration = _service().replace_sync_config(
            request.principal.tenant_id, request.route_params["id"], request.json()
        )
    return ApiResponse.json(sync_config_view(integration))


def get_field_mappings(request: ApiRequest) -> ApiResponse:
    service = _service()
    tenant_id, integration_id = request.principal.tenant_id, request.route_params["id"]
    integration = service.get(tenant_id, integration_id)
    mapping = service.field_mappings(tenant_id, integration_id, request.route_params["entityType"])
    return ApiResponse.json(field_mappings_view(mapping, integration.config_version))


def put_field_mappings(request: ApiRequest) -> ApiResponse:
    with _unprocessable():
        integration, mapping = _service().replace_field_mappings(
            request.principal.tenant_id,
            request.route_params["id"],
            request.route_params["entityType"],
            request.json(),
        )
    return ApiResponse.json(field_mappings_view(mapping, integration.config_version))


def try_field_mappings(request: ApiRequest) -> ApiResponse:
    with _unprocessable():
        trial = _service().try_mapping(
            request.principal.tenant_id,
            request.route_params["id"],
            request.route_params["entityType"],
            request.json(),
        )
    return ApiResponse.json(trial_view(trial))


def list_transform_functions(request: ApiRequest) -> ApiResponse:
    """The built-in transforms; with `?integrationId=` also that integration's own."""
    integration_id = request.query.get("integrationId") or None
    transforms = _service().transform_functions(request.principal.tenant_id, integration_id)
    return ApiResponse.json(
        {"items": [transform.model_dump(by_alias=True) for transform in transforms]}
    )


def request_sync(request: ApiRequest) -> ApiResponse:
    tenant_id, integration_id = request.principal.tenant_id, request.route_params["id"]
    with _unprocessable():
        mode, entity_types = _service().sync_request(tenant_id, integration_id, _body(request))
    execution = get_runtime().executions.request(
        tenant_id, integration_id, trigger="manual", mode=mode, entity_types=entity_types
    )
    location = f"/api/v1/integrations/{integration_id}/sync-history/{execution.id}"
    return ApiResponse.json(
        {"executionId": execution.id, **execution_view(execution)}, 202, {"Location": location}
    )


def sync_history(request: ApiRequest) -> ApiResponse:
    """One integration's executions, newest first; with `{executionId}`, that execution."""
    tenant_id, integration_id = request.principal.tenant_id, request.route_params["id"]
    _service().get(tenant_id, integration_id)
    executions = get_runtime().executions
    execution_id = request.route_params.get("executionId")
    if execution_id:
        execution = executions.get(tenant_id, execution_id)
        if execution.integration_id != integration_id:
            raise ApiError(
                404, f"sync execution {execution_id!r} not found for integration {integration_id!r}"
            )
        return ApiResponse.json(execution_view(execution))
    default_limit, max_limit = HISTORY_PAGE
    limit, token = page_params(request.query, default_limit=default_limit, max_limit=max_limit)
    with continuation_checked(token):
        items, continuation = executions.history(
            tenant_id, integration_id, limit=limit, continuation=token
        )
    return ApiResponse.json(page_body([execution_view(item) for item in items], continuation))
