"""The contract between the sync worker and a provider adapter.

An adapter reads one provider's records per entity type, page by page, in the provider's
own shape (`rawData`); mapping them onto shards is the CRM mapping processor's job.
Adapters raise the port errors of `core.errors`: `TransientError` (retry later),
`PermanentError` (bad config or data; retrying cannot help) and `AuthError`, plus
`DailyLimitReached` (a TransientError) when the provider's allowance for the day is spent.
CRM adapters also describe their entity types' fields (`DescribableAdapter`) for the
mapping API.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from core.errors import TransientError


class DailyLimitReached(TransientError):  # noqa: N818 - the name other modules import
    """The integration's daily API allowance is spent. Not a failure: the sync worker ends
    the run `partial` and the next run resumes from the stored cursor. `retry_after` is the
    seconds until the allowance resets, when known."""


@dataclass(frozen=True)
class FetchedPage:
    """One page of raw records. `cursor` is the provider's incremental position once this
    page is processed (e.g. the newest LastModifiedDate it covers): storing it and passing
    it back as `since` resumes after this page. None when the provider has no position."""

    records: list[dict[str, Any]]
    cursor: str | None


class ProviderAdapter(Protocol):
    provider: str
    """The provider's name: `files`, `salesforce`, ..."""

    def entity_types(self) -> list[str]:
        """The entity types this connection can serve, parents before children."""
        ...

    def fetch(self, entity_type: str, *, since: str | None = None) -> Iterator[FetchedPage]:
        """The records of one entity type, page by page; `since` is a cursor from an
        earlier sync (only records changed after it), None for a full sync."""
        ...

    def external_id(self, entity_type: str, record: Mapping[str, Any]) -> str:
        """The record's id in the provider; PermanentError naming the entity type and the
        record when it has none."""
        ...


@dataclass(frozen=True)
class ExternalField:
    """A field of a provider's entity type as the mapping API offers it: `name` is the
    source path in `rawData` (what a field mapping's `source` names), `type` the
    provider's own type name."""

    name: str
    label: str
    type: str
    nullable: bool = True
    custom: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "nullable": self.nullable,
            "custom": self.custom,
        }


class DescribableAdapter(ProviderAdapter, Protocol):
    """An adapter that can list an entity type's fields (field discovery for mappings)."""

    def describe(self, entity_type: str) -> list[ExternalField]:
        """The entity type's fields, in the provider's order; NotFoundError when the
        provider has no such entity type."""
        ...


class RelationshipKey(NamedTuple):
    """A foreign key in a shard's mapped `structuredData`: the shard relates to the
    `target_entity_type` record whose external id is at `field_path`.

    `field_path` is a field name (`accountId`), or `array[].field` for one relationship per
    item of an array field (`contactRoles[].contactId`)."""

    relationship_type: str
    target_entity_type: str
    field_path: str

    def external_ids(self, structured_data: Mapping[str, Any]) -> list[str]:
        """The target external ids in JSON-form `structuredData` (camelCase keys, objects as
        dicts), in order, without blanks or repeats."""
        array_field, marker, item_field = self.field_path.partition("[].")
        if marker:
            items = structured_data.get(array_field) or []
            values = [item.get(item_field) for item in items if isinstance(item, Mapping)]
        else:
            values = [structured_data.get(self.field_path)]
        found: list[str] = []
        for value in values:
            if isinstance(value, str) and value.strip() and value not in found:
                found.append(value)
        return found
