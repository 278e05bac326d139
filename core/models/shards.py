"""Shards: the typed per-tenant records every integration writes (ARCHITECTURE.md, Storage).

A shard document is an envelope (`Shard`) around a type-specific `structuredData` object.
Each shard type has one `StructuredData` model here with a `SCHEMA_VERSION`; the shard type
definitions stored in `shard_types` are generated from these models.

Field policy (seeds 0.1, "Schema Strategy"):

* JSON names are camelCase; Python names are snake_case (either is accepted on input).
* Fields added after 1.0 are optional, so older shards stay valid (lazy migration).
* Unknown fields are **kept** (`extra="allow"`): tenants map custom CRM fields onto shards
  and nothing may be dropped silently. An unknown field that differs from a declared one
  only by case (`Amount` for `amount`) is rejected, because it is almost always a mapping
  mistake that would otherwise store the value twice under two names.
* Integration tracking (`externalId`, `integrationSource`, `lastSyncedAt`, `syncStatus`)
  lives once, on the shard envelope, not inside `structuredData`.
* Instants are timezone-aware UTC (naive input is taken as UTC) so that ML-field arithmetic
  never mixes naive and aware values; calendar days (`closeDate`) are dates.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.alias_generators import to_camel

from core.errors import PermanentError

# --------------------------------------------------------------------------------------
# Shared building blocks
# --------------------------------------------------------------------------------------


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _calendar_day(value: Any) -> Any:
    """CRMs disagree on whether a close date is a day or an instant (HubSpot sends an
    instant); the field means a calendar day, taken in UTC."""
    if isinstance(value, datetime):
        return _as_utc(value).date()
    if isinstance(value, str) and len(value) > 10:
        return _as_utc(datetime.fromisoformat(value.replace("Z", "+00:00"))).date()
    return value


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]
CalendarDate = Annotated[date, BeforeValidator(_calendar_day)]
Percent = Annotated[float, Field(ge=0, le=100)]
Count = Annotated[int, Field(ge=0)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
Sentiment = Annotated[float, Field(ge=-1, le=1, description="-1 (negative) to 1 (positive)")]
ShardTypeCategory = Literal["crm", "document", "communication", "meeting", "calendar", "activity"]


class CamelModel(BaseModel):
    """camelCase on the wire, snake_case in Python, both accepted on input."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class Person(CamelModel):
    """Someone taking part in an email, message, meeting or event."""

    email: str | None = None
    name: str | None = None
    contact_id: str | None = Field(default=None, description="Contact shard id once matched")
    is_internal: bool | None = None


class ActionItem(CamelModel):
    text: str = Field(min_length=1)
    owner: str | None = None
    due_date: CalendarDate | None = None


class Attachment(CamelModel):
    name: str | None = None
    mime_type: str | None = None
    size: Count | None = None
    external_id: str | None = None
    document_shard_id: str | None = Field(default=None, description="Document shard made from it")


class ExtractedEntity(CamelModel):
    type: str = Field(min_length=1, description="e.g. organization, person, money, date")
    text: str = Field(min_length=1)
    confidence: Percent | None = None


class LinkedEntities(CamelModel):
    """Links an unstructured shard carries to the CRM shards it is about (entity linking)."""

    linked_opportunity_ids: list[str] = Field(default_factory=list)
    linked_account_ids: list[str] = Field(default_factory=list)
    linked_contact_ids: list[str] = Field(default_factory=list)


class StructuredData(CamelModel):
    """Base of every shard type's `structuredData`."""

    model_config = ConfigDict(extra="allow")

    SHARD_TYPE_NAME: ClassVar[str]
    SCHEMA_VERSION: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    CATEGORY: ClassVar[ShardTypeCategory]
    VECTOR_TEXT_FIELD: ClassVar[str | None] = None

    @model_validator(mode="after")
    def _reject_case_variants_of_declared_fields(self) -> StructuredData:
        if not self.model_extra:
            return self
        declared = _casefolded_fields(type(self))
        for key in self.model_extra:
            known = declared.get(key.casefold())
            if known is not None and known != key:
                raise ValueError(
                    f"field {key!r} differs from the declared field {known!r} only by case"
                )
        return self

    def to_data(self) -> dict[str, Any]:
        """The JSON-ready `structuredData` (camelCase, ISO dates, unset optionals omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def declared_fields(model: type[BaseModel]) -> list[str]:
    """The JSON names of a model's declared fields."""
    return [info.alias or name for name, info in model.model_fields.items()]


