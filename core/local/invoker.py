"""Reads a Functions app's registered functions and calls them the way the host does."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from core import metrics
from core.ids import unique_uuid
from core.logging import log_context

log = logging.getLogger("core.local.host")

HTTP = "httpTrigger"
SERVICE_BUS = "serviceBusTrigger"
TIMER = "timerTrigger"
BLOB = "blobTrigger"
SUPPORTED_TRIGGERS = (HTTP, SERVICE_BUS, TIMER, BLOB)


class UnsupportedFunctionError(RuntimeError):
    """A function uses a trigger or binding the local host cannot drive; names it."""


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    trigger_type: str
    trigger: dict[str, Any]
    arg_name: str
    user_function: Callable[..., Any]

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user_function)


def _plain(value: Any) -> Any:
    """Binding dicts hold enums (methods, auth level); keep their string values."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return getattr(value, "value", value)


_READ: dict[int, tuple[Any, list[FunctionSpec]]] = {}


def read_functions(app: Any) -> list[FunctionSpec]:
    """Every function of the app with its trigger; refuses what cannot run locally.

    The SDK's `get_functions()` may be called once per app (a second call reports every
    name as a duplicate), so the result is kept per app object.
    """
    cached = _READ.get(id(app))
    if cached is not None and cached[0] is app:
        return cached[1]
    specs = _read(app)
    _READ[id(app)] = (app, specs)
    return specs


def _read(app: Any) -> list[FunctionSpec]:
    specs: list[FunctionSpec] = []
    for function in app.get_functions():
        name = function.get_function_name()
        trigger = {k: _plain(v) for k, v in function.get_trigger().get_dict_repr().items()}
        trigger_type = trigger["type"]
        if trigger_type not in SUPPORTED_TRIGGERS:
            raise UnsupportedFunctionError(
                f"function '{name}' uses trigger '{trigger_type}', which the local host does not run"
            )
        for binding in function.get_bindings():
            data = binding.get_dict_repr()
            if data["name"] == trigger["name"] or (trigger_type == HTTP and data["type"] == "http"):
                continue
            raise UnsupportedFunctionError(
                f"function '{name}' has a '{data['type']}' binding '{data['name']}'; "
                "publish through the core ports instead of output bindings"
            )
        specs.append(
            FunctionSpec(name, trigger_type, trigger, trigger["name"], function.get_user_function())
        )
    return specs


@contextmanager
def _invocation(spec: FunctionSpec, correlation_id: str | None) -> Iterator[None]:
    """The log context, counters and failure line of one invocation."""
    invocation_id = unique_uuid()
    started = time.perf_counter()
    metrics.FUNCTION_INVOCATIONS.labels(spec.name).inc()
    with log_context(
        functionName=spec.name, invocationId=invocation_id, correlationId=correlation_id
    ):
        try:
            yield
        except BaseException as exc:
            metrics.FUNCTION_FAILURES.labels(spec.name).inc()
            log.warning(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms): %s",
                spec.name,
                invocation_id,
                (time.perf_counter() - started) * 1000,
                exc,
            )
            raise
        if spec.trigger_type != HTTP:
            log.info(
                "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
                spec.name,
                invocation_id,
                (time.perf_counter() - started) * 1000,
            )


def invoke(spec: FunctionSpec, argument: Any, *, correlation_id: str | None = None) -> Any:
    """Run one invocation on this thread (a coroutine function on an event loop of its own);
    exceptions propagate."""
    with _invocation(spec, correlation_id):
        result = spec.user_function(**{spec.arg_name: argument})
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return result


async def invoke_async(
    spec: FunctionSpec, argument: Any, *, correlation_id: str | None = None
) -> Any:
    """Run a coroutine function on the running loop, as the Functions worker runs `async def`
    functions: no thread hop, so it must not block."""
    with _invocation(spec, correlation_id):
        return await spec.user_function(**{spec.arg_name: argument})


async def _await(awaitable: Any) -> Any:
    return await awaitable
