"""Traces and metrics through the OpenTelemetry API: what the domain may import.

Without a configured SDK (local runs, tests) every call here is a cheap no-op; in Azure,
`core.adapters.azure.telemetry.configure_telemetry` installs the Azure Monitor exporter
and the same spans and instruments go to Application Insights. The domain never imports
an Azure SDK for telemetry, only this module.

Span attributes carry the correlation context (`tenantId`, `integrationId`,
`correlationId`) so a record can be followed from sync to shard across functions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Literal

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, Status, StatusCode

from core.errors import PortError
from core.ports import Bus

INSTRUMENTATION_NAME = "integration-data-flow"

BreakerState = Literal["closed", "half_open", "open"]
BREAKER_STATE_VALUES: dict[BreakerState, int] = {"closed": 0, "half_open": 1, "open": 2}

_tracer = trace.get_tracer(INSTRUMENTATION_NAME)
_meter = metrics.get_meter(INSTRUMENTATION_NAME)

RECORDS_MAPPED = _meter.create_counter(
    "integration.records.mapped", unit="{record}", description="Records mapped into shards"
)
RECORDS_FAILED = _meter.create_counter(
    "integration.records.failed",
    unit="{record}",
    description="Records that failed mapping for good (quarantined)",
)
MAPPING_DURATION = _meter.create_histogram(
    "integration.mapping.duration", unit="ms", description="Time to map one record"
)


@contextmanager
def span(
    name: str,
    *,
    tenant_id: str | None = None,
    integration_id: str | None = None,
    correlation_id: str | None = None,
    attributes: dict[str, str | int | float | bool] | None = None,
) -> Iterator[Span]:
    """A current span with the correlation context; an exception marks it failed."""
    context = {
        "tenantId": tenant_id,
        "integrationId": integration_id,
        "correlationId": correlation_id,
    }
    with _tracer.start_as_current_span(name, record_exception=True) as current:
        for key, value in {**context, **(attributes or {})}.items():
            if value is not None:
                current.set_attribute(key, value)
        try:
            yield current
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def _labels(tenant_id: str, integration_id: str, **more: str) -> dict[str, str]:
    return {"tenantId": tenant_id, "integrationId": integration_id, **more}


def record_mapped(count: int, *, tenant_id: str, integration_id: str, entity_type: str) -> None:
    RECORDS_MAPPED.add(count, _labels(tenant_id, integration_id, entityType=entity_type))


def record_failed(count: int, *, tenant_id: str, integration_id: str, reason: str) -> None:
    RECORDS_FAILED.add(count, _labels(tenant_id, integration_id, reason=reason))


def record_mapping_duration(
    milliseconds: float, *, tenant_id: str, integration_id: str, entity_type: str
) -> None:
    MAPPING_DURATION.record(
        milliseconds, _labels(tenant_id, integration_id, entityType=entity_type)
    )


class _Gauges:
    """State behind the observable gauges, read at each collection."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bus: Callable[[], Bus] | None = None
        self.breakers: dict[str, BreakerState] = {}


_gauges = _Gauges()


def watch_queue_depth(bus: Callable[[], Bus] | None) -> None:
    """Report the depth of `bus()`'s entities on each collection (the last call wins;
    None stops reporting)."""
    with _gauges.lock:
        _gauges.bus = bus


def record_breaker_state(dependency: str, state: BreakerState) -> None:
    with _gauges.lock:
        _gauges.breakers[dependency] = state


def _observe_depth(options: CallbackOptions) -> Iterable[Observation]:
    with _gauges.lock:
        provider = _gauges.bus
    if provider is None:
        return []
    observations = []
    try:
        bus = provider()
        for entity in bus.entities():
            depth = bus.depth(entity)
            observations.append(Observation(depth.active, {"entity": entity, "state": "active"}))
            observations.append(
                Observation(depth.scheduled, {"entity": entity, "state": "scheduled"})
            )
            observations.append(
                Observation(depth.dead_letter, {"entity": entity, "state": "dead_letter"})
            )
    except PortError:
        return []
    return observations


def _observe_breakers(options: CallbackOptions) -> Iterable[Observation]:
    with _gauges.lock:
        states = dict(_gauges.breakers)
    return [
        Observation(BREAKER_STATE_VALUES[state], {"dependency": dependency})
        for dependency, state in states.items()
    ]


QUEUE_DEPTH = _meter.create_observable_gauge(
    "bus.queue.depth",
    callbacks=[_observe_depth],
    unit="{message}",
    description="Messages per entity and state (active, scheduled, dead_letter)",
)
BREAKER_STATE = _meter.create_observable_gauge(
    "resilience.breaker.state",
    callbacks=[_observe_breakers],
    description="Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open",
)