@functools.cache
def _casefolded_fields(model: type[BaseModel]) -> dict[str, str]:
    return {alias.casefold(): alias for alias in declared_fields(model)}


# --------------------------------------------------------------------------------------
# CRM shard types
# --------------------------------------------------------------------------------------


class ContactRole(CamelModel):
    """A contact's role on an opportunity; participant matching looks these up first."""

    contact_id: str = Field(min_length=1)
    email: str | None = None
    role: str | None = None
    is_primary: bool = False


class StageChange(CamelModel):
    stage: str = Field(min_length=1)
    entered_at: UtcDateTime
    exited_at: UtcDateTime | None = None


class OpportunityData(StructuredData):
    SHARD_TYPE_NAME = "Opportunity"
    SCHEMA_VERSION = "1.0"
    DESCRIPTION = "A CRM deal, with the ML fields risk and forecasting read"
    CATEGORY = "crm"

    name: str = Field(min_length=1)
    account_id: str | None = None
    account_name: str | None = None
    owner_id: str | None = None
    owner_email: str | None = None
    owner_name: str | None = None
    stage: str | None = None
    status: Literal["open", "won", "lost"] | None = None
    amount: float | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3, description="ISO 4217")
    probability: Percent | None = None
    close_date: CalendarDate | None = None
    type: str | None = None
    lead_source: str | None = None
    forecast_category: str | None = None
    next_step: str | None = None
    description: str | None = None
    industry: str | None = None
    industry_id: str | None = None
    contact_roles: list[ContactRole] = Field(default_factory=list)
    stage_history: list[StageChange] = Field(default_factory=list)
    created_date: UtcDateTime | None = Field(default=None, description="Created in the source CRM")
    last_modified_date: UtcDateTime | None = Field(default=None, description="Modified in the CRM")
    last_stage_change_date: UtcDateTime | None = None
    last_activity_date: UtcDateTime | None = None
    # ML fields: simple ones computed while mapping, counts by the ML field aggregation.
    days_in_stage: Count | None = None
    days_since_last_activity: Count | None = None
    deal_velocity: float | None = Field(default=None, description="Stages advanced per 30 days")
    competitor_count: Count | None = None
    stakeholder_count: Count | None = None
    document_count: Count | None = None
    email_count: Count | None = None
    meeting_count: Count | None = None
    call_count: Count | None = None
    message_count: Count | None = None
    ml_fields_updated_at: UtcDateTime | None = None


class AccountData(StructuredData):
    SHARD_TYPE_NAME = "Account"
    SCHEMA_VERSION = "1.0"
    DESCRIPTION = "A CRM company; linking falls back to it by email domain"
    CATEGORY = "crm"

    name: str = Field(min_length=1)
    domain: str | None = Field(default=None, description="Primary email/web domain, e.g. acme.com")
    website: str | None = None
    industry: str | None = None
    industry_id: str | None = None
    type: str | None = None
    annual_revenue: float | None = None
    employee_count: Count | None = None
    phone: str | None = None
    billing_city: str | None = None
    billing_country: str | None = None
    owner_id: str | None = None
    parent_account_id: str | None = None
    description: str | None = None
    created_date: UtcDateTime | None = None
    last_modified_date: UtcDateTime | None = None
    last_activity_date: UtcDateTime | None = None


class ContactData(StructuredData):
    SHARD_TYPE_NAME = "Contact"
    SCHEMA_VERSION = "1.0"
    DESCRIPTION = "A CRM person; participant matching starts from the email"
    CATEGORY = "crm"

    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    email: str | None = None
    additional_emails: list[str] = Field(default_factory=list)
    phone: str | None = None
    title: str | None = None
    department: str | None = None
    account_id: str | None = None
    owner_id: str | None = None
    is_stakeholder: bool | None = None
    is_competitor: bool | None = None
    is_decision_maker: bool | None = None
    created_date: UtcDateTime | None = None
    last_modified_date: UtcDateTime | None = None
    # Engagement
    last_activity_date: UtcDateTime | None = None
    last_contacted_at: UtcDateTime | None = None
    engagement_score: Percent | None = None
    email_count: Count | None = None
    meeting_count: Count | None = None
    message_count: Count | None = None


