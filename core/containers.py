"""The store's containers (ARCHITECTURE.md, Storage): partition keys and TTLs.
Cosmos containers and SQLite tables carry these names."""

from __future__ import annotations

from core.ports import ContainerSpec

DAY = 24 * 3600

SHARDS = ContainerSpec("shards", "/tenantId")
SHARD_TYPES = ContainerSpec("shard_types", "/name")
INTEGRATIONS = ContainerSpec("integrations", "/tenantId")
SYNC_EXECUTIONS = ContainerSpec("sync_executions", "/tenantId", 90 * DAY)
SYNC_STATE = ContainerSpec("sync_state", "/tenantId")
SUGGESTED_LINKS = ContainerSpec("suggested_links", "/tenantId", 30 * DAY)
IDEMPOTENCY = ContainerSpec("idempotency", "/key", DAY)
WEBHOOK_REGISTRATIONS = ContainerSpec("webhook_registrations", "/tenantId")
QUARANTINE = ContainerSpec("quarantine", "/tenantId", 30 * DAY)

CONTAINERS: tuple[ContainerSpec, ...] = (
    SHARDS,
    SHARD_TYPES,
    INTEGRATIONS,
    SYNC_EXECUTIONS,
    SYNC_STATE,
    SUGGESTED_LINKS,
    IDEMPOTENCY,
    WEBHOOK_REGISTRATIONS,
    QUARANTINE,
)

CONTAINERS_BY_NAME = {spec.name: spec for spec in CONTAINERS}
