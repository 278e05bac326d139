"""The Dynamics 365 adapter: the Dataverse Web API (OData v4).

Endpoints (Microsoft Learn, Dataverse Web API: "Query data", "Page results", "Query table
definitions", "Service protection API limits"):

* `GET {org}/api/data/v9.2/{entitySet}?$select=a,b&$filter=modifiedon gt {cursor -
  overlap}&$orderby=modifiedon asc,{primaryId} asc` with `Prefer: odata.maxpagesize=N,
  odata.include-annotations="*"`, answered `{"@odata.context", "value": [{"@odata.etag",
  ...}], "@odata.nextLink"}`; the next page is the `@odata.nextLink` URL as given (it is
  opaque; Dataverse has no `$skip`). Ordered by `modifiedon`, so every page's cursor is a
  safe resume point.
* Field discovery: `GET EntityDefinitions(LogicalName='{table}')/Attributes?$select=
  LogicalName,AttributeType,DisplayName,RequiredLevel,IsCustomAttribute,AttributeOf`;
  lookups are offered as the `_{name}_value` keys records carry, and columns that only
  shadow another (`AttributeOf`) are left out.
* An unknown table's entity set and primary key come from
  `EntityDefinitions(LogicalName='{table}')?$select=EntitySetName,PrimaryIdAttribute`.
* Errors are `{"error": {"code", "message"}}`; service protection limits answer 429 with
  `Retry-After`, which pauses the integration and retries.

Columns read: the primary key, `modifiedon`, every column the integration's mapping reads
(the part of a source before `@` or `.`), and `config.fields[table]`; a table no mapping
covers is read whole.

Auth: Microsoft identity platform, `https://login.microsoftonline.com/organizations/
oauth2/v2.0/token` (`config.tokenUrl` for a tenant's own endpoint), scope
`{org}/.default`: the refresh-token grant (Microsoft rotates refresh tokens: each new one
is written back) or, with only `secretRefs.clientSecret`, client credentials for an
application user. Access tokens live about an hour (`expires_in`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime
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
from core.providers.dynamics_defaults import (
    DYNAMICS_ENTITY_TYPES,
    MODIFIED_COLUMN,
    DataverseTable,
    dataverse_table,
    dynamics_default_entity_mappings,
)
from core.providers.ratelimit import SYSTEM_TIMING, RateLimitSettings, Timing

PROVIDER = "dynamics"
DEFAULTS = ProviderDefaults(
    provider=PROVIDER,
    base_url=None,
    oauth_endpoint="https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
    rates=RateLimitSettings(requests_per_second=20),
    oauth_scope="{base_url}/.default",
    client_credentials=True,
)
ODATA_HEADERS = {"OData-MaxVersion": "4.0", "OData-Version": "4.0"}
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
REQUIRED_LEVELS = frozenset({"SystemRequired", "ApplicationRequired"})
_LOGICAL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_COLUMN = re.compile(r"^_?[a-z][a-z0-9_]*$")


class DynamicsSettings(CrmSettings):
    api_version: str = Field(default="9.2", pattern=r"^\d+\.\d+$")
    page_size: int = Field(default=500, ge=1, le=5000)
    entity_sets: dict[str, str] = Field(
        default_factory=dict, description="Entity set names of custom tables, by logical name"
    )


class DynamicsAdapter:
    """A `ProviderAdapter` (and `DescribableAdapter`) over the Dataverse Web API."""

    provider = PROVIDER

    def __init__(self, settings: DynamicsSettings, session: ProviderSession) -> None:
        self.settings = settings
        self.session = session
        self._api = f"/api/data/v{settings.api_version}"
        self._tables: dict[str, DataverseTable] = {}

    def close(self) -> None:
        self.session.close()

    # -- the adapter contract --------------------------------------------------------------

    def entity_types(self) -> list[str]:
        return list(self.settings.entity_types or DYNAMICS_ENTITY_TYPES)

    def fetch(self, entity_type: str, *, since: str | None = None) -> Iterator[FetchedPage]:
        table = self._table(entity_type)
        since_moment = (
            None if since is None else parse_moment(since, provider=PROVIDER, what="cursor")
        )
        start = window_start(since_moment, self.session.overlap)
        params: dict[str, str] = {
            "$orderby": f"{MODIFIED_COLUMN} asc,{table.primary_id} asc",
        }
        columns = self._columns(table)
        if columns:
            params["$select"] = ",".join(columns)
        if start is not None:
            params["$filter"] = f"{MODIFIED_COLUMN} gt {start.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        headers = {
            **ODATA_HEADERS,
            "Prefer": f'odata.maxpagesize={self.settings.page_size},odata.include-annotations="*"',
        }
        http = self.session.client()
        path = f"{self._api}/{table.entity_set}"
        cursor = since_moment
        body = http.json("GET", path, params=params, headers=headers)
        endpoint = f"GET {path}"
        while True:
            records, next_link = _value(body, endpoint)
            for record in records:
                cursor = later(cursor, _modified(record, table))
            if records:
                yield FetchedPage(records, None if cursor is None else format_moment(cursor))
            if next_link is None:
                return
            body = http.json("GET", next_link, headers=headers)

    def external_id(self, entity_type: str, record: Mapping[str, Any]) -> str:
        table = self._table(entity_type)
        value = record.get(table.primary_id)
        if isinstance(value, str) and value.strip():
            return value
        raise PermanentError(
            f"dynamics: {table.entity_type} record has no {table.primary_id} "
            f"(etag {record.get('@odata.etag')!r})",
            resource=table.entity_type,
        )

    def describe(self, entity_type: str) -> list[ExternalField]:
        logical = _logical_name(entity_type)
        path = f"{self._api}/EntityDefinitions(LogicalName='{logical}')/Attributes"
        params = {
            "$select": "LogicalName,AttributeType,DisplayName,RequiredLevel,IsCustomAttribute,"
            "AttributeOf"
        }
        body = self.session.client().json("GET", path, params=params, headers=ODATA_HEADERS)
        attributes, _ = _value(body, f"GET {path}")
        fields: list[ExternalField] = []
        for item in attributes:
            name = item.get("LogicalName")
            if not isinstance(name, str):
                raise PermanentError(
                    f"dynamics: GET {path} lists an attribute without a LogicalName",
                    resource=path,
                )
            if item.get("AttributeOf"):
                continue
            kind = str(item.get("AttributeType") or "unknown")
            required = item.get("RequiredLevel")
            level = required.get("Value") if isinstance(required, Mapping) else None
            fields.append(
                ExternalField(
                    name=f"_{name}_value" if kind in LOOKUP_TYPES else name,
                    label=_label(item.get("DisplayName")) or name,
                    type=kind,
                    nullable=level not in REQUIRED_LEVELS,
                    custom=bool(item.get("IsCustomAttribute", False)),
                )
            )
        return fields

    # -- tables and columns ----------------------------------------------------------------

    def _table(self, entity_type: str) -> DataverseTable:
        logical = _logical_name(entity_type)
        known = dataverse_table(logical) or self._tables.get(logical)
        if known is not None:
            return known
        configured = {name.casefold(): value for name, value in self.settings.entity_sets.items()}
        entity_set = configured.get(logical)
        if entity_set is not None:
            table = DataverseTable(logical, entity_set, f"{logical}id", "")
        else:
            path = f"{self._api}/EntityDefinitions(LogicalName='{logical}')"
            body = self.session.client().json(
                "GET",
                path,
                params={"$select": "EntitySetName,PrimaryIdAttribute"},
                headers=ODATA_HEADERS,
            )
            entity_set = body.get("EntitySetName") if isinstance(body, Mapping) else None
            primary = body.get("PrimaryIdAttribute") if isinstance(body, Mapping) else None
            if not isinstance(entity_set, str) or not isinstance(primary, str):
                raise PermanentError(
                    f"dynamics: GET {path} answered without EntitySetName and PrimaryIdAttribute",
                    resource=path,
                )
            table = DataverseTable(logical, entity_set, primary, "")
        self._tables[logical] = table
        return table

    def _columns(self, table: DataverseTable) -> list[str]:
        sources = self.session.sources(table.entity_type) or _default_sources(table.entity_type)
        extras = _folded(self.settings.fields, table.entity_type)
        if not sources and not extras:
            return []
        columns = [table.primary_id, MODIFIED_COLUMN]
        for source in sources:
            try:
                first = parse_path(source)[0]
            except PathSyntaxError as exc:
                raise PermanentError(
                    f"dynamics: {table.entity_type} mapping: {exc}", resource=table.entity_type
                ) from None
            if not isinstance(first, str):
                continue
            column = first.split("@", 1)[0]
            if _COLUMN.match(column):
                columns.append(column)
        for extra in extras:
            if not _COLUMN.match(extra):
                raise PermanentError(
                    f"dynamics: config.fields.{table.entity_type} names {extra!r}, not a column",
                    resource=table.entity_type,
                )
            columns.append(extra)
        return list(dict.fromkeys(columns))


def _folded(values: Mapping[str, list[str]], key: str) -> list[str]:
    for name, value in values.items():
        if name.strip().casefold() == key:
            return value
    return []


def _logical_name(entity_type: str) -> str:
    name = entity_type.strip().casefold()
    if not _LOGICAL_NAME.match(name):
        raise PermanentError(
            f"dynamics: {entity_type!r} is not a table logical name", resource=entity_type
        )
    return name


def _default_sources(entity_type: str) -> list[str]:
    for mapping in dynamics_default_entity_mappings():
        if mapping.entity_type == entity_type:
            return [item.source for item in mapping.field_mappings if item.source]
    return []


def _label(display_name: Any) -> str | None:
    if not isinstance(display_name, Mapping):
        return None
    localized = display_name.get("UserLocalizedLabel")
    if isinstance(localized, Mapping) and isinstance(localized.get("Label"), str):
        return str(localized["Label"])
    labels = display_name.get("LocalizedLabels")
    if isinstance(labels, list) and labels and isinstance(labels[0], Mapping):
        label = labels[0].get("Label")
        return label if isinstance(label, str) else None
    return None


def _value(body: Any, endpoint: str) -> tuple[list[dict[str, Any]], str | None]:
    values = body.get("value") if isinstance(body, Mapping) else None
    if not isinstance(values, list) or not all(isinstance(item, dict) for item in values):
        raise PermanentError(
            f"dynamics: {endpoint} answered without a value list of objects", resource=endpoint
        )
    next_link = body.get("@odata.nextLink")
    if next_link is not None and (not isinstance(next_link, str) or not next_link.strip()):
        raise PermanentError(
            f"dynamics: {endpoint} answered an @odata.nextLink that is not a URL",
            resource=endpoint,
        )
    return values, next_link


def _modified(record: Mapping[str, Any], table: DataverseTable) -> datetime | None:
    value = record.get(MODIFIED_COLUMN)
    if value is None:
        return None
    return field_moment(
        value,
        provider=PROVIDER,
        subject=f"{table.entity_type} {record.get(table.primary_id)!r}",
        field=MODIFIED_COLUMN,
        resource=table.entity_type,
    )


def build_dynamics(
    config: Mapping[str, Any],
    *,
    secrets: SecretStore | None,
    integration: TenantIntegration | None,
    timing: Timing = SYSTEM_TIMING,
) -> DynamicsAdapter:
    settings = parse_settings(DynamicsSettings, PROVIDER, config)
    session = open_session(
        DEFAULTS, settings, integration=integration, secrets=secrets, timing=timing
    )
    return DynamicsAdapter(settings, session)