class LeadData(StructuredData):
    SHARD_TYPE_NAME = "Lead"
    SCHEMA_VERSION = "1.0"
    DESCRIPTION = "A CRM prospect not yet converted"
    CATEGORY = "crm"

    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    title: str | None = None
    industry: str | None = None
    status: str | None = None
    lead_source: str | None = None
    rating: str | None = None
    owner_id: str | None = None
    is_converted: bool | None = None
    converted_at: UtcDateTime | None = None
    converted_account_id: str | None = None
    converted_contact_id: str | None = None
    converted_opportunity_id: str | None = None
    created_date: UtcDateTime | None = None
    last_modified_date: UtcDateTime | None = None
    last_activity_date: UtcDateTime | None = None


# --------------------------------------------------------------------------------------
# Multi-modal shard types
# --------------------------------------------------------------------------------------


class DocumentData(StructuredData, LinkedEntities):
    SHARD_TYPE_NAME = "Document"
    SCHEMA_VERSION = "1.0"
    DESCRIPTION = "A file from a drive or an attachment, with its extracted text"
    CATEGORY = "document"
    VECTOR_TEXT_FIELD = "extractedText"

    title: str = Field(min_length=1)
    document_type: str | None = Field(
        default=None, description="pdf, docx, xlsx, pptx, txt, image, ..."
    )
    mime_type: str | None = None
    size: Count | None = Field(default=None, description="Bytes")
    url: str | None = Field(default=None, description="Where the source system serves it")
    blob_storage_url: str | None = Field(default=None, description="Our copy in blob storage")
    path: str | None = None
    parent_folder: str | None = None
    page_count: Count | None = None
    language: str | None = None
    processing_status: Literal["pending", "processing", "completed", "failed"] | None = None
    processing_error: str | None = None
    ocr_applied: bool | None = None
    extracted_text: str | None = None
    summary: str | None = None
    key_topics: list[str] = Field(default_factory=list)
    key_phrases: list[str] = Field(default_factory=list)
    extracted_entities: list[ExtractedEntity] = Field(default_factory=list)
    sentiment: Sentiment | None = None
    created_by: str | None = None
    modified_by: str | None = None
    created_at: UtcDateTime | None = Field(default=None, description="Created in the source system")
    modified_at: UtcDateTime | None = Field(
        default=None, description="Modified in the source system"
    )


class EmailData(StructuredData, LinkedEntities):
    SHARD_TYPE_NAME = "Email"
    SCHEMA_VERSION = "1.0"
    DESCRIPTION = "An email from a mailbox integration"
    CATEGORY = "communication"
    VECTOR_TEXT_FIELD = "bodyPlainText"

    from_: Person = Field(alias="from")
    to: list[Person] = Field(default_factory=list)
    cc: list[Person] = Field(default_factory=list)
    bcc: list[Person] = Field(default_factory=list)
    subject: str | None = None
    thread_id: str | None = None
    internet_message_id: str | None = Field(default=None, description="RFC 5322 Message-ID")
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    body: str | None = None
    body_plain_text: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    importance: Literal["low", "normal", "high"] | None = None
    is_reply: bool | None = None
    sentiment: Sentiment | None = None
    topics: list[str] = Field(default_factory=list)
    action_items: list[ActionItem] = Field(default_factory=list)
    email_type: str | None = Field(default=None, description="intro, proposal, negotiation, ...")
    sent_at: UtcDateTime | None = None
    received_at: UtcDateTime | None = None


class Mention(CamelModel):
    user_id: str | None = None
    name: str | None = None
    email: str | None = None
    contact_id: str | None = None


class Reaction(CamelModel):
    name: str = Field(min_length=1, description="Emoji name")
    count: Count = 1
    users: list[str] = Field(default_factory=list)


class MessageData(StructuredData, LinkedEntities):
    SHARD_TYPE_NAME = "Message"
    SCHEMA_VERSION = "1.0"
    DESCRIPTION = "A chat message (Slack, Teams)"
    CATEGORY = "communication"
    VECTOR_TEXT_FIELD = "text"

    platform: str | None = Field(default=None, description="slack, teams, ...")
    channel_id: str | None = None
    channel_name: str | None = None
    channel_type: Literal["dm", "channel", "group"] | None = None
    thread_id: str | None = None
    parent_message_id: str | None = None
    from_: Person | None = Field(default=None, alias="from")
    text: str | None = None
    mentions: list[Mention] = Field(default_factory=list)
    reactions: list[Reaction] = Field(default_factory=list)
    attachments: list[Attachment] = Field(default_factory=list)
    reply_count: Count | None = None
    importance: Literal["low", "normal", "high"] | None = None
    sentiment: Sentiment | None = None
    topics: list[str] = Field(default_factory=list)
    action_items: list[ActionItem] = Field(default_factory=list)
    sent_at: UtcDateTime | None = None
    edited_at: UtcDateTime | None = None


