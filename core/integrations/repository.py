"""Tenant integrations in the `integrations` container, and the processors' config cache.

Processors read integration config through `IntegrationConfigCache`: one entry per
(tenant, integration) holding the validated integration and its field mappings compiled
once for that `configVersion`. An entry lives 10 minutes (seeds: config_cache_ttl), is
dropped when this process updates the integration, and is reloaded at once when a message
carries a newer `configVersion` than the cached one, so an update made by another
instance takes effect with the next sync without waiting for the TTL.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from core import containers
from core.errors import ConflictError, NotFoundError, PermanentError
from core.mapping import CompiledMapping, compile_mapping, registry_for_integration
from core.models.integration import EntityMapping, TenantIntegration
from core.models.shards import structured_data_model
from core.ports import DocumentStore, Filter, Page

CONFIG_CACHE_TTL_SECONDS = 600.0

log = logging.getLogger(__name__)


class IntegrationRepository:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def get(self, tenant_id: str, integration_id: str) -> TenantIntegration:
        document = self._store.get(containers.INTEGRATIONS.name, tenant_id, integration_id)
        if document is None:
            raise NotFoundError(
                f"integration {integration_id!r} not found",
                resource=f"integrations/{integration_id}",
            )
        try:
            return TenantIntegration.model_validate(document)
        except ValidationError as exc:
            raise PermanentError(
                f"stored integration {integration_id!r} is invalid: {exc}",
                resource=f"integrations/{integration_id}",
            ) from exc

    def list(self, tenant_id: str, *, limit: int = 100, continuation: str | None = None) -> Page:
        return self._store.query(
            containers.INTEGRATIONS.name,
            partition_key=tenant_id,
            order_by="createdAt",
            limit=limit,
            continuation=continuation,
        )

    def list_enabled(self) -> builtins.list[TenantIntegration]:
        """Every enabled integration of every tenant (the scheduler's cross-partition read)."""
        found: builtins.list[TenantIntegration] = []
        continuation: str | None = None
        while True:
            page = self._store.query(
                containers.INTEGRATIONS.name,
                filters=[Filter("enabled", "==", True)],
                limit=500,
                continuation=continuation,
            )
            for doc in page.items:
                try:
                    found.append(TenantIntegration.model_validate(doc))
                except ValidationError as exc:
                    log.error(
                        "skipping invalid stored integration %s of tenant %s: %s",
                        doc.get("id"),
                        doc.get("tenantId"),
                        exc,
                    )
            if page.continuation is None:
                return found
            continuation = page.continuation

    def create(self, integration: TenantIntegration) -> TenantIntegration:
        stored = self._store.create(containers.INTEGRATIONS.name, integration.to_document())
        return TenantIntegration.model_validate(stored)

    def update(
        self,
        tenant_id: str,
        integration_id: str,
        change: Callable[[TenantIntegration], TenantIntegration],
        *,
        attempts: int = 5,
    ) -> TenantIntegration:
        """Read-modify-write with the etag; `configVersion` goes up by one per update."""
        for _ in range(attempts):
            current = self.get(tenant_id, integration_id)
            changed = change(current.model_copy(deep=True))
            document = changed.to_document() | {"configVersion": current.config_version + 1}
            validated = TenantIntegration.model_validate(document)
            try:
                stored = self._store.upsert(
                    containers.INTEGRATIONS.name, validated.to_document(), if_match=current.etag
                )
            except ConflictError:
                continue
            return TenantIntegration.model_validate(stored)
        raise ConflictError(
            f"integration {integration_id!r} changed concurrently {attempts} times; try again",
            resource=f"integrations/{integration_id}",
        )


def compile_entity_mapping(
    integration: TenantIntegration, mapping: EntityMapping
) -> CompiledMapping:
    transforms = registry_for_integration(
        integration.id, [t.model_dump(by_alias=True) for t in integration.custom_transforms]
    )
    return compile_mapping(
        [m.model_dump(by_alias=True, exclude_none=True) for m in mapping.field_mappings],
        structured_data_model(mapping.shard_type_name),
        transforms,
    )


@dataclass
class CachedIntegration:
    integration: TenantIntegration
    loaded_at: float
    _compiled: dict[str, CompiledMapping] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def mapping_for(self, entity_type: str) -> tuple[EntityMapping, CompiledMapping]:
        """The entity mapping and its compiled form (compiled once per config version)."""
        mapping = self.integration.entity_mapping(entity_type)
        key = mapping.entity_type.casefold()
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(key)
                if compiled is None:
                    compiled = compile_entity_mapping(self.integration, mapping)
                    self._compiled[key] = compiled
        return mapping, compiled


class IntegrationConfigCache:
    def __init__(
        self,
        repository: IntegrationRepository,
        *,
        ttl_seconds: float = CONFIG_CACHE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repository = repository
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[tuple[str, str], CachedIntegration] = {}
        self._lock = threading.Lock()

    def get(
        self, tenant_id: str, integration_id: str, *, min_version: int | None = None
    ) -> CachedIntegration:
        key = (tenant_id, integration_id)
        entry = self._entries.get(key)
        now = self._clock()
        stale = (
            entry is None
            or now - entry.loaded_at > self._ttl
            or (min_version is not None and entry.integration.config_version < min_version)
        )
        if stale:
            entry = CachedIntegration(self._repository.get(tenant_id, integration_id), now)
            with self._lock:
                self._entries[key] = entry
        assert entry is not None
        return entry

    def invalidate(self, tenant_id: str, integration_id: str) -> None:
        with self._lock:
            self._entries.pop((tenant_id, integration_id), None)
