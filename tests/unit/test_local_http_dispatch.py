"""The local host's HTTP dispatch: `async def` functions run on the event loop, like the
Functions worker runs them, and plain functions on worker threads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import azure.functions as func
import httpx

from core.local.http_server import HttpRouter, build_asgi_app
from core.local.invoker import FunctionSpec


def _spec(name: str, function: Any) -> FunctionSpec:
    trigger = {"type": "httpTrigger", "name": "req", "route": name, "methods": ["GET"]}
    return FunctionSpec(name, "httpTrigger", trigger, "req", function)


def _thread_name(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(threading.current_thread().name)


async def _thread_name_async(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(threading.current_thread().name)


async def _failing_async(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")


def test_coroutine_functions_run_on_the_loop_and_plain_ones_on_worker_threads() -> None:
    router = HttpRouter(
        [
            _spec("plain", _thread_name),
            _spec("coroutine", _thread_name_async),
            _spec("failing", _failing_async),
        ]
    )

    async def call_each() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=build_asgi_app(router))
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
            return [await client.get(f"/api/{name}") for name in ("plain", "coroutine", "failing")]

    plain, coroutine, failing = asyncio.run(call_each())
    loop_thread = threading.current_thread().name

    assert plain.status_code == 200
    assert plain.text.startswith("http-function")
    assert coroutine.status_code == 200
    assert coroutine.text == loop_thread
    assert failing.status_code == 500
    assert failing.json() == {"error": "function 'failing' failed; see the host log"}