class MeetingParticipant(Person):
    talk_time: float | None = Field(default=None, ge=0, description="Seconds spoken")
    sentiment: Sentiment | None = None


class Recording(CamelModel):
    url: str | None = None
    blob_url: str | None = None
    duration: float | None = Field(default=None, ge=0, description="Seconds")
    size: Count | None = Field(default=None, description="Bytes")


class TranscriptSegment(CamelModel):
    speaker: str | None = None
    start_time: float = Field(ge=0, description="Seconds from the start")
    end_time: float = Field(ge=0, description="Seconds from the start")
    text: str
    sentiment: Sentiment | None = None


class KeyMoment(CamelModel):
    timestamp: float = Field(ge=0, description="Seconds from the start")
    type: Literal["action_item", "objection", "commitment", "question"]
    text: str
    speaker: str | None = None


class MeetingSentiment(CamelModel):
    overall: Sentiment | None = None
    per_speaker: dict[str, float] = Field(default_factory=dict)


class Engagement(CamelModel):
    score: Percent | None = None
    talk_time_ratio: float | None = Field(
        default=None, ge=0, description="Customer / rep talk time"
    )
    question_count: Count | None = None
    interruption_count: Count | None = None


class DealSignals(CamelModel):
    positive: list[str] = Field(default_factory=list)
    negative: list[str] = Field(default_factory=list)
    neutral: list[str] = Field(default_factory=list)


class MeetingAnalysis(CamelModel):
    meeting_type: Literal["discovery", "demo", "negotiation", "follow_up", "closing"] | None = None
    topics: list[str] = Field(default_factory=list)
    key_moments: list[KeyMoment] = Field(default_factory=list)
    action_items: list[ActionItem] = Field(default_factory=list)
    commitments: list[str] = Field(default_factory=list)
    objections: list[str] = Field(default_factory=list)
    next_steps: list[str] = Field(default_factory=list)
    sentiment: MeetingSentiment | None = None
    engagement: Engagement | None = None
    deal_signals: DealSignals | None = None


class MeetingData(StructuredData, LinkedEntities):
    SHARD_TYPE_NAME = "Meeting"
    SCHEMA_VERSION = "1.0"
    DESCRIPTION = "A held meeting or call, with recording, transcript and analysis"
    CATEGORY = "meeting"
    VECTOR_TEXT_FIELD = "fullTranscript"

    title: str | None = None
    kind: Literal["meeting", "call"] = Field(
        default="meeting", alias="type", description="The ML fields count calls and meetings apart"
    )
    platform: str | None = Field(default=None, description="zoom, teams, google_meet, gong, ...")
    start_time: UtcDateTime | None = None
    end_time: UtcDateTime | None = None
    duration: float | None = Field(default=None, ge=0, description="Minutes")
    organizer: Person | None = None
    participants: list[MeetingParticipant] = Field(default_factory=list)
    calendar_event_id: str | None = Field(default=None, description="CalendarEvent shard id")
    recording: Recording | None = None
    transcript_url: str | None = None
    full_transcript: str | None = None
    transcript_segments: list[TranscriptSegment] = Field(default_factory=list)
    language: str | None = None
    processing_status: Literal["pending", "processing", "completed", "failed"] | None = None
    processing_error: str | None = None
    analysis: MeetingAnalysis | None = None


class Attendee(Person):
    response_status: Literal["accepted", "declined", "tentative", "needs_action"] | None = None
    is_organizer: bool | None = None


class CalendarEventData(StructuredData, LinkedEntities):
    SHARD_TYPE_NAME = "CalendarEvent"
    SCHEMA_VERSION = "1.0"
    DESCRIPTION = "A calendar entry; linked to its Meeting shard once the meeting is held"
    CATEGORY = "calendar"

    title: str | None = None
    description: str | None = None
    start_time: UtcDateTime
    end_time: UtcDateTime | None = None
    is_all_day: bool | None = None
    location: str | None = None
    online_meeting_url: str | None = None
    organizer: Person | None = None
    attendees: list[Attendee] = Field(default_factory=list)
    status: Literal["confirmed", "tentative", "cancelled"] | None = None
    is_recurring: bool | None = None
    recurring_event_id: str | None = None
    classification: str | None = Field(default=None, description="e.g. customer_meeting, internal")
    meeting_shard_id: str | None = None


