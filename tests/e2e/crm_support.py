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
from core.config import Settings
from core.integrations.repository import IntegrationRepository
from core.messaging import topology
from core.messaging.topology import TOPOLOGY, SubscriptionSpec, TopicSpec, subscription_path
from core.models import crm_events
from core.models.events import decode_envelope
from core.models.integration import ConnectionConfig, SyncConfig, SyncExecution, TenantIntegration
from core.models.shards import deterministic_shard_id
from core.ports import DocumentStore, Filter
from core.providers.registry import default_custom_transforms, default_entity_mappings
from core.runtime import Runtime, SystemClock
from core.sync.executions import SyncExecutions

OBSERVER = "test-observer"
ENTITY_TYPES = ("Opportunity", "Account", "Contact", "Lead")
TENANT = "tenant-e2e"
INTEGRATION = "crm-e2e"


def add_observers(bus: SqliteBus) -> None:
    for topic in TOPOLOGY.topics:
        bus.create_topic(TopicSpec(topic.name, (*topic.subscriptions, SubscriptionSpec(OBSERVER))))


class CrmWorld:
    """The test's view of what the host works on: the same store (SQLite file, or the
    server named in `env`) and the same local bus file."""

    def __init__(
        self,
        data_dir: Path,
        source_dir: Path,
        *,
        env: dict[str, str] | None = None,
        tenant: str = TENANT,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.source_dir = source_dir
        self.env = env or {}
        self.tenant = tenant
        self.store: DocumentStore = (
            Runtime(Settings(**self.env, DATA_DIR=data_dir)).store  # type: ignore[arg-type]
            if self.env
            else SqliteDocumentStore(data_dir / "store.sqlite")
        )
        self.bus = SqliteBus(data_dir / "bus.sqlite")
        self.executions = SyncExecutions(self.store, self.bus, SystemClock())
        self.events: list[Any] = []

    def observe(self) -> None:
        """Call after the host started: its bus declares the topology, ours adds to it."""
        add_observers(self.bus)

    def create_integration(self) -> TenantIntegration:
        integration = TenantIntegration(
            id=INTEGRATION,
            tenant_id=self.tenant,
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
        execution = self.executions.request(self.tenant, INTEGRATION, mode=mode)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.executions.get(self.tenant, execution.id)
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
                partition_key=self.tenant,
                filters=[Filter("shardTypeName", "==", name)],
            )
        return counts

    def close(self) -> None:
        self.bus.close()


OPEN_STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Value Proposition")


def _types(events: list[Any]) -> Counter[str]:
    return Counter(event.type for event in events)


def check_sync_resync_and_a_stage_change(world: CrmWorld) -> None:
    """Acceptance: every record becomes one shard with mapped fields and relationships;
    a full re-sync changes nothing and emits no opportunity events; one stage change at
    the source gives exactly one `integration.opportunity.updated` with ["stage"]."""
    source = world.source_dir
    records = {name: read_ndjson(source / f"{name}.ndjson") for name in ENTITY_TYPES}
    opportunities = records["Opportunity"]
    total = sum(len(rows) for rows in records.values())

    first = world.sync()
    assert first.status == "completed", first.model_dump()
    assert first.counters.total == total
    assert first.counters.created == total
    assert first.counters.processed == total
    assert world.shard_counts() == Counter({name: len(rows) for name, rows in records.items()})
    sample = opportunities[0]
    shard = world.store.get(
        containers.SHARDS.name,
        world.tenant,
        deterministic_shard_id(world.tenant, INTEGRATION, "Opportunity", sample["Id"]),
    )
    assert shard is not None
    assert shard["structuredData"]["name"] == sample["Name"]
    assert shard["structuredData"]["stage"] == sample["StageName"]
    account_link = [r for r in shard["relationships"] if r["type"] == "account"]
    assert account_link[0]["targetShardId"] == deterministic_shard_id(
        world.tenant, INTEGRATION, "Account", sample["AccountId"]
    )
    world.wait_for_events(crm_events.SYNC_COMPLETED, 1)
    world.wait_for_events(crm_events.OPPORTUNITY_CREATED, len(opportunities))
    assert _types(world.events)[crm_events.SHARD_CREATED] == total

    world.events.clear()
    second = world.sync(mode="full")
    assert second.status == "completed"
    assert second.counters.unchanged == total
    assert second.counters.created == second.counters.updated == 0
    world.wait_for_events(crm_events.SYNC_COMPLETED, 1)
    seen = _types(world.events)
    assert seen[crm_events.OPPORTUNITY_UPDATED] == 0
    assert seen[crm_events.OPPORTUNITY_CREATED] == 0
    assert seen[crm_events.OPPORTUNITIES_UPDATED_BATCH] == 0
    assert seen[crm_events.SHARD_UPDATED] == seen[crm_events.SHARD_CREATED] == 0

    target = next(o for o in opportunities if o["StageName"] in OPEN_STAGES)
    new_stage = next(s for s in OPEN_STAGES if s != target["StageName"])
    latest = max(o["LastModifiedDate"] for o in opportunities)
    target["StageName"] = new_stage
    target["LastModifiedDate"] = latest.replace(latest[:4], str(int(latest[:4]) + 1), 1)
    write_ndjson(source / "Opportunity.ndjson", opportunities)
    world.events.clear()
    third = world.sync(mode="incremental")
    assert third.status == "completed"
    assert third.counters.total == 1
    assert third.counters.updated == 1
    world.wait_for_events(crm_events.SYNC_COMPLETED, 1)
    updates = [e for e in world.events if e.type == crm_events.OPPORTUNITY_UPDATED]
    assert len(updates) == 1
    assert updates[0].data["changedFields"] == ["stage"]
    assert updates[0].data["externalId"] == target["Id"]
    assert updates[0].correlation_id == third.correlation_id


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_ndjson(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


__all__ = ["CrmWorld", "topology"]
