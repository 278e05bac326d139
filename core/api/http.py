"""The HTTP boundary of the tenant API, independent of the Functions SDK.

`run_api` authenticates, calls a handler with an `ApiRequest`, and turns every outcome
into a JSON response: 401/403 from auth, 400 for a body that is not JSON, 422 with the
failing fields for validation errors, 404/409/412/503 from the ports, and 500 with the
correlation id (never a stack trace) for anything unexpected.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from core.api.auth import (
    AuthenticationError,
    AuthorizationError,
    Principal,
    TokenVerifier,
    authenticate,
)
from core.errors import ConflictError, NotFoundError, PermanentError, TransientError
from core.logging import log_context

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, *, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


def field_errors(exc: ValidationError, *, prefix: str = "") -> list[dict[str, Any]]:
    return [
        {
            "field": prefix + ".".join(str(part) for part in item["loc"]),
            "message": item["msg"],
        }
        for item in exc.errors()
    ]


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> ApiResponse:
        if isinstance(payload, BaseModel):
            body = payload.model_dump_json(by_alias=True).encode()
        else:
            body = json.dumps(payload, default=str).encode()
        return cls(status=status, body=body, headers=headers or {})


@dataclass(slots=True)
class ApiRequest:
    principal: Principal
    method: str
    route_params: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    correlation_id: str

    def json(self) -> Any:
        if not self.body:
            raise ApiError(400, "request body is empty; expected a JSON object")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from exc

    def parse(self, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(self.json())
        except ValidationError as exc:
            raise ApiError(422, "request body is invalid", errors=field_errors(exc)) from exc


Handler = Callable[[ApiRequest], ApiResponse]


def _error(status: int, message: str, correlation_id: str, **extra: Any) -> ApiResponse:
    payload = {"error": message, "correlationId": correlation_id, **extra}
    return ApiResponse.json(payload, status)


def run_api(
    handler: Handler,
    *,
    method: str,
    headers: Mapping[str, str],
    route_params: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    verifier: TokenVerifier,
    tenant_claim: str,
    allowed_roles: frozenset[str],
) -> ApiResponse:
    lowered = {k.lower(): v for k, v in headers.items()}
    correlation_id = lowered.get("x-correlation-id") or str(uuid.uuid4())
    try:
        principal = authenticate(
            lowered.get("authorization"),
            verifier,
            tenant_claim=tenant_claim,
            allowed_roles=allowed_roles,
        )
    except AuthenticationError as exc:
        response = _error(401, str(exc), correlation_id)
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    except AuthorizationError as exc:
        return _error(403, str(exc), correlation_id)
    request = ApiRequest(principal, method.upper(), route_params, query, body, correlation_id)
    with log_context(tenantId=principal.tenant_id, correlationId=correlation_id):
        try:
            response = handler(request)
        except ApiError as exc:
            extra = {"errors": exc.errors} if exc.errors else {}
            return _error(exc.status, exc.message, correlation_id, **extra)
        except ValidationError as exc:
            return _error(422, "invalid input", correlation_id, errors=field_errors(exc))
        except NotFoundError as exc:
            return _error(404, str(exc), correlation_id)
        except ConflictError as exc:
            return _error(409, str(exc), correlation_id)
        except PermanentError as exc:
            return _error(400, str(exc), correlation_id)
        except TransientError as exc:
            response = _error(503, f"temporarily unavailable: {exc}", correlation_id)
            if exc.retry_after:
                response.headers["Retry-After"] = str(int(exc.retry_after + 0.999))
            return response
        except Exception:
            log.exception("unhandled error in API handler")
            return _error(500, "internal error; quote the correlationId", correlation_id)
    response.headers.setdefault("X-Correlation-Id", correlation_id)
    return response