class ActivityData(StructuredData, LinkedEntities):
    SHARD_TYPE_NAME = "Activity"
    SCHEMA_VERSION = "1.0"
    DESCRIPTION = "One entry of the unified activity timeline, derived from another shard"
    CATEGORY = "activity"

    activity_type: Literal["email", "meeting", "call", "message", "calendar_event", "document"]
    source_shard_id: str = Field(min_length=1)
    source_shard_type_name: str | None = None
    activity_date: UtcDateTime
    subject: str | None = None
    summary: str | None = None
    direction: Literal["inbound", "outbound", "internal"] | None = None
    duration: float | None = Field(default=None, ge=0, description="Minutes")
    participants: list[Person] = Field(default_factory=list)
    engagement_score: Percent | None = None


class InteractionData(StructuredData):
    SHARD_TYPE_NAME = "Interaction"
    SCHEMA_VERSION = "1.0"
    DESCRIPTION = "Person-to-person interaction and relationship strength"
    CATEGORY = "activity"

    from_contact_id: str = Field(min_length=1)
    to_contact_ids: list[str] = Field(default_factory=list)
    interaction_type: str = Field(min_length=1, description="email, meeting, call, message")
    account_id: str | None = None
    opportunity_id: str | None = None
    strength: Percent | None = None
    frequency: float | None = Field(default=None, ge=0, description="Interactions per 30 days")
    recency: Count | None = Field(default=None, description="Days since the last interaction")
    interaction_count: Count | None = None
    first_interaction_at: UtcDateTime | None = None
    last_interaction_at: UtcDateTime | None = None
    source_shard_ids: list[str] = Field(default_factory=list)


STRUCTURED_DATA_MODELS: dict[str, type[StructuredData]] = {
    model.SHARD_TYPE_NAME: model
    for model in (
        OpportunityData,
        AccountData,
        ContactData,
        LeadData,
        DocumentData,
        EmailData,
        MessageData,
        MeetingData,
        CalendarEventData,
        ActivityData,
        InteractionData,
    )
}

SHARD_TYPE_NAMES: tuple[str, ...] = tuple(STRUCTURED_DATA_MODELS)


def structured_data_model(shard_type_name: str) -> type[StructuredData]:
    """PermanentError for an unknown type: retrying cannot make it known."""
    try:
        return STRUCTURED_DATA_MODELS[shard_type_name]
    except KeyError:
        raise PermanentError(
            f"unknown shard type {shard_type_name!r} (known: {', '.join(SHARD_TYPE_NAMES)})",
            resource=f"shard_types/{shard_type_name}",
        ) from None


def validate_structured_data(shard_type_name: str, data: Mapping[str, Any]) -> StructuredData:
    """Validate `structuredData` for its type; pydantic's ValidationError names each field."""
    return structured_data_model(shard_type_name).model_validate(data)


def structured_data_json_schema(shard_type_name: str) -> dict[str, Any]:
    return structured_data_model(shard_type_name).model_json_schema(by_alias=True)


# --------------------------------------------------------------------------------------
# The shard document
# --------------------------------------------------------------------------------------


class RelationshipMetadata(CamelModel):
    """What entity linking records about a link; extra keys are kept."""

    model_config = ConfigDict(extra="allow")

    confidence: Percent | None = None
    strategy: str | None = Field(
        default=None, description="explicit_reference, participant_matching..."
    )
    created_by: Literal["auto", "manual"] | None = None
    created_at: UtcDateTime | None = None
    last_verified_at: UtcDateTime | None = None


class Relationship(CamelModel):
    type: str = Field(min_length=1, description="e.g. opportunity, account, contact, attachment")
    target_shard_id: str = Field(min_length=1)
    target_shard_type_name: str = Field(min_length=1)
    external_id: str | None = None
    metadata: RelationshipMetadata = Field(default_factory=lambda: RelationshipMetadata())


class IntegrationSource(CamelModel):
    """Where an integration shard came from: enough to recompute its deterministic id."""

    integration_id: str = Field(min_length=1)
    entity_type: str = Field(min_length=1, description="The provider's entity, e.g. Opportunity")
    provider: str | None = Field(default=None, description="salesforce, hubspot, ...")


