"""The CRM mapping processor: raw CRM records in, shards and events out (seeds 2.3).

Per raw message (one record, or a batch of up to 50):

1. Records whose idempotency key (`{integrationId}-{externalId}-{syncTaskId}`, kept 24 h)
   is already `done` have no effects at all.
2. The rest are mapped with the integration's compiled mapping and validated
   (strict / lenient / audit). Records that fail for good go to quarantine with the
   field, value and reason, and an `integration.data.mapping.failed` event.
3. Shards get deterministic ids, so a create is an upsert and needs no lookup; the
   current shards are read in one batch to tell created / updated / unchanged apart and
   to find significant opportunity changes. Unchanged records are not written.
4. A written shard carries `lastChange` (this record's idempotency key and outcome), so
   a crash between the shard write and the events does not turn the change into
   "unchanged" on redelivery: the stored outcome is replayed. Events carry deterministic
   message ids, so a re-publish is dropped by duplicate detection. The idempotency entry
   (`done`, with the outcome) is written last, after the events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from core import containers, telemetry
from core.errors import PermanentError
from core.integrations.repository import CachedIntegration, IntegrationConfigCache
from core.logging import log_context
from core.mapping import FieldError, ShardValidator
from core.messaging import topology
from core.models import crm_events
from core.models.events import EventEnvelope
from core.models.shard_types import ensure_shard_type
from core.models.shards import shard_id_factory, structured_data_model
from core.ports import Clock, DocumentStore, OutboundMessage
from core.processing.quarantine import (
    QuarantinedRecord,
    describe,
    field_error_dicts,
    quarantine_id,
    write_quarantine,
)
from core.providers.base import RelationshipKey
from core.providers.registry import relationship_keys
from core.sync.executions import SyncProgress, progress_id

log = logging.getLogger(__name__)

SIGNIFICANT_OPPORTUNITY_FIELDS = (
    "stage",
    "amount",
    "closeDate",
    "probability",
    "status",
    "documentCount",
    "emailCount",
    "meetingCount",
    "callCount",
    "messageCount",
    "stakeholderCount",
    "competitorCount",
)
ML_COUNT_FIELDS = (
    "documentCount",
    "emailCount",
    "meetingCount",
    "callCount",
    "messageCount",
    "competitorCount",
)
OPPORTUNITY = "Opportunity"
_LINK_PLAN_CACHE_SIZE = 256
_TARGET_IDS_PER_PLAN = 4096


@dataclass(slots=True)
class RawItem:
    raw: dict[str, Any]
    external_id: str
    idempotency_key: str


@dataclass(slots=True)
class Outcome:
    item: RawItem
    operation: str
    shard_id: str | None = None
    shard: dict[str, Any] | None = None
    changed_fields: list[str] = field(default_factory=list)
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)
    error_code: str = ""
    warnings: list[FieldError] = field(default_factory=list)
    replayed: bool = False


@dataclass(slots=True)
class ProcessResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class _Message:
    envelope: EventEnvelope
    integration_id: str
    tenant_id: str
    entity_type: str
    sync_task_id: str | None
    correlation_id: str
    items: list[RawItem]
    is_batch: bool
    config_version: int | None


def _parse(envelope: EventEnvelope) -> _Message:
    payload = crm_events.parse_payload(envelope)
    if isinstance(payload, crm_events.DataRaw):
        items = [RawItem(payload.raw_data, payload.external_id, payload.idempotency_key)]
        batch = False
    elif isinstance(payload, crm_events.DataRawBatch):
        items = [RawItem(r.raw_data, r.external_id, r.idempotency_key) for r in payload.records]
        batch = True
    else:
        raise PermanentError(f"event type {envelope.type!r} is not a raw CRM record event")
    version = payload.metadata.get("configVersion")
    return _Message(
        envelope=envelope,
        integration_id=payload.integration_id,
        tenant_id=payload.tenant_id,
        entity_type=payload.entity_type,
        sync_task_id=payload.sync_task_id,
        correlation_id=payload.correlation_id,
        items=items,
        is_batch=batch,
        config_version=version if isinstance(version, int) else None,
    )


class CrmMappingProcessor:
    def __init__(
        self,
        store: DocumentStore,
        bus: Any,
        clock: Clock,
        cache: IntegrationConfigCache,
        *,
        validation_mode: str = "strict",
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._cache = cache
        self._validator = ShardValidator(validation_mode, json_data=True)
        self._known_shard_types: set[str] = set()
        self._link_plan_cache: dict[
            tuple[str, str, str], tuple[CachedIntegration, list[_LinkPlan]]
        ] = {}

    # -- entry point ------------------------------------------------------------------

    def process(self, envelope: EventEnvelope, *, attempt: int = 0) -> ProcessResult:
        message = _parse(envelope)
        with (
            log_context(
                tenantId=message.tenant_id,
                integrationId=message.integration_id,
                correlationId=message.correlation_id,
            ),
            telemetry.span(
                "crm.map",
                tenant_id=message.tenant_id,
                integration_id=message.integration_id,
                correlation_id=message.correlation_id,
                attributes={"entityType": message.entity_type, "records": len(message.items)},
            ),
        ):
            return self._process(message, attempt)

    def quarantine_message(self, envelope: EventEnvelope, error: Exception, attempts: int) -> None:
        """Every record of a message whose processing failed for good (permanent error, or
        transient errors past the retry budget)."""
        message = _parse(envelope)
        outcomes = [
            Outcome(
                item,
                "failed",
                errors=[FieldError(field="(message)", reason=str(error))],
                error_code=type(error).__name__,
            )
            for item in message.items
        ]
        self._finish(message, outcomes, attempts=attempts)

    def _process(self, message: _Message, attempt: int) -> ProcessResult:
        started = time.perf_counter()
        entries = self._idempotency_entries(message.items)
        result = ProcessResult()
        todo: list[RawItem] = []
        settled: list[Outcome] = []
        for item in message.items:
            entry = entries.get(item.idempotency_key)
            if entry is None:
                todo.append(item)
            else:
                result.duplicates += 1
                settled.append(Outcome(item, str(entry.get("operation")), entry.get("shardId")))
        if not todo:
            log.info("duplicate delivery: all %d record(s) already processed", result.duplicates)
            return result
        try:
            cached = self._cache.get(
                message.tenant_id, message.integration_id, min_version=message.config_version
            )
            outcomes = self._map_all(message, cached, todo)
        except PermanentError as exc:
            outcomes = [
                Outcome(
                    item,
                    "failed",
                    errors=[FieldError(field="(message)", reason=str(exc))],
                    error_code=type(exc).__name__,
                )
                for item in todo
            ]
        self._finish(message, outcomes, settled=settled, attempts=attempt + 1)
        for outcome in outcomes:
            setattr(result, outcome.operation, getattr(result, outcome.operation) + 1)
        elapsed_ms = (time.perf_counter() - started) * 1000
        labels = {"tenant_id": message.tenant_id, "integration_id": message.integration_id}
        telemetry.record_mapped(
            len(outcomes) - result.failed, entity_type=message.entity_type, **labels
        )
        if result.failed:
            telemetry.record_failed(result.failed, reason="quarantined", **labels)
        telemetry.record_mapping_duration(
            elapsed_ms / max(1, len(outcomes)), entity_type=message.entity_type, **labels
        )
        log.info(
            "mapped %d record(s) of %s",
            len(outcomes),
            message.entity_type,
            extra={
                "recordsCreated": result.created,
                "recordsUpdated": result.updated,
                "recordsUnchanged": result.unchanged,
                "recordsFailed": result.failed,
                "durationMs": round(elapsed_ms, 1),
            },
        )
        return result

    # -- reads ------------------------------------------------------------------------------

    def _idempotency_entries(self, items: Sequence[RawItem]) -> dict[str, dict[str, Any]]:
        found = self._store.get_many(
            containers.IDEMPOTENCY.name,
            [(item.idempotency_key, item.idempotency_key) for item in items],
        )
        return {key: doc for (key, _), doc in found.items()}

    def _current_shards(self, tenant_id: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        found = self._store.get_many(containers.SHARDS.name, [(tenant_id, i) for i in ids])
        return {shard_id: doc for (_, shard_id), doc in found.items()}

    # -- mapping ----------------------------------------------------------------------------

    def _map_all(
        self,
        message: _Message,
        cached: CachedIntegration,
        items: list[RawItem],
    ) -> list[Outcome]:
        mapping, compiled = cached.mapping_for(message.entity_type)
        if mapping.shard_type_name not in self._known_shard_types:
            ensure_shard_type(self._store, mapping.shard_type_name, self._clock)
            self._known_shard_types.add(mapping.shard_type_name)
        integration = cached.integration
        model = structured_data_model(mapping.shard_type_name)
        shard_id = shard_id_factory(message.tenant_id, message.integration_id, message.entity_type)
        ids = {item.idempotency_key: shard_id(item.external_id) for item in items}
        current = self._current_shards(message.tenant_id, list(ids.values()))
        now = self._clock.now()
        now_iso = now.isoformat()
        links = self._links(message, cached)
        outcomes: list[Outcome] = []
        for item in items:
            result = compiled.map(item.raw)
            verdict = self._validator.validate_mapping(result, model)
            if not verdict.accepted:
                outcomes.append(
                    Outcome(item, "failed", errors=verdict.errors, error_code="ValidationError")
                )
                continue
            record_shard_id = ids[item.idempotency_key]
            previous = current.get(record_shard_id)
            data = {**(previous or {}).get("structuredData", {}), **verdict.data}
            if mapping.shard_type_name == OPPORTUNITY:
                _opportunity_ml_fields(data, previous, now)
            relationships = _relationships(data, links)
            outcome = Outcome(item, "unchanged", record_shard_id, warnings=verdict.warnings)
            if previous is not None and _same(previous, data, relationships):
                last = previous.get("lastChange") or {}
                if last.get("idempotencyKey") == item.idempotency_key:
                    outcome.operation = str(last.get("operation"))
                    outcome.changed_fields = list(last.get("changedFields") or [])
                    outcome.changes = dict(last.get("changes") or {})
                    outcome.replayed = True
                outcomes.append(outcome)
                continue
            shard = {
                "id": record_shard_id,
                "tenantId": message.tenant_id,
                "shardTypeId": mapping.shard_type_id,
                "shardTypeName": mapping.shard_type_name,
                "schemaVersion": model.SCHEMA_VERSION,
                "structuredData": data,
                "relationships": relationships,
                "externalId": item.external_id,
                "integrationSource": {
                    "integrationId": message.integration_id,
                    "entityType": message.entity_type,
                    "provider": integration.integration_type_id,
                },
                "lastSyncedAt": now_iso,
                "syncStatus": "synced",
                "createdAt": (previous or {}).get("createdAt", now_iso),
                "updatedAt": now_iso,
            }
            outcome.shard = shard
            if previous is None:
                outcome.operation = "created"
            else:
                outcome.operation = "updated"
                if mapping.shard_type_name == OPPORTUNITY:
                    old = previous.get("structuredData", {})
                    for name in SIGNIFICANT_OPPORTUNITY_FIELDS:
                        if old.get(name) != data.get(name):
                            outcome.changed_fields.append(name)
                            outcome.changes[name] = {"old": old.get(name), "new": data.get(name)}
            shard["lastChange"] = {
                "idempotencyKey": item.idempotency_key,
                "operation": outcome.operation,
                "changedFields": outcome.changed_fields,
                "changes": outcome.changes,
            }
            outcomes.append(outcome)
        return outcomes

    def _links(self, message: _Message, cached: CachedIntegration) -> list[_LinkPlan]:
        """The link plans of this integration's config, kept while the config is the one
        cached, so target shard ids computed for earlier messages are reused."""
        key = (message.tenant_id, message.integration_id, message.entity_type)
        kept = self._link_plan_cache.get(key)
        if kept is not None and kept[0] is cached:
            return kept[1]
        if len(self._link_plan_cache) >= _LINK_PLAN_CACHE_SIZE:
            self._link_plan_cache.clear()
        plans = _link_plans(
            relationship_keys(cached.integration.integration_type_id, message.entity_type),
            cached.integration,
            message.tenant_id,
            message.integration_id,
        )
        self._link_plan_cache[key] = (cached, plans)
        return plans

    # -- writes and events -------------------------------------------------------------------

    def _finish(
        self,
        message: _Message,
        outcomes: list[Outcome],
        *,
        settled: Iterable[Outcome] = (),
        attempts: int = 1,
    ) -> None:
        written = [o for o in outcomes if o.shard is not None]
        if written:
            self._store.upsert_many(containers.SHARDS.name, [o.shard for o in written if o.shard])
        failures = [o for o in outcomes if o.operation == "failed"]
        self._quarantine(message, failures, attempts)
        if message.sync_task_id:
            self._write_progress(message, [*settled, *outcomes])
        self._publish(message, outcomes)
        self._write_idempotency(outcomes)

    def _write_idempotency(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        self._store.upsert_many(
            containers.IDEMPOTENCY.name,
            [
                {
                    "id": o.item.idempotency_key,
                    "key": o.item.idempotency_key,
                    "state": "done",
                    "operation": o.operation,
                    "shardId": o.shard_id,
                    "changedFields": o.changed_fields,
                    "changes": o.changes,
                }
                for o in outcomes
            ],
        )

    def _quarantine(self, message: _Message, failures: list[Outcome], attempts: int) -> None:
        now = self._clock.now()
        write_quarantine(
            self._store,
            [
                QuarantinedRecord(
                    id=quarantine_id(o.item.idempotency_key),
                    tenant_id=message.tenant_id,
                    integration_id=message.integration_id,
                    entity_type=message.entity_type,
                    external_id=o.item.external_id,
                    sync_task_id=message.sync_task_id,
                    idempotency_key=o.item.idempotency_key,
                    correlation_id=message.correlation_id,
                    error_code=o.error_code or "ValidationError",
                    error=describe(o.errors),
                    field_errors=field_error_dicts(o.errors),
                    raw_data=o.item.raw,
                    attempts=attempts,
                    quarantined_at=now,
                )
                for o in failures
            ],
        )
        for o in failures:
            log.warning(
                "record %s quarantined: %s",
                o.item.external_id,
                describe(o.errors),
                extra={"entityType": message.entity_type},
            )

    def _write_progress(self, message: _Message, outcomes: Sequence[Outcome]) -> None:
        assert message.sync_task_id is not None
        progress = SyncProgress(
            id=progress_id(message.sync_task_id, message.envelope.id),
            tenant_id=message.tenant_id,
            sync_task_id=message.sync_task_id,
        )
        for outcome in outcomes:
            setattr(progress, outcome.operation, getattr(progress, outcome.operation) + 1)
        self._store.upsert(
            containers.SYNC_EXECUTIONS.name, progress.model_dump(mode="json", by_alias=True)
        )

    def _publish(self, message: _Message, outcomes: list[Outcome]) -> None:
        shard_messages: list[OutboundMessage] = []
        integration_messages: list[OutboundMessage] = []
        batch_ids: list[str] = []
        batch_fields: list[str] = []
        common: dict[str, Any] = {
            "integration_id": message.integration_id,
            "tenant_id": message.tenant_id,
            "correlation_id": message.correlation_id,
        }
        writer = crm_events.EventWriter(
            source="crm-mapping-processor",
            tenant_id=message.tenant_id,
            correlation_id=message.correlation_id,
            causation_id=message.envelope.id,
            time=self._clock.now().isoformat(),
        )
        event = writer.message

        for o in outcomes:
            key = o.item.idempotency_key
            if o.operation == "failed":
                payload: crm_events.EventPayload = crm_events.DataMappingFailed(
                    **common,
                    entity_type=message.entity_type,
                    external_id=o.item.external_id,
                    sync_task_id=message.sync_task_id,
                    idempotency_key=key,
                    error=describe(o.errors) or "mapping failed",
                    error_code=o.error_code or "ValidationError",
                    quarantine_id=quarantine_id(key),
                )
                integration_messages.append(
                    event(crm_events.DATA_MAPPING_FAILED, payload, f"{key}:failed")
                )
                continue
            assert o.shard_id is not None
            shard_type = (o.shard or {}).get("shardTypeName") or _shard_type_of(message)
            integration_messages.append(
                event(
                    crm_events.DATA_MAPPED,
                    crm_events.DataMapped(
                        **common,
                        shard_id=o.shard_id,
                        shard_type_name=shard_type,
                        entity_type=message.entity_type,
                        external_id=o.item.external_id,
                        sync_task_id=message.sync_task_id,
                        idempotency_key=key,
                        operation=o.operation,
                        duration=0.0,
                    ),
                    f"{key}:mapped",
                )
            )
            if o.operation == "unchanged":
                continue
            is_opportunity = shard_type == OPPORTUNITY
            shard_event_type = (
                crm_events.SHARD_CREATED if o.operation == "created" else crm_events.SHARD_UPDATED
            )
            shard_payload = (
                crm_events.ShardCreated if o.operation == "created" else crm_events.ShardUpdated
            )(
                shard_id=o.shard_id,
                tenant_id=message.tenant_id,
                shard_type_id=shard_type,
                shard_type_name=shard_type,
                opportunity_id=o.shard_id if is_opportunity else None,
                integration_id=message.integration_id,
                external_id=o.item.external_id,
            )
            shard_messages.append(
                event(
                    shard_event_type,
                    shard_payload,
                    f"{key}:{shard_event_type}",
                    shard_type_name=shard_type,
                )
            )
            if not is_opportunity:
                continue
            if o.operation == "created":
                integration_messages.append(
                    event(
                        crm_events.OPPORTUNITY_CREATED,
                        crm_events.OpportunityCreated(
                            **common,
                            opportunity_id=o.shard_id,
                            external_id=o.item.external_id,
                            sync_task_id=message.sync_task_id,
                        ),
                        f"{key}:opportunity.created",
                    )
                )
            elif o.changed_fields and message.is_batch:
                batch_ids.append(o.shard_id)
                batch_fields.extend(f for f in o.changed_fields if f not in batch_fields)
            elif o.changed_fields:
                integration_messages.append(
                    event(
                        crm_events.OPPORTUNITY_UPDATED,
                        crm_events.OpportunityUpdated(
                            **common,
                            opportunity_id=o.shard_id,
                            external_id=o.item.external_id,
                            sync_task_id=message.sync_task_id,
                            changed_fields=o.changed_fields,
                            changes={k: crm_events.FieldChange(**v) for k, v in o.changes.items()},
                        ),
                        f"{key}:opportunity.updated",
                    )
                )
        if batch_ids:
            integration_messages.append(
                event(
                    crm_events.OPPORTUNITIES_UPDATED_BATCH,
                    crm_events.OpportunitiesUpdatedBatch(
                        **common,
                        opportunity_ids=batch_ids,
                        sync_task_id=message.sync_task_id,
                        batch_size=len(batch_ids),
                        changed_fields=batch_fields,
                    ),
                    f"{message.envelope.id}:opportunities.updated.batch",
                )
            )
        if shard_messages:
            self._bus.send(topology.SHARD_EVENTS, shard_messages)
        if integration_messages:
            self._bus.send(topology.INTEGRATION_EVENTS_TOPIC, integration_messages)


def _shard_type_of(message: _Message) -> str:
    return message.entity_type


def _same(previous: dict[str, Any], data: dict[str, Any], relationships: list[Any]) -> bool:
    return previous.get("structuredData") == data and previous.get("relationships", []) == (
        relationships
    )


def _day(value: Any) -> date | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value if type(value) is str else str(value))
    except ValueError:
        return None
    return parsed.astimezone(UTC).date() if parsed.tzinfo else parsed.date()


def _opportunity_ml_fields(
    data: dict[str, Any], previous: dict[str, Any] | None, now: datetime
) -> None:
    """The simple ML fields (seeds 2.3): days in stage, days since last activity, deal
    velocity (stages advanced per 30 days, from the stage history this processor keeps),
    stakeholder count from contact roles; the counts the ML aggregation owns start at 0."""
    today = now.date()
    for name in ML_COUNT_FIELDS:
        data.setdefault(name, 0)
        if data[name] is None:
            data[name] = 0
    data["stakeholderCount"] = len(data.get("contactRoles") or [])
    stage = data.get("stage")
    entered = data.get("lastStageChangeDate") or data.get("createdDate") or now.isoformat()
    history = list((previous or {}).get("structuredData", {}).get("stageHistory") or [])
    if stage and (not history or history[-1].get("stage") != stage):
        if history:
            history[-1] = {**history[-1], "exitedAt": entered}
        history.append({"stage": stage, "enteredAt": entered})
    data["stageHistory"] = history
    stage_day = _day(entered)
    data["daysInStage"] = max(0, (today - stage_day).days) if stage_day else None
    activity_day = _day(data.get("lastActivityDate"))
    data["daysSinceLastActivity"] = max(0, (today - activity_day).days) if activity_day else None
    created_day = _day(data.get("createdDate"))
    if created_day is not None:
        days_open = max(1, (today - created_day).days)
        data["dealVelocity"] = round(max(0, len(history) - 1) * 30 / days_open, 4)


@dataclass(frozen=True, slots=True)
class _LinkPlan:
    """One foreign key of a shard type, resolved once per message: where the target's
    external id sits in the mapped data and how to turn it into the target shard's id."""

    key: RelationshipKey
    target_type: str
    target_id: Callable[[str], str]


def _link_plans(
    keys: Sequence[RelationshipKey],
    integration: Any,
    tenant_id: str,
    integration_id: str,
) -> list[_LinkPlan]:
    plans = []
    for key in keys:
        try:
            target_type = integration.entity_mapping(key.target_entity_type).shard_type_name
        except PermanentError:
            target_type = key.target_entity_type
        plans.append(
            _LinkPlan(
                key,
                target_type,
                lru_cache(maxsize=_TARGET_IDS_PER_PLAN)(
                    shard_id_factory(tenant_id, integration_id, key.target_entity_type)
                ),
            )
        )
    return plans


def _relationships(data: dict[str, Any], plans: Sequence[_LinkPlan]) -> list[dict[str, Any]]:
    """Relationships from foreign keys in the mapped data (`accountId`, contact roles)."""
    return [
        {
            "type": plan.key.relationship_type,
            "targetShardId": plan.target_id(external_id),
            "targetShardTypeName": plan.target_type,
            "externalId": external_id,
            "metadata": {"confidence": 100, "strategy": "explicit_reference"},
        }
        for plan in plans
        for external_id in plan.key.external_ids(data)
    ]


__all__ = ["CrmMappingProcessor", "ProcessResult"]
