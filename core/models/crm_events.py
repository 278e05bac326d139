"""Payloads (`data`) of the CRM-flow events, with the seeds' field names (seeds 2.1, 2.3,
2.6, 4.1, 3.6, "Event Flow"; 001 correlation ids), and `make_event` to wrap one in the
envelope of `core/models/events.py`.

Payloads keep unknown fields (`extra="allow"`): the envelope tolerates newer minor schema
versions, so an older consumer must accept, and pass on, fields a newer producer added.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import PermanentError
from core.models.events import SCHEMA_VERSION, EnvelopeWriter, EventEnvelope
from core.models.integration import SyncCounters
from core.models.shards import CamelModel, Count, NonEmptyStr, UtcDateTime
from core.ports import OutboundMessage

# Event types ----------------------------------------------------------------------------

DATA_RAW = "integration.data.raw"
DATA_RAW_BATCH = "integration.data.raw.batch"
DATA_MAPPED = "integration.data.mapped"
DATA_MAPPING_FAILED = "integration.data.mapping.failed"
OPPORTUNITY_CREATED = "integration.opportunity.created"
OPPORTUNITY_UPDATED = "integration.opportunity.updated"
OPPORTUNITIES_UPDATED_BATCH = "integration.opportunities.updated.batch"
OPPORTUNITY_ML_FIELDS_UPDATED = "integration.opportunity.ml_fields_updated"
SYNC_STARTED = "integration.sync.started"
SYNC_COMPLETED = "integration.sync.completed"
SYNC_FAILED = "integration.sync.failed"
SHARD_CREATED = "shard.created"
SHARD_UPDATED = "shard.updated"
ML_FIELD_AGGREGATION_RECALCULATE = "ml_field_aggregation.recalculate"


def sync_correlation_id(sync_task_id: str, at: datetime) -> str:
    """`sync-{syncTaskId}-{timestamp}` (001), the timestamp in epoch milliseconds; every
    event, log line and span of the sync's records carries it."""
    if not sync_task_id:
        raise ValueError("sync_correlation_id: sync_task_id must be non-empty")
    return f"sync-{sync_task_id}-{int(at.timestamp() * 1000)}"


class EventPayload(CamelModel):
    model_config = ConfigDict(extra="allow")


# Raw CRM records ------------------------------------------------------------------------


class DataRaw(EventPayload):
    """One raw record. `syncTaskId` is absent for webhook-triggered records."""

    integration_id: NonEmptyStr
    tenant_id: NonEmptyStr
    entity_type: NonEmptyStr
    raw_data: dict[str, Any]
    external_id: NonEmptyStr
    sync_task_id: str | None = None
    idempotency_key: NonEmptyStr
    correlation_id: NonEmptyStr
    metadata: dict[str, Any] = Field(default_factory=dict)


class RawRecord(CamelModel):
    model_config = ConfigDict(extra="allow")

    raw_data: dict[str, Any]
    external_id: NonEmptyStr
    idempotency_key: NonEmptyStr


