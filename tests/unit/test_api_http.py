import json

import pytest
from pydantic import BaseModel, Field

from core.api.auth import TENANT_ROLES, LocalTokenVerifier
from core.api.http import ApiRequest, ApiResponse, run_api
from core.errors import ConflictError, NotFoundError, TransientError

KEY = "test-signing-key-" * 3
VERIFIER = LocalTokenVerifier(KEY)


class Body(BaseModel):
    name: str = Field(min_length=1)
    size: int


def _call(handler, body: bytes = b"", headers: dict[str, str] | None = None):
    token = VERIFIER.issue(tenant_id="t1", roles=["tenant_admin"], subject="u")
    return run_api(
        handler,
        method="POST",
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
        route_params={},
        query={"tenantId": "someone-else"},
        body=body,
        verifier=VERIFIER,
        tenant_claim="tid",
        allowed_roles=TENANT_ROLES,
    )


def _parse(request: ApiRequest) -> ApiResponse:
    parsed = request.parse(Body)
    return ApiResponse.json({"tenant": request.principal.tenant_id, "name": parsed.name}, 201)


def test_valid_body_reaches_the_handler_with_the_tokens_tenant():
    response = _call(_parse, json.dumps({"name": "x", "size": 1}).encode())
    assert response.status == 201
    assert json.loads(response.body) == {"tenant": "t1", "name": "x"}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"", 400, "empty"),
        (b"{not json", 400, "not valid JSON"),
        (json.dumps({"name": "", "size": "big"}).encode(), 422, None),
    ],
)
def test_bad_bodies(body, status, needle):
    response = _call(_parse, body)
    payload = json.loads(response.body)
    assert response.status == status
    assert payload["correlationId"]
    if needle:
        assert needle in payload["error"]
    else:
        assert {e["field"] for e in payload["errors"]} == {"name", "size"}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFoundError("integration i9 not found"), 404),
        (ConflictError("etag mismatch on shards/s1"), 409),
        (TransientError("store throttled", retry_after=1.2), 503),
        (RuntimeError("boom with secret=hunter2"), 500),
    ],
)
def test_errors_map_to_statuses_and_never_leak_internals(error, status):
    def handler(request):
        raise error

    response = _call(handler, headers={"X-Correlation-Id": "corr-7"})
    payload = json.loads(response.body)
    assert response.status == status
    assert payload["correlationId"] == "corr-7"
    if status == 503:
        assert response.headers["Retry-After"] == "2"
    if status == 500:
        assert "hunter2" not in payload["error"]
        assert "correlationId" in payload["error"]


def test_no_token_never_reaches_the_handler():
    called = []
    response = run_api(
        lambda r: called.append(r) or ApiResponse.json({}),
        method="GET",
        headers={},
        route_params={},
        query={},
        body=b"",
        verifier=VERIFIER,
        tenant_claim="tid",
        allowed_roles=TENANT_ROLES,
    )
    assert response.status == 401
    assert called == []
