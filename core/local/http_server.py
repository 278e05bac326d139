"""HTTP triggers under `/api`, served by uvicorn like `func start` serves them."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.local.invoker import HTTP, FunctionSpec, invoke, invoke_async
from core.local.routes import CompiledRoute, compile_route

log = logging.getLogger("core.local.host")

ROUTE_PREFIX = "api"
MAX_BODY_BYTES = 100 * 1024 * 1024  # the Functions host's default request size limit
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
FUNCTION_THREADS = 40
"""As many concurrent invocations as starlette's default thread limit allowed."""


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps({"error": message}), status, headers=headers, media_type="application/json"
    )


class HttpRouter:
    """Routes in the host's precedence order. A route whose first segment is literal can only
    match paths that start with it, so each first segment has its own list (its routes and
    the ones that start with a parameter, in precedence order): a request tries the few
    routes that could match instead of every route of the app."""

    def __init__(self, specs: list[FunctionSpec]) -> None:
        entries: list[tuple[CompiledRoute, frozenset[str], FunctionSpec]] = []
        for spec in specs:
            if spec.trigger_type != HTTP:
                continue
            template = spec.trigger.get("route") or spec.name
            methods = frozenset(m.upper() for m in (spec.trigger.get("methods") or _ALL_METHODS))
            entries.append((compile_route(template), methods, spec))
        entries.sort(key=lambda entry: entry[0].precedence)
        self._entries = entries
        self._by_first = {
            first: [e for e in entries if e[0].first_literal in (first, None)]
            for first in {e[0].first_literal for e in entries}
            if first is not None
        }
        self._parameter_first = [e for e in entries if e[0].first_literal is None]

    def resolve(
        self, path: str, method: str
    ) -> tuple[FunctionSpec, dict[str, str]] | tuple[None, set[str]]:
        allowed: set[str] = set()
        first = path.strip("/").split("/", 1)[0]
        for route, methods, spec in self._by_first.get(first, self._parameter_first):
            params = route.match(path)
            if params is None:
                continue
            if method in methods:
                return spec, params
            allowed |= methods
        return None, allowed

    @property
    def templates(self) -> list[str]:
        return [route.template for route, _, _ in self._entries]


def _to_response(result: Any) -> Response:
    if isinstance(result, func.HttpResponse):
        return Response(
            result.get_body(),
            result.status_code,
            headers=dict(result.headers),
            media_type=result.mimetype,
        )
    if result is None:
        return Response(status_code=204)
    if isinstance(result, (bytes, str)):
        return Response(result, 200)
    return Response(json.dumps(result), 200, media_type="application/json")


def build_asgi_app(router: HttpRouter) -> Starlette:
    """Functions run on a plain executor rather than `run_in_threadpool`: under load,
    anyio's capacity limiter, cancel scope and run-var lookups took about a fifth of the
    event loop's time (py-spy), for the same thread hop."""
    executor = ThreadPoolExecutor(FUNCTION_THREADS, thread_name_prefix="http-function")

    async def dispatch(request: Request) -> Response:
        path = request.url.path
        prefix = f"/{ROUTE_PREFIX}/"
        if not path.startswith(prefix):
            return _json_error(404, f"no function serves {path}; routes live under /{ROUTE_PREFIX}")
        spec, found = router.resolve(path[len(prefix) :], request.method)
        if spec is None:
            if found:
                return _json_error(
                    405,
                    f"method {request.method} not allowed for {path}",
                    {"Allow": ", ".join(sorted(found))},
                )
            return _json_error(404, f"no function serves {request.method} {path}")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _json_error(413, f"request body over {MAX_BODY_BYTES} bytes")
        body = await request.body()
        assert isinstance(found, dict)
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query_params) if request.scope["query_string"] else {},
            route_params=found,
            body=body,
        )
        correlation_id = request.headers.get("x-correlation-id")
        try:
            if spec.is_async:
                result = await invoke_async(spec, http_request, correlation_id=correlation_id)
            else:
                call = functools.partial(invoke, spec, http_request, correlation_id=correlation_id)
                result = await asyncio.get_running_loop().run_in_executor(
                    executor, contextvars.copy_context().run, call
                )
        except Exception:
            log.exception("HTTP function '%s' raised", spec.name)
            return _json_error(500, f"function '{spec.name}' failed; see the host log")
        return _to_response(result)

    return Starlette(routes=[Route("/{path:path}", dispatch, methods=_ALL_METHODS)])