class DataRawBatch(EventPayload):
    integration_id: NonEmptyStr
    tenant_id: NonEmptyStr
    entity_type: NonEmptyStr
    records: list[RawRecord] = Field(min_length=1)
    sync_task_id: str | None = None
    correlation_id: NonEmptyStr
    batch_size: int = Field(ge=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _batch_size_counts_records(self) -> DataRawBatch:
        if self.batch_size != len(self.records):
            raise ValueError(f"batchSize {self.batch_size} != {len(self.records)} records")
        return self


# Mapping outcome ------------------------------------------------------------------------


class DataMapped(EventPayload):
    """`operation` lets sync tracking count created / updated / unchanged records;
    `duration` is in milliseconds."""

    integration_id: NonEmptyStr
    tenant_id: NonEmptyStr
    shard_id: NonEmptyStr
    shard_type_name: str | None = None
    entity_type: str | None = None
    external_id: NonEmptyStr
    sync_task_id: str | None = None
    idempotency_key: NonEmptyStr
    correlation_id: NonEmptyStr
    success: Literal[True] = True
    operation: Literal["created", "updated", "unchanged"]
    duration: float = Field(ge=0, description="Milliseconds")


class DataMappingFailed(EventPayload):
    """`retryAttempt` is how many retries preceded the failure (0: failed at once)."""

    integration_id: NonEmptyStr
    tenant_id: NonEmptyStr
    entity_type: str | None = None
    external_id: NonEmptyStr
    sync_task_id: str | None = None
    idempotency_key: NonEmptyStr
    correlation_id: NonEmptyStr
    error: NonEmptyStr
    error_code: str | None = Field(default=None, description="e.g. ValidationError")
    retry_attempt: Count = 0
    quarantine_id: str | None = None


# Opportunity events ---------------------------------------------------------------------


class FieldChange(CamelModel):
    old: Any = None
    new: Any = None


class OpportunityCreated(EventPayload):
    """`opportunityId` is the opportunity shard's id; `shardId` repeats it (seed field) and
    defaults to it. `externalId` is the CRM's id."""

    integration_id: NonEmptyStr
    tenant_id: NonEmptyStr
    opportunity_id: NonEmptyStr
    shard_id: str | None = None
    external_id: str | None = None
    sync_task_id: str | None = None
    correlation_id: NonEmptyStr
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shard_id_is_the_opportunity(self) -> OpportunityCreated:
        if self.shard_id is None:
            self.shard_id = self.opportunity_id
        elif self.shard_id != self.opportunity_id:
            raise ValueError(
                f"shardId {self.shard_id!r} != opportunityId {self.opportunity_id!r}: "
                "both are the opportunity shard's id"
            )
        return self


class OpportunityUpdated(OpportunityCreated):
    """Published only for significant changes, so `changedFields` is never empty."""

    changed_fields: list[str] = Field(min_length=1)
    changes: dict[str, FieldChange] | None = None
    trigger: str = Field(default="sync", description="sync, webhook, entity_linking, ...")


class OpportunitiesUpdatedBatch(EventPayload):
    integration_id: NonEmptyStr
    tenant_id: NonEmptyStr
    opportunity_ids: list[str] = Field(min_length=1)
    sync_task_id: str | None = None
    correlation_id: NonEmptyStr
    batch_size: int = Field(ge=1)
    changed_fields: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _batch_size_counts_ids(self) -> OpportunitiesUpdatedBatch:
        if self.batch_size != len(self.opportunity_ids):
            raise ValueError(
                f"batchSize {self.batch_size} != {len(self.opportunity_ids)} opportunityIds"
            )
        return self


class OpportunityMlFieldsUpdated(EventPayload):
    opportunity_id: NonEmptyStr
    tenant_id: NonEmptyStr
    fields_updated: list[str] = Field(min_length=1)
    trigger: str = Field(min_length=1, description="shard_created, entity_linked, periodic...")
    metadata: dict[str, Any] = Field(default_factory=dict)


# Sync lifecycle -------------------------------------------------------------------------


class SyncStarted(EventPayload):
    integration_id: NonEmptyStr
    tenant_id: NonEmptyStr
    sync_task_id: NonEmptyStr
    correlation_id: NonEmptyStr
    trigger: Literal["manual", "scheduled", "webhook", "retry"]
    entity_types: list[str] = Field(default_factory=list)
    started_at: UtcDateTime


class SyncCompleted(EventPayload):
    integration_id: NonEmptyStr
    tenant_id: NonEmptyStr
    sync_task_id: NonEmptyStr
    correlation_id: NonEmptyStr
    status: Literal["completed", "partial"]
    counters: SyncCounters
    started_at: UtcDateTime | None = None
    completed_at: UtcDateTime
    duration: float | None = Field(default=None, ge=0, description="Milliseconds")


class SyncFailed(EventPayload):
    integration_id: NonEmptyStr
    tenant_id: NonEmptyStr
    sync_task_id: NonEmptyStr
    correlation_id: NonEmptyStr
    error: NonEmptyStr
    error_code: str | None = None
    counters: SyncCounters | None = None
    failed_at: UtcDateTime


# Shard events ---------------------------------------------------------------------------


class ShardCreated(EventPayload):
    """`opportunityId` is set when the shard is an opportunity or belongs to one."""

    shard_id: NonEmptyStr
    tenant_id: NonEmptyStr
    shard_type_id: NonEmptyStr
    shard_type_name: NonEmptyStr
    opportunity_id: str | None = None
    integration_id: str | None = None
    external_id: str | None = None


class ShardUpdated(ShardCreated):
    changed_fields: list[str] | None = Field(
        default=None, description="structuredData fields that changed; null: unknown"
    )


class MlFieldAggregationRecalculate(EventPayload):
    opportunity_id: NonEmptyStr
    tenant_id: NonEmptyStr
    reason: str = Field(min_length=1, description="periodic_recalculation, entity_linked, ...")


PAYLOAD_MODELS: dict[str, type[EventPayload]] = {
    DATA_RAW: DataRaw,
    DATA_RAW_BATCH: DataRawBatch,
    DATA_MAPPED: DataMapped,
    DATA_MAPPING_FAILED: DataMappingFailed,
    OPPORTUNITY_CREATED: OpportunityCreated,
    OPPORTUNITY_UPDATED: OpportunityUpdated,
    OPPORTUNITIES_UPDATED_BATCH: OpportunitiesUpdatedBatch,
    OPPORTUNITY_ML_FIELDS_UPDATED: OpportunityMlFieldsUpdated,
    SYNC_STARTED: SyncStarted,
    SYNC_COMPLETED: SyncCompleted,
    SYNC_FAILED: SyncFailed,
    SHARD_CREATED: ShardCreated,
    SHARD_UPDATED: ShardUpdated,
    ML_FIELD_AGGREGATION_RECALCULATE: MlFieldAggregationRecalculate,
}


def make_event(
    event_type: str,
    payload: EventPayload,
    *,
    source: str,
    tenant_id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> EventEnvelope:
    """Wrap a payload in the envelope. The payload must be the model of `event_type`;
    tenant and correlation ids default to the payload's and must agree with it."""
    expected = PAYLOAD_MODELS.get(event_type)
    if expected is None:
        raise ValueError(f"unknown event type {event_type!r}")
    if type(payload) is not expected:
        raise ValueError(
            f"event {event_type} takes a {expected.__name__} payload, not {type(payload).__name__}"
        )
    data = payload.model_dump(mode="json", by_alias=True)
    tenant = _agreeing("tenantId", tenant_id, data.get("tenantId"))
    correlation = _agreeing("correlationId", correlation_id, data.get("correlationId"))
    if not source:
        raise ValueError("source is required")
    # Every part was validated above (the payload by its model, the ids by _agreeing), so
    # the envelope is constructed without validating it a second time: this is per event.
    return EventEnvelope.model_construct(
        id=str(uuid.uuid4()),
        time=datetime.now(UTC),
        schema_version=SCHEMA_VERSION,
        type=event_type,
        source=source,
        tenant_id=tenant,
        correlation_id=correlation,
        causation_id=causation_id,
        data=data,
    )


class EventWriter:
    """The bus messages of the CRM events of one publication (`EnvelopeWriter`), each
    checked to carry its type's payload model and to agree with the publication's tenant
    and correlation id: this runs for every event of every record."""

    __slots__ = ("_envelopes",)

    def __init__(
        self,
        *,
        source: str,
        tenant_id: str,
        correlation_id: str,
        causation_id: str | None = None,
        time: str | None = None,
    ) -> None:
        if not source:
            raise ValueError("source is required")
        self._envelopes = EnvelopeWriter(
            source=source,
            tenant_id=_agreeing("tenantId", tenant_id, None),
            correlation_id=_agreeing("correlationId", correlation_id, None),
            causation_id=causation_id,
            time=time,
        )

    def message(
        self,
        event_type: str,
        payload: EventPayload,
        message_id: str,
        shard_type_name: str | None = None,
    ) -> OutboundMessage:
        expected = PAYLOAD_MODELS.get(event_type)
        if expected is None or type(payload) is not expected:
            raise ValueError(f"event {event_type} takes a {expected} payload, not {type(payload)}")
        fields = payload.__dict__
        envelopes = self._envelopes
        _agreeing("tenantId", envelopes.tenant_id, fields.get("tenant_id"))
        _agreeing("correlationId", envelopes.correlation_id, fields.get("correlation_id"))
        return envelopes.message(
            event_type,
            payload,
            message_id,
            {"shardTypeName": shard_type_name} if shard_type_name else None,
        )


def _agreeing(field: str, given: str | None, in_payload: Any) -> str:
    if given is not None and in_payload is not None and given != in_payload:
        raise ValueError(f"{field} {given!r} disagrees with the payload's {in_payload!r}")
    value = given if given is not None else in_payload
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} is required: pass it or set it in the payload")
    return value


_Payload = TypeVar("_Payload", bound=BaseModel)


def parse_payload(envelope: EventEnvelope) -> EventPayload:
    """The typed payload of a received event. PermanentError (naming the event and each
    bad field) for an unknown type, an invalid payload, or a payload whose tenant differs
    from the envelope's: none of these improves on retry."""
    model = PAYLOAD_MODELS.get(envelope.type)
    if model is None:
        raise PermanentError(
            f"event {envelope.id}: unknown event type {envelope.type!r}", resource=envelope.type
        )
    return validate_payload(envelope, model)


def validate_payload(envelope: EventEnvelope, model: type[_Payload]) -> _Payload:
    """The envelope's data as `model`; PermanentError naming the event and each bad field,
    or a tenant that differs from the envelope's."""
    try:
        payload = model.model_validate(envelope.data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(data)'}: {item['msg']}"
            for item in exc.errors()
        )
        raise PermanentError(
            f"event {envelope.id} ({envelope.type}): invalid data: {problems}",
            resource=envelope.type,
        ) from exc
    payload_tenant = getattr(payload, "tenant_id", None)
    if payload_tenant is not None and payload_tenant != envelope.tenant_id:
        raise PermanentError(
            f"event {envelope.id} ({envelope.type}): data.tenantId {payload_tenant!r} differs "
            f"from the envelope's {envelope.tenant_id!r}",
            resource=envelope.type,
        )
    return payload
