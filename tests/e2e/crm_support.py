"""Helpers for CRM end-to-end tests: a demo-data integration, syncs, and an observer
subscription on each topic that keeps a copy of every event for assertions."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from core import containers
from core.adapters.local.sqlite_bus import SqliteBus
from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.integrations.repository import IntegrationRepository
from core.messaging import topology
from core.messaging.topology import TOPOLOGY, SubscriptionSpec, TopicSpec, subscription_path
from core.models.events import decode_envelope
from core.models.integration import ConnectionConfig, SyncConfig, SyncExecution, TenantIntegration
from core.ports import Filter
from core.providers.registry import default_custom_transforms, default_entity_mappings
from core.runtime import SystemClock
from core.sync.executions import SyncExecutions

OBSERVER = "test-observer"
TENANT = "tenant-e2e"
INTEGRATION = "crm-e2e"


def add_observers(bus: SqliteBus) -> None:
    for topic in TOPOLOGY.topics:
        bus.create_topic(TopicSpec(topic.name, (*topic.subscriptions, SubscriptionSpec(OBSERVER))))


class CrmWorld:
    def __init__(self, data_dir: Path, source_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.source_dir = source_dir
        self.store = SqliteDocumentStore(data_dir / "store.sqlite")
        self.bus = SqliteBus(data_dir / "bus.sqlite")
        self.executions = SyncExecutions(self.store, self.bus, SystemClock())
        self.events: list[Any] = []

    def observe(self) -> None:
        """Call after the host started: its bus declares the topology, ours adds to it."""
        add_observers(self.bus)

    def create_integration(self) -> TenantIntegration:
        integration = TenantIntegration(
            id=INTEGRATION,
            tenant_id=TENANT,
            integration_type_id="files",
            name="e2e files",
            connection=ConnectionConfig(
                auth_type="custom", settings={"path": str(self.source_dir), "shape": "salesforce"}
            ),
            sync_config=SyncConfig(entity_mappings=default_entity_mappings("files")),
            custom_transforms=default_custom_transforms("files"),
        )
        return IntegrationRepository(self.store).create(integration)

    def sync(self, mode: str = "full", timeout: float = 180) -> SyncExecution:
        execution = self.executions.request(TENANT, INTEGRATION, mode=mode)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.executions.get(TENANT, execution.id)
            if current.status in ("completed", "partial", "failed"):
                return current
            time.sleep(0.2)
        raise AssertionError(f"sync {execution.id} not finished: {current.model_dump()}")

    def drain_events(self) -> list[Any]:
        """Every event the observers received since the last drain."""
        drained = []
        for topic in TOPOLOGY.topics:
            entity = subscription_path(topic.name, OBSERVER)
            while True:
                batch = self.bus.receive(entity, max_messages=500)
                if not batch:
                    break
                for message in batch:
                    drained.append(decode_envelope(message.body))
                    self.bus.complete(message)
        self.events.extend(drained)
        return drained

    def wait_for_events(self, event_type: str, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain_events()
            if sum(1 for event in self.events if event.type == event_type) >= count:
                return
            time.sleep(0.2)
        raise AssertionError(f"fewer than {count} {event_type} events within {timeout}s")

    def shard_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for name in ("Opportunity", "Account", "Contact", "Lead"):
            counts[name] = self.store.count(
                containers.SHARDS.name,
                partition_key=TENANT,
                filters=[Filter("shardTypeName", "==", name)],
            )
        return counts

    def close(self) -> None:
        self.bus.close()


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_ndjson(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


__all__ = ["CrmWorld", "topology"]
