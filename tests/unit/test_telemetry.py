"""core.telemetry with an in-memory OpenTelemetry SDK, and the Azure Monitor switch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from core import telemetry
from core.adapters.azure import telemetry as azure_telemetry
from core.config import Settings
from core.errors import TransientError
from core.ports import EntityDepth

SPANS = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def _sdk() -> None:
    """Install an in-memory SDK once per process (OpenTelemetry allows one provider)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(SPANS))
        trace.set_tracer_provider(provider)
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    SPANS.clear()
    yield
    telemetry.watch_queue_depth(None)


def points(name: str) -> list[Any]:
    data = READER.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def test_span_carries_the_correlation_context() -> None:
    with telemetry.span(
        "map-record",
        tenant_id="t1",
        integration_id="crm",
        correlation_id="sync-1-2024",
        attributes={"entityType": "Opportunity"},
    ):
        pass

    [span] = SPANS.get_finished_spans()
    assert span.name == "map-record"
    assert dict(span.attributes or {}) == {
        "tenantId": "t1",
        "integrationId": "crm",
        "correlationId": "sync-1-2024",
        "entityType": "Opportunity",
    }


def test_a_failing_span_is_marked_and_the_error_propagates() -> None:
    with pytest.raises(ValueError, match="bad"), telemetry.span("map-record", tenant_id="t1"):
        raise ValueError("bad")

    [span] = SPANS.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert "tenantId" in (span.attributes or {})
    assert [event.name for event in span.events] == ["exception"]


def test_counters_and_histogram_carry_tenant_and_integration() -> None:
    telemetry.record_mapped(3, tenant_id="t-m", integration_id="crm", entity_type="Account")
    telemetry.record_failed(1, tenant_id="t-m", integration_id="crm", reason="validation")
    telemetry.record_mapping_duration(12.5, tenant_id="t-m", integration_id="crm", entity_type="A")

    mapped = [p for p in points("integration.records.mapped") if p.attributes["tenantId"] == "t-m"]
    failed = [p for p in points("integration.records.failed") if p.attributes["tenantId"] == "t-m"]
    duration = [
        p for p in points("integration.mapping.duration") if p.attributes["tenantId"] == "t-m"
    ]
    assert [(p.value, p.attributes["entityType"]) for p in mapped] == [(3, "Account")]
    assert [(p.value, p.attributes["reason"]) for p in failed] == [(1, "validation")]
    assert [(p.count, p.sum) for p in duration] == [(1, 12.5)]


class DepthBus:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def entities(self) -> list[str]:
        return ["q1"]

    def depth(self, entity: str) -> EntityDepth:
        if self.fail:
            raise TransientError("down", resource=entity)
        return EntityDepth(entity, active=4, scheduled=1, locked=0, dead_letter=2)


def test_queue_depth_gauge_reads_the_bus_at_collection() -> None:
    telemetry.watch_queue_depth(lambda: DepthBus())  # type: ignore[arg-type,return-value]

    observed = {
        (p.attributes["entity"], p.attributes["state"]): p.value for p in points("bus.queue.depth")
    }

    assert observed == {("q1", "active"): 4, ("q1", "scheduled"): 1, ("q1", "dead_letter"): 2}


def test_queue_depth_gauge_reports_nothing_when_the_bus_fails() -> None:
    telemetry.watch_queue_depth(lambda: DepthBus(fail=True))  # type: ignore[arg-type,return-value]

    assert points("bus.queue.depth") == []


def test_breaker_state_gauge() -> None:
    telemetry.record_breaker_state("store", "open")
    telemetry.record_breaker_state("crm-provider", "half_open")

    observed = {p.attributes["dependency"]: p.value for p in points("resilience.breaker.state")}

    assert observed["store"] == 2
    assert observed["crm-provider"] == 1


def test_azure_monitor_is_configured_only_with_a_connection_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "azure.monitor.opentelemetry.configure_azure_monitor", lambda **kw: calls.append(kw)
    )
    monkeypatch.setattr(azure_telemetry, "_configured", False)

    assert azure_telemetry.configure_telemetry(Settings()) is False
    assert calls == []

    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000000"
    settings = Settings(APPLICATIONINSIGHTS_CONNECTION_STRING=connection)
    assert azure_telemetry.configure_telemetry(settings) is True
    assert azure_telemetry.configure_telemetry(settings) is True
    assert calls == [{"connection_string": connection, "logger_name": "core"}]
