"""Process metrics in Prometheus form (served by `GET /api/metrics`).

Counters live in one registry per process; bus depths are read from the Bus port at
scrape time, so a scrape always shows the broker's current state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.errors import PortError

if TYPE_CHECKING:
    from core.ports import Bus

REGISTRY = CollectorRegistry(auto_describe=True)

FUNCTION_INVOCATIONS = Counter(
    "function_invocations", "Function invocations", ["function"], registry=REGISTRY
)
FUNCTION_FAILURES = Counter(
    "function_failures", "Function invocations that raised", ["function"], registry=REGISTRY
)
MESSAGES_DEAD_LETTERED = Counter(
    "messages_dead_lettered",
    "Messages a host dead-lettered, by reason",
    ["entity", "reason"],
    registry=REGISTRY,
)
WEBHOOKS_RECEIVED = Counter(
    "webhooks_received",
    "Webhook deliveries by scheme and outcome (accepted, duplicate, handshake, rejected, ...)",
    ["provider", "outcome"],
    registry=REGISTRY,
)
WEBHOOKS_REJECTED = Counter(
    "webhooks_rejected",
    "Webhook deliveries refused by their scheme, by reason",
    ["provider", "reason"],
    registry=REGISTRY,
)
WEBHOOK_EVENTS = Counter(
    "webhook_events",
    "Events of accepted webhook deliveries by what became of them",
    ["provider", "outcome"],
    registry=REGISTRY,
)
SCHEDULER_SKIPPED = Counter(
    "scheduler_skipped",
    "Scheduler ticks (backpressure) or due syncs (error) that enqueued nothing",
    ["reason"],
    registry=REGISTRY,
)
SYNCS_SCHEDULED = Counter(
    "syncs_scheduled", "Syncs the scheduler enqueued, by mode", ["mode"], registry=REGISTRY
)


class BusDepthCollector(Collector):
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def collect(self) -> Iterator[GaugeMetricFamily]:
        active = GaugeMetricFamily("bus_active_messages", "Active messages", labels=["entity"])
        scheduled = GaugeMetricFamily(
            "bus_scheduled_messages", "Scheduled messages", labels=["entity"]
        )
        dead = GaugeMetricFamily("bus_dead_letter_messages", "Dead-letter depth", labels=["entity"])
        try:
            for entity in self._bus.entities():
                depth = self._bus.depth(entity)
                active.add_metric([entity], depth.active)
                scheduled.add_metric([entity], depth.scheduled)
                dead.add_metric([entity], depth.dead_letter)
        except PortError:
            return
        yield active
        yield scheduled
        yield dead


def render(bus: Bus | None = None) -> bytes:
    """The registry's counters plus, when a bus is given, its depths."""
    if bus is None:
        return generate_latest(REGISTRY)
    scrape = CollectorRegistry()
    scrape.register(_Forward(REGISTRY))
    scrape.register(BusDepthCollector(bus))
    return generate_latest(scrape)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._registry.collect()  # type: ignore[misc]
