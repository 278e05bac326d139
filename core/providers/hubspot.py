"""The HubSpot adapter: CRM API v3 objects, properties and search.

Endpoints (HubSpot developer docs: "CRM API | Objects", "CRM API | Search",
"Associations v4", "CRM API | Properties", "API usage guidelines and limits"):

* Full sync: `GET /crm/v3/objects/{type}?limit=100&properties=a,b&associations=companies
  &archived=false&after=X`, answered `{results: [{id, properties, createdAt, updatedAt,
  archived, associations}], paging: {next: {after, link}}}`. The list is ordered by id,
  not by modification, so only the last page carries a cursor: the newest
  modification time of the whole listing.
* Incremental: `POST /crm/v3/objects/{type}/search` filtering the modified property
  (`hs_lastmodifieddate`; `lastmodifieddate` for contacts) `GTE` the cursor less the
  overlap (epoch milliseconds), sorted ascending, up to 200 per page. Search answers at
  most 10,000 results per query (a 400 past that), so before `after` would cross the cap
  the sync starts a new search from the newest modification time it has seen and skips
  the records at that instant it already returned. Search results carry no associations:
  they are read with `POST /crm/v4/associations/{type}/{toType}/batch/read` and attached in
  the list shape, `associations: {toType: {results: [{id, type}]}}` (one entry per
  associated id).
* Field discovery: `GET /crm/v3/properties/{type}` (`name, label, type, hubspotDefined`);
  each property's source path is `properties.{name}`.
* Rate limits: 429 `{"status": "error", "errorType": "RATE_LIMIT", "policyName":
  "TEN_SECONDLY_ROLLING" | "DAILY", ...}`; the secondly one is retried after a pause, the
  daily one ends the sync partial; `X-HubSpot-RateLimit-*` headers feed the limiter.

Properties read: the modified property, every `properties.X` the integration's mapping
reads, and `config.fields[type]`. Associations read: the object's defaults (deals:
companies, contacts; contacts: companies), every `associations.X` the mapping reads,
and `config.associations[type]`.

Auth: a private app token (`secretRefs.apiKey` or `accessToken`), or OAuth with the
refresh grant at `https://api.hubapi.com/oauth/v1/token`; access tokens live 30 minutes
(`expires_in`), refresh tokens do not rotate but a new one is stored if sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from core.errors import PermanentError
from core.mapping.paths import PathSyntaxError, parse_path
from core.models.integration import TenantIntegration
from core.ports import SecretStore
from core.providers.base import ExternalField, FetchedPage
from core.providers.connection import (
    CrmSettings,
    ProviderDefaults,
    ProviderSession,
    field_moment,
    format_moment,
    later,
    open_session,
    parse_moment,
    parse_settings,
    window_start,
)
from core.providers.hubspot_defaults import (
    DEFAULT_MODIFIED_PROPERTY,
    HUBSPOT_ENTITY_TYPES,
    hubspot_default_entity_mappings,
    hubspot_object,
)
from core.providers.ratelimit import SYSTEM_TIMING, RateLimitSettings, Timing

log = logging.getLogger(__name__)

PROVIDER = "hubspot"
DEFAULTS = ProviderDefaults(
    provider=PROVIDER,
    base_url="https://api.hubapi.com",
    oauth_endpoint="https://api.hubapi.com/oauth/v1/token",
    rates=RateLimitSettings(requests_per_second=10),
)
SEARCH_RESULT_CAP = 10_000
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


class HubSpotSettings(CrmSettings):
    page_size: int = Field(default=100, ge=1, le=100)
    search_page_size: int = Field(default=200, ge=1, le=200)
    associations: dict[str, list[str]] = Field(
        default_factory=dict, description="Extra associated object types to read, per type"
    )


class HubSpotAdapter:
    """A `ProviderAdapter` (and `DescribableAdapter`) over the HubSpot CRM API."""

    provider = PROVIDER

    def __init__(self, settings: HubSpotSettings, session: ProviderSession) -> None:
        self.settings = settings
        self.session = session

    def close(self) -> None:
        self.session.close()

    # -- the adapter contract --------------------------------------------------------------

    def entity_types(self) -> list[str]:
        return list(self.settings.entity_types or HUBSPOT_ENTITY_TYPES)

    def fetch(self, entity_type: str, *, since: str | None = None) -> Iterator[FetchedPage]:
        object_type = _object_type(entity_type)
        if since is None:
            yield from self._list(object_type)
            return
        since_moment = parse_moment(since, provider=PROVIDER, what="cursor")
        yield from self._search(object_type, since_moment)

    def external_id(self, entity_type: str, record: Mapping[str, Any]) -> str:
        value = record.get("id")
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise PermanentError(
            f"hubspot: {entity_type} record has no id (properties: "
            f"{sorted(record.get('properties') or {})!r})",
            resource=entity_type,
        )

    def describe(self, entity_type: str) -> list[ExternalField]:
        object_type = _object_type(entity_type)
        path = f"/crm/v3/properties/{object_type}"
        body = self.session.client().json("GET", path)
        results = body.get("results") if isinstance(body, Mapping) else None
        if not isinstance(results, list):
            raise PermanentError(f"hubspot: GET {path} answered without results", resource=path)
        fields = [ExternalField("id", "Record ID", "string", nullable=False)]
        for item in results:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise PermanentError(
                    f"hubspot: GET {path} lists a property without a name", resource=path
                )
            fields.append(
                ExternalField(
                    name=f"properties.{item['name']}",
                    label=str(item.get("label") or item["name"]),
                    type=str(item.get("type") or "string"),
                    nullable=True,
                    custom=not bool(item.get("hubspotDefined", False)),
                )
            )
        return fields

    # -- full sync -------------------------------------------------------------------------

    def _list(self, object_type: str) -> Iterator[FetchedPage]:
        http = self.session.client()
        path = f"/crm/v3/objects/{object_type}"
        modified = _modified_property(object_type)
        params: dict[str, Any] = {"limit": self.settings.page_size, "archived": "false"}
        properties = self._properties(object_type)
        associations = self._associations(object_type)
        if properties:
            params["properties"] = ",".join(properties)
        if associations:
            params["associations"] = ",".join(associations)
        newest: datetime | None = None
        after: str | None = None
        while True:
            body = http.json("GET", path, params={**params, **({"after": after} if after else {})})
            records, after = _results(body, f"GET {path}")
            for record in records:
                _dedupe_associations(record)
                newest = later(newest, _modified(record, modified))
            last = after is None
            cursor = format_moment(newest) if last and newest is not None else None
            if records or (last and cursor is not None):
                yield FetchedPage(records, cursor)
            if last:
                return

    # -- incremental sync ------------------------------------------------------------------

    def _search(self, object_type: str, since: datetime) -> Iterator[FetchedPage]:
        http = self.session.client()
        path = f"/crm/v3/objects/{object_type}/search"
        modified = _modified_property(object_type)
        limit = self.settings.search_page_size
        start = window_start(since, self.session.overlap)
        start_ms = _epoch_ms(start) if start is not None else 0
        properties = self._properties(object_type)
        associations = self._associations(object_type)
        cursor: datetime | None = since
        seen_at_start: set[str] = set()
        newest_ms = start_ms
        ids_at_newest: set[str] = set()
        after: str | None = None
        while True:
            body = http.json(
                "POST",
                path,
                json_body=self._search_body(modified, start_ms, properties, limit, after),
            )
            results, after = _results(body, f"POST {path}")
            records: list[dict[str, Any]] = []
            for record in results:
                record_id = self.external_id(object_type, record)
                moment = _modified(record, modified)
                moment_ms = _epoch_ms(moment) if moment is not None else None
                if moment_ms == start_ms and record_id in seen_at_start:
                    continue
                records.append(record)
                cursor = later(cursor, moment)
                if moment_ms is not None and moment_ms > newest_ms:
                    newest_ms, ids_at_newest = moment_ms, {record_id}
                elif moment_ms == newest_ms:
                    ids_at_newest.add(record_id)
            if records and associations:
                self._attach_associations(object_type, associations, records)
            if records:
                yield FetchedPage(records, None if cursor is None else format_moment(cursor))
            if after is None:
                return
            if after.isdigit() and int(after) + limit > SEARCH_RESULT_CAP:
                if newest_ms == start_ms:
                    raise PermanentError(
                        f"hubspot: more than {SEARCH_RESULT_CAP} {object_type} share the "
                        f"modification time {format_moment(_from_ms(start_ms))}; the search API "
                        "cannot page past them",
                        resource=path,
                    )
                log.info(
                    "hubspot: %s search reached its %d-result cap; continuing from %s",
                    object_type,
                    SEARCH_RESULT_CAP,
                    format_moment(_from_ms(newest_ms)),
                )
                start_ms, seen_at_start, after = newest_ms, set(ids_at_newest), None

    @staticmethod
    def _search_body(
        modified: str, start_ms: int, properties: list[str], limit: int, after: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "filterGroups": [
                {"filters": [{"propertyName": modified, "operator": "GTE", "value": str(start_ms)}]}
            ],
            "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
            "properties": properties,
            "limit": limit,
        }
        if after is not None:
            body["after"] = after
        return body

    def _attach_associations(
        self, object_type: str, associations: list[str], records: list[dict[str, Any]]
    ) -> None:
        http = self.session.client()
        by_id = {self.external_id(object_type, record): record for record in records}
        for to_type in associations:
            path = f"/crm/v4/associations/{object_type}/{to_type}/batch/read"
            body = http.json("POST", path, json_body={"inputs": [{"id": key} for key in by_id]})
            results = body.get("results") if isinstance(body, Mapping) else None
            if not isinstance(results, list):
                raise PermanentError(
                    f"hubspot: POST {path} answered without results", resource=path
                )
            label = f"{_singular(object_type)}_to_{_singular(to_type)}"
            for item in results:
                source = item.get("from") if isinstance(item, Mapping) else None
                record = by_id.get(str(source.get("id"))) if isinstance(source, Mapping) else None
                targets = item.get("to") if isinstance(item, Mapping) else None
                if record is None or not isinstance(targets, list):
                    raise PermanentError(
                        f"hubspot: POST {path} answered an association of an unknown record",
                        resource=path,
                    )
                if isinstance(item.get("paging"), Mapping) and item["paging"].get("next"):
                    log.warning(
                        "hubspot: %s %s has more %s associations than one batch read returns; "
                        "the first page is kept",
                        object_type,
                        source.get("id") if isinstance(source, Mapping) else "?",
                        to_type,
                    )
                ids: list[str] = []
                for target in targets:
                    value = target.get("toObjectId") if isinstance(target, Mapping) else None
                    if value is not None and str(value) not in ids:
                        ids.append(str(value))
                if ids:
                    record.setdefault("associations", {})[to_type] = {
                        "results": [{"id": value, "type": label} for value in ids]
                    }

    # -- what to read ----------------------------------------------------------------------

    def _properties(self, object_type: str) -> list[str]:
        names = [_modified_property(object_type)]
        for source in self._sources(object_type):
            segments = _segments(object_type, source)
            if len(segments) >= 2 and segments[0] == "properties" and isinstance(segments[1], str):
                names.append(segments[1])
        names.extend(_folded(self.settings.fields, object_type))
        return list(dict.fromkeys(names))

    def _associations(self, object_type: str) -> list[str]:
        known = hubspot_object(object_type)
        names = list(known.associations) if known else []
        for source in self._sources(object_type):
            segments = _segments(object_type, source)
            if (
                len(segments) >= 2
                and segments[0] == "associations"
                and isinstance(segments[1], str)
            ):
                names.append(segments[1])
        names.extend(_folded(self.settings.associations, object_type))
        for name in names:
            if not _NAME.match(name):
                raise PermanentError(
                    f"hubspot: {name!r} is not an object type to read associations of",
                    resource=object_type,
                )
        return list(dict.fromkeys(names))

    def _sources(self, object_type: str) -> list[str]:
        sources = self.session.sources(object_type)
        if sources:
            return sources
        for mapping in hubspot_default_entity_mappings():
            if mapping.entity_type == object_type:
                return [item.source for item in mapping.field_mappings if item.source]
        return []


def _folded(values: Mapping[str, list[str]], key: str) -> list[str]:
    for name, value in values.items():
        if name.strip().casefold() == key:
            return value
    return []


def _segments(object_type: str, source: str) -> tuple[str | int, ...]:
    try:
        return parse_path(source)
    except PathSyntaxError as exc:
        raise PermanentError(
            f"hubspot: {object_type} mapping: {exc}", resource=object_type
        ) from None


def _object_type(entity_type: str) -> str:
    name = entity_type.strip().casefold()
    if not _NAME.match(name):
        raise PermanentError(
            f"hubspot: {entity_type!r} is not an object type", resource=entity_type
        )
    return name


def _modified_property(object_type: str) -> str:
    known = hubspot_object(object_type)
    return known.modified_property if known else DEFAULT_MODIFIED_PROPERTY


def _singular(object_type: str) -> str:
    return {"companies": "company", "contacts": "contact", "deals": "deal"}.get(
        object_type, object_type
    )


def _results(body: Any, endpoint: str) -> tuple[list[dict[str, Any]], str | None]:
    results = body.get("results") if isinstance(body, Mapping) else None
    if not isinstance(results, list) or not all(isinstance(item, dict) for item in results):
        raise PermanentError(
            f"hubspot: {endpoint} answered without a results list of objects", resource=endpoint
        )
    paging = body.get("paging")
    after = None
    if isinstance(paging, Mapping) and isinstance(paging.get("next"), Mapping):
        value = paging["next"].get("after")
        after = str(value) if value not in (None, "") else None
    return results, after


def _modified(record: Mapping[str, Any], modified: str) -> datetime | None:
    properties = record.get("properties")
    value = properties.get(modified) if isinstance(properties, Mapping) else None
    if value in (None, ""):
        value = record.get("updatedAt")
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.isdigit():
        return _from_ms(int(value))
    return field_moment(
        value,
        provider=PROVIDER,
        subject=f"record {record.get('id')!r}",
        field=modified,
        resource=modified,
    )


def _dedupe_associations(record: dict[str, Any]) -> None:
    """One entry per associated id (the list endpoint repeats an id once per association
    label, e.g. `deal_to_company` and `deal_to_company_unlabeled`)."""
    associations = record.get("associations")
    if not isinstance(associations, dict):
        return
    for value in associations.values():
        results = value.get("results") if isinstance(value, dict) else None
        if isinstance(results, list):
            seen: set[str] = set()
            unique = []
            for item in results:
                key = str(item.get("id")) if isinstance(item, Mapping) else repr(item)
                if key not in seen:
                    seen.add(key)
                    unique.append(item)
            value["results"] = unique


def _epoch_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def build_hubspot(
    config: Mapping[str, Any],
    *,
    secrets: SecretStore | None,
    integration: TenantIntegration | None,
    timing: Timing = SYSTEM_TIMING,
) -> HubSpotAdapter:
    settings = parse_settings(HubSpotSettings, PROVIDER, config)
    session = open_session(
        DEFAULTS, settings, integration=integration, secrets=secrets, timing=timing
    )
    return HubSpotAdapter(settings, session)
