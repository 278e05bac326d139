"""The `sync-tracking` subscription: mapping outcomes arrive, execution counters follow.

Counters are recounted from the processor's progress documents (idempotent), once per
execution per batch of events, so a burst of thousands of per-record events costs one
recount per batch rather than one write per record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from core.errors import NotFoundError
from core.models import crm_events
from core.models.events import EventEnvelope
from core.sync.executions import SyncExecutions

log = logging.getLogger(__name__)

TRACKED = (crm_events.DATA_MAPPED, crm_events.DATA_MAPPING_FAILED)


def track(executions: SyncExecutions, envelopes: Iterable[EventEnvelope]) -> int:
    """Refresh every execution the events belong to; returns how many were refreshed."""
    targets: set[tuple[str, str]] = set()
    for envelope in envelopes:
        if envelope.type not in TRACKED:
            continue
        sync_task_id = envelope.data.get("syncTaskId")
        if isinstance(sync_task_id, str) and sync_task_id:
            targets.add((envelope.tenant_id, sync_task_id))
    for tenant_id, sync_task_id in sorted(targets):
        try:
            executions.refresh(tenant_id, sync_task_id)
        except NotFoundError:
            log.warning("mapping outcome for unknown sync execution %s", sync_task_id)
    return len(targets)