SyncStatus = Literal["synced", "pending", "failed", "conflict"]

_KEPT_SYSTEM_PROPERTIES = frozenset({"_etag", "_ts"})


class StoredDocument(CamelModel):
    """A document of a store container: unknown fields are errors (config and records are
    validated, not guessed), the store's `_etag`/`_ts` are kept for optimistic concurrency,
    and the other store bookkeeping (`_rid`, `_self`, `_attachments`) is not data."""

    model_config = ConfigDict(extra="forbid")

    etag: str | None = Field(default=None, alias="_etag")
    ts: int | None = Field(default=None, alias="_ts")

    @model_validator(mode="before")
    @classmethod
    def _drop_store_bookkeeping(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                key: item
                for key, item in value.items()
                if not (key.startswith("_") and key not in _KEPT_SYSTEM_PROPERTIES)
            }
        return value

    def to_document(self) -> dict[str, Any]:
        """The JSON document to write; the store owns `_etag` and `_ts`."""
        return self.model_dump(mode="json", by_alias=True, exclude={"etag", "ts"})


class LastChange(CamelModel):
    """The integration write that last changed a shard: a redelivery of that same record
    finds its key here and replays the outcome (events) instead of calling it unchanged."""

    idempotency_key: str = Field(min_length=1)
    operation: Literal["created", "updated"]
    changed_fields: list[str] = Field(default_factory=list)
    changes: dict[str, Any] = Field(default_factory=dict)


class Shard(StoredDocument):
    """The document stored in the `shards` container (partition key `/tenantId`)."""

    id: str = Field(min_length=1)
    tenant_id: str = Field(min_length=1)
    shard_type_id: str = Field(min_length=1)
    shard_type_name: str = Field(min_length=1)
    schema_version: str = Field(pattern=r"^\d+\.\d+$")
    structured_data: dict[str, Any]
    relationships: list[Relationship] = Field(default_factory=list)
    external_id: str | None = None
    integration_source: IntegrationSource | None = None
    last_synced_at: UtcDateTime | None = None
    sync_status: SyncStatus | None = None
    last_change: LastChange | None = None
    created_at: UtcDateTime
    updated_at: UtcDateTime

    def structured(self) -> StructuredData:
        """`structuredData` validated against this shard's type."""
        return validate_structured_data(self.shard_type_name, self.structured_data)


SHARD_ID_NAMESPACE = uuid.UUID("5b5c10c4-09b8-48ec-8793-060da159b5c8")


def shard_id_factory(tenant_id: str, integration_id: str, entity_type: str) -> Callable[[str], str]:
    """`deterministic_shard_id` with the first three parts fixed: the JSON prefix is built
    once, so the hot path hashes one string per record (same ids, tested)."""
    deterministic_shard_id(tenant_id, integration_id, entity_type, "_")
    prefix = json.dumps([tenant_id, integration_id, entity_type.strip().casefold()])[:-1]
    namespace = SHARD_ID_NAMESPACE.bytes

    def shard_id(external_id: str) -> str:
        if not isinstance(external_id, str) or not external_id.strip():
            raise ValueError("deterministic_shard_id: external_id must be a non-empty string")
        return _uuid5_text(namespace, f"{prefix}, {json.dumps(external_id)}]".encode())

    return shard_id


def _uuid5_text(namespace: bytes, name: bytes) -> str:
    """`str(uuid.uuid5(...))` without building UUID objects (RFC 4122 version 5)."""
    digest = bytearray(hashlib.sha1(namespace + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def deterministic_shard_id(
    tenant_id: str, integration_id: str, entity_type: str, external_id: str
) -> str:
    """uuid5 of the four parts, so re-syncing a record upserts the same shard without a
    lookup. The parts are JSON-encoded (no separator can make two tuples collide); the
    entity type is case-folded because providers and webhooks disagree on its case, while
    the external id keeps its case (Salesforce ids are case-sensitive)."""
    parts = {
        "tenant_id": tenant_id,
        "integration_id": integration_id,
        "entity_type": entity_type,
        "external_id": external_id,
    }
    for name, part in parts.items():
        if not isinstance(part, str) or not part.strip():
            raise ValueError(f"deterministic_shard_id: {name} must be a non-empty string")
    key = json.dumps([tenant_id, integration_id, entity_type.strip().casefold(), external_id])
    return str(uuid.uuid5(SHARD_ID_NAMESPACE, key))
