"""The one event envelope (ARCHITECTURE.md, Events) and its Service Bus encoding."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import to_json

from core import jsontext
from core.errors import PoisonMessageError
from core.ports import OutboundMessage

SCHEMA_VERSION = "1.0"
SUPPORTED_MAJOR = 1


def _now() -> datetime:
    return datetime.now(UTC)


class EventEnvelope(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1)
    type: str = Field(min_length=1)
    source: str = Field(min_length=1)
    time: datetime = Field(default_factory=_now)
    tenant_id: str = Field(alias="tenantId", min_length=1)
    correlation_id: str = Field(alias="correlationId", min_length=1)
    causation_id: str | None = Field(None, alias="causationId")
    schema_version: str = Field(SCHEMA_VERSION, alias="schemaVersion")
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("schema_version")
    @classmethod
    def _known_major(cls, value: str) -> str:
        major, _, _minor = value.partition(".")
        if not major.isdigit():
            raise ValueError(f"schemaVersion {value!r} is not MAJOR.MINOR")
        if int(major) != SUPPORTED_MAJOR:
            raise ValueError(
                f"schemaVersion major {major} is not supported (supported: {SUPPORTED_MAJOR})"
            )
        return value

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    def to_message(
        self,
        *,
        message_id: str | None = None,
        shard_type_name: str | None = None,
        scheduled_enqueue_time: datetime | None = None,
        extra_properties: dict[str, str | int | float | bool] | None = None,
    ) -> OutboundMessage:
        """`message_id` is the idempotency key (duplicate detection); defaults to the id."""
        properties: dict[str, str | int | float | bool] = {
            "eventType": self.type,
            "tenantId": self.tenant_id,
        }
        if shard_type_name:
            properties["shardTypeName"] = shard_type_name
        if extra_properties:
            properties.update(extra_properties)
        return OutboundMessage(
            body=self.to_json_bytes(),
            message_id=message_id or self.id,
            correlation_id=self.correlation_id,
            subject=self.type,
            application_properties=properties,
            scheduled_enqueue_time=scheduled_enqueue_time,
        )


class EnvelopeWriter:
    """Bus messages of the events of one publication (one source, tenant, correlation,
    causation and moment), for hot paths: the envelope is written straight to JSON with
    the payload's JSON (serialised once by pydantic) spliced in; the same wire form as
    `EventEnvelope(...).to_message()`, which receivers validate. The fields the events
    share are encoded once, when the writer is made. `time` (ISO 8601, UTC) defaults to
    now."""

    __slots__ = ("_shared", "correlation_id", "tenant_id")

    def __init__(
        self,
        *,
        source: str,
        tenant_id: str,
        correlation_id: str,
        causation_id: str | None = None,
        time: str | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.correlation_id = correlation_id
        shared = to_json(
            {
                "source": source,
                "time": time or datetime.now(UTC).isoformat(),
                "tenantId": tenant_id,
                "correlationId": correlation_id,
                "causationId": causation_id,
                "schemaVersion": SCHEMA_VERSION,
            }
        )
        self._shared = b"," + shared[1:-1] + b',"data":'

    def message(
        self,
        event_type: str,
        payload: BaseModel,
        message_id: str,
        properties: dict[str, str | int | float | bool] | None = None,
    ) -> OutboundMessage:
        """One event with a validated payload model. The envelope id is `message_id`, so a
        re-publish is the same event."""
        body = b"".join(
            (
                b'{"id":',
                to_json(message_id),
                b',"type":',
                to_json(event_type),
                self._shared,
                payload.__pydantic_serializer__.to_json(payload, by_alias=True),
                b"}",
            )
        )
        return OutboundMessage(
            body=body,
            message_id=message_id,
            correlation_id=self.correlation_id,
            subject=event_type,
            application_properties={
                "eventType": event_type,
                "tenantId": self.tenant_id,
                **(properties or {}),
            },
        )


def envelope_message(
    event_type: str,
    payload: BaseModel,
    *,
    source: str,
    message_id: str,
    tenant_id: str,
    correlation_id: str,
    causation_id: str | None = None,
    properties: dict[str, str | int | float | bool] | None = None,
    time: str | None = None,
) -> OutboundMessage:
    """The bus message of one event (`EnvelopeWriter`)."""
    writer = EnvelopeWriter(
        source=source,
        tenant_id=tenant_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        time=time,
    )
    return writer.message(event_type, payload, message_id, properties)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(body)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def decode_envelope(body: bytes | str) -> EventEnvelope:
    """Parse and validate a bus message body; PoisonMessageError names the problem."""
    try:
        raw = jsontext.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoisonMessageError("InvalidJson", f"message body is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise PoisonMessageError(
            "InvalidEnvelope", f"message body is a JSON {type(raw).__name__}, not an object"
        )
    try:
        return EventEnvelope.model_validate(raw)
    except ValidationError as exc:
        if any(item["loc"] == ("schemaVersion",) for item in exc.errors()):
            raise PoisonMessageError("UnsupportedSchemaVersion", _describe(exc)) from exc
        raise PoisonMessageError("InvalidEnvelope", _describe(exc)) from exc
