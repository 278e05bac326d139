"""The contract between the sync worker and a provider adapter.

An adapter reads one provider's records per entity type, page by page, in the provider's
own shape (`rawData`); mapping them onto shards is the CRM mapping processor's job.
Adapters raise the port errors of `core.errors`: `TransientError` (retry later),
`PermanentError` (bad config or data; retrying cannot help) and `AuthError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


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
