"""`GET /api/v1/integrations/{id}/external-fields/{entityType}` through its Functions route:
the tenant from the token, the provider asked live (a local HubSpot stand-in serving the
documented `GET /crm/v3/properties/{objectType}` payload), provider refusals mapped to
clear statuses."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from pytest_httpserver import HTTPServer

from core.api.auth import LocalTokenVerifier
from core.config import Settings
from core.integrations.repository import IntegrationRepository
from core.models.integration import TenantIntegration
from core.runtime import Runtime, reset_runtime
from functions.api_external_fields import external_fields_get
from tests.unit.provider_support import MemorySecrets, crm_integration, secret_name

SIGNING_KEY = "external-fields-test-key-" * 2


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime(Settings(DATA_DIR=tmp_path, LOCAL_JWT_SIGNING_KEY=SIGNING_KEY))
    runtime.__dict__["secrets"] = MemorySecrets()
    reset_runtime(runtime)
    yield runtime
    reset_runtime(None)


def _call(
    integration_id: str, entity_type: str, *, tenant: str = "t1"
) -> tuple[int, dict[str, Any]]:
    token = LocalTokenVerifier(SIGNING_KEY).issue(
        tenant_id=tenant, roles=["tenant_admin"], subject="u1"
    )
    request = func.HttpRequest(
        method="GET",
        url=f"http://localhost/api/v1/integrations/{integration_id}/external-fields/{entity_type}",
        headers={"Authorization": f"Bearer {token}"},
        route_params={"id": integration_id, "entityType": entity_type},
        body=b"",
    )
    response = external_fields_get(request)
    return response.status_code, json.loads(response.get_body())


def _hubspot(runtime: Runtime, server: HTTPServer) -> TenantIntegration:
    integration = crm_integration(
        "hubspot", refs=("apiKey",), settings={"baseUrl": server.url_for("/")}
    )
    runtime.secrets.set(secret_name(integration, "apiKey"), f"pat-{secrets.token_hex(8)}")
    return IntegrationRepository(runtime.store).create(integration)


def test_lists_the_providers_fields_for_the_entity_type(
    runtime: Runtime, httpserver: HTTPServer
) -> None:
    integration = _hubspot(runtime, httpserver)
    httpserver.expect_request("/crm/v3/properties/deals").respond_with_json(
        {
            "results": [
                {
                    "name": "dealname",
                    "label": "Deal Name",
                    "type": "string",
                    "fieldType": "text",
                    "hubspotDefined": True,
                },
                {
                    "name": "renewal_risk",
                    "label": "Renewal risk",
                    "type": "enumeration",
                    "fieldType": "select",
                },
            ]
        }
    )
    status, body = _call(integration.id, "deals")
    assert status == 200
    assert body == {
        "integrationId": integration.id,
        "provider": "hubspot",
        "entityType": "deals",
        "fields": [
            {
                "name": "id",
                "label": "Record ID",
                "type": "string",
                "nullable": False,
                "custom": False,
            },
            {
                "name": "properties.dealname",
                "label": "Deal Name",
                "type": "string",
                "nullable": True,
                "custom": False,
            },
            {
                "name": "properties.renewal_risk",
                "label": "Renewal risk",
                "type": "enumeration",
                "nullable": True,
                "custom": True,
            },
        ],
    }


def test_another_tenants_integration_does_not_exist(
    runtime: Runtime, httpserver: HTTPServer
) -> None:
    integration = _hubspot(runtime, httpserver)
    status, body = _call(integration.id, "deals", tenant="t2")
    assert status == 404
    assert integration.id in body["error"]
    assert httpserver.log == []


def test_refused_credentials_are_a_bad_gateway_naming_the_cause(
    runtime: Runtime, httpserver: HTTPServer
) -> None:
    integration = _hubspot(runtime, httpserver)
    httpserver.expect_request("/crm/v3/properties/deals").respond_with_json(
        {
            "status": "error",
            "message": "Authentication credentials not found.",
            "category": "INVALID_AUTHENTICATION",
        },
        status=401,
    )
    status, body = _call(integration.id, "deals")
    assert status == 502
    assert "refused the integration's credentials" in body["error"]
    assert secret_name(integration, "apiKey") in body["error"]


def test_an_entity_type_the_provider_does_not_have_is_not_found(
    runtime: Runtime, httpserver: HTTPServer
) -> None:
    integration = _hubspot(runtime, httpserver)
    httpserver.expect_request("/crm/v3/properties/widgets").respond_with_json(
        {
            "status": "error",
            "message": "Unable to infer object type from: widgets",
            "category": "OBJECT_NOT_FOUND",
        },
        status=404,
    )
    status, body = _call(integration.id, "widgets")
    assert status == 404
    assert "OBJECT_NOT_FOUND" in body["error"]


def test_a_provider_without_field_discovery_says_so(runtime: Runtime, tmp_path: Path) -> None:
    integration = TenantIntegration.model_validate(
        {
            "id": "files-1",
            "tenantId": "t1",
            "integrationTypeId": "files",
            "name": "export",
            "connection": {"authType": "custom", "settings": {"path": str(tmp_path)}},
        }
    )
    IntegrationRepository(runtime.store).create(integration)
    status, body = _call("files-1", "Opportunity")
    assert status == 400
    assert "provider 'files' cannot list its fields" in body["error"]
