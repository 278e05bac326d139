"""The Salesforce adapter: REST API SOQL queries, paged by `nextRecordsUrl`.

Endpoints (Salesforce REST API Developer Guide, "Query", "Query More Results", "sObject
Describe", "Status Codes and Error Responses"):

* `GET {instance}/services/data/vXX.X/query?q=SOQL` answers `{totalSize, done,
  nextRecordsUrl, records: [{attributes: {type, url}, ...}]}`; while `done` is false the
  next batch is `GET {nextRecordsUrl}`. The batch size is asked for with
  `Sforce-Query-Options: batchSize=N` (200-2000; Salesforce may send fewer).
* Incremental: `WHERE LastModifiedDate > {cursor - overlap}`, always
  `ORDER BY LastModifiedDate, Id`, so every page's cursor is a safe resume point.
* `GET /services/data/vXX.X/sobjects/{type}/describe` lists the fields (`name, label,
  type, nillable, custom`) for the mapping API.
* Errors are `[{"message", "errorCode"}]`: `INVALID_SESSION_ID` (401) refreshes the
  token once; `REQUEST_LIMIT_EXCEEDED` "TotalRequests Limit exceeded" (403) is the
  org's rolling 24-hour allowance: `DailyLimitReached`. Every response's
  `Sforce-Limit-Info: api-usage=n/max` feeds the daily tracking.

Fields read: `Id`, `LastModifiedDate`, every field the integration's mapping of the
entity type reads (`Account.Name` is a relationship field SOQL can select), and
`config.fields[entityType]` (for subqueries and extras). Without any of those (an object
no mapping covers) every field `describe` lists is read. The default Opportunity
mapping reads the contact roles subquery. A mapping source into another child
relationship (`X.records`) needs its subquery in `config.fields`.

Auth: OAuth2 refresh-token grant at `https://login.salesforce.com/services/oauth2/token`
(`config.tokenUrl` for sandboxes, `https://test.salesforce.com/...`, or My Domain).
Access tokens carry no lifetime (session timeout per org, 2 h by default): they are kept
30 minutes and refreshed on a 401. Refresh tokens rotate only when the connected app is
set to; a rotated one is written back.
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
from core.providers.ratelimit import SYSTEM_TIMING, RateLimitSettings, Timing
from core.providers.salesforce_defaults import (
    SALESFORCE_ENTITY_TYPES,
    salesforce_default_entity_mappings,
    salesforce_entity,
)

PROVIDER = "salesforce"
DEFAULTS = ProviderDefaults(
    provider=PROVIDER,
    base_url=None,
    oauth_endpoint="https://login.salesforce.com/services/oauth2/token",
    rates=RateLimitSettings(requests_per_second=10),
)
CONTACT_ROLES_SUBQUERY = (
    "(SELECT ContactId, Role, IsPrimary, Contact.Email FROM OpportunityContactRoles)"
)
SUBQUERIES: dict[str, dict[str, str]] = {
    "opportunity": {"opportunitycontactroles": CONTACT_ROLES_SUBQUERY},
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
_SUBQUERY_FROM = re.compile(r"\bFROM\s+([A-Za-z][A-Za-z0-9_]*)", re.IGNORECASE)


class SalesforceSettings(CrmSettings):
    api_version: str = Field(default="62.0", pattern=r"^\d{2,3}\.0$")
    page_size: int = Field(default=2000, ge=200, le=2000)


class SalesforceAdapter:
    """A `ProviderAdapter` (and `DescribableAdapter`) over the Salesforce REST API."""

    provider = PROVIDER

    def __init__(self, settings: SalesforceSettings, session: ProviderSession) -> None:
        self.settings = settings
        self.session = session
        self._api = f"/services/data/v{settings.api_version}"

    def close(self) -> None:
        self.session.close()

    # -- the adapter contract --------------------------------------------------------------

    def entity_types(self) -> list[str]:
        return list(self.settings.entity_types or SALESFORCE_ENTITY_TYPES)

    def fetch(self, entity_type: str, *, since: str | None = None) -> Iterator[FetchedPage]:
        sobject = _sobject(entity_type)
        since_moment = (
            None if since is None else parse_moment(since, provider=PROVIDER, what="cursor")
        )
        soql = self.soql(
            sobject, self._select(sobject), window_start(since_moment, self.session.overlap)
        )
        http = self.session.client()
        options = {"Sforce-Query-Options": f"batchSize={self.settings.page_size}"}
        cursor = since_moment
        body = http.json("GET", f"{self._api}/query", params={"q": soql}, headers=options)
        endpoint = f"GET {self._api}/query"
        while True:
            records, next_url = _query_page(body, endpoint)
            for record in records:
                cursor = later(cursor, _modified(record, sobject))
            if records:
                yield FetchedPage(records, None if cursor is None else format_moment(cursor))
            if next_url is None:
                return
            endpoint = f"GET {next_url.split('?')[0]}"
            body = http.json("GET", next_url, headers=options)

    def external_id(self, entity_type: str, record: Mapping[str, Any]) -> str:
        value = record.get("Id")
        if isinstance(value, str) and value.strip():
            return value
        raise PermanentError(
            f"salesforce: {entity_type} record has no Id (attributes: "
            f"{record.get('attributes')!r})",
            resource=entity_type,
        )

    def describe(self, entity_type: str) -> list[ExternalField]:
        sobject = _sobject(entity_type)
        path = f"{self._api}/sobjects/{sobject}/describe"
        body = self.session.client().json("GET", path)
        fields = body.get("fields") if isinstance(body, Mapping) else None
        if not isinstance(fields, list):
            raise PermanentError(
                f"salesforce: GET {path} answered without a fields list", resource=path
            )
        described: list[ExternalField] = []
        for item in fields:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise PermanentError(
                    f"salesforce: GET {path} lists a field without a name", resource=path
                )
            described.append(
                ExternalField(
                    name=item["name"],
                    label=str(item.get("label") or item["name"]),
                    type=str(item.get("type") or "unknown"),
                    nullable=bool(item.get("nillable", True)),
                    custom=bool(item.get("custom", False)),
                )
            )
        return described

    # -- queries ---------------------------------------------------------------------------

    @staticmethod
    def soql(sobject: str, fields: list[str], start: datetime | None) -> str:
        where = "" if start is None else f" WHERE LastModifiedDate > {_soql_datetime(start)}"
        return f"SELECT {', '.join(fields)} FROM {sobject}{where} ORDER BY LastModifiedDate ASC, Id ASC"

    def _select(self, sobject: str) -> list[str]:
        key = sobject.casefold()
        sources = self.session.sources(sobject) or _default_sources(sobject)
        extras = _get_folded(self.settings.fields, key)
        if not sources and not extras:
            return [field.name for field in self.describe(sobject)]
        subqueries = {
            relationship.casefold()
            for extra in extras
            for relationship in _SUBQUERY_FROM.findall(extra)
            if extra.lstrip().startswith("(")
        }
        selected = ["Id", "LastModifiedDate"]
        for source in sources:
            item = _select_item(sobject, source, subqueries)
            if item is not None:
                selected.append(item)
        selected.extend(extras)
        unique: dict[str, str] = {}
        for item in selected:
            unique.setdefault(item.casefold(), item)
        return list(unique.values())


def _get_folded(values: Mapping[str, list[str]], key: str) -> list[str]:
    for name, value in values.items():
        if name.strip().casefold() == key:
            return value
    return []


def _sobject(entity_type: str) -> str:
    name = entity_type.strip()
    if not _NAME.match(name):
        raise PermanentError(
            f"salesforce: {entity_type!r} is not an object API name", resource=entity_type
        )
    known = salesforce_entity(name)
    return known.entity_type if known else name


def _default_sources(sobject: str) -> list[str]:
    for mapping in salesforce_default_entity_mappings():
        if mapping.entity_type.casefold() == sobject.casefold():
            return [item.source for item in mapping.field_mappings if item.source]
    return []


def _select_item(sobject: str, source: str, configured_subqueries: set[str]) -> str | None:
    """The SELECT item a mapping source needs; None when something else provides it (the
    record's `attributes`, a subquery)."""
    try:
        segments = parse_path(source)
    except PathSyntaxError as exc:
        raise PermanentError(f"salesforce: {sobject} mapping: {exc}", resource=sobject) from None
    names: list[str] = []
    for segment in segments:
        if isinstance(segment, int):
            break
        names.append(segment)
    if not names or names[0] == "attributes":
        return None
    if len(names) > 1 and names[1] == "records":
        relationship = names[0].casefold()
        known = SUBQUERIES.get(sobject.casefold(), {}).get(relationship)
        if relationship in configured_subqueries:
            return None
        if known is not None:
            return known
        raise PermanentError(
            f"salesforce: the {sobject} mapping reads {source!r}, a child relationship; add "
            f"its subquery, e.g. '(SELECT Id FROM {names[0]})', to config.fields.{sobject}",
            resource=sobject,
        )
    field = ".".join(names)
    if not _FIELD.match(field):
        raise PermanentError(
            f"salesforce: the {sobject} mapping reads {source!r}, which is not a field name",
            resource=sobject,
        )
    return field


def _soql_datetime(moment: datetime) -> str:
    """SOQL's dateTime literal (unquoted, UTC)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _query_page(body: Any, endpoint: str) -> tuple[list[dict[str, Any]], str | None]:
    if not isinstance(body, Mapping) or not isinstance(body.get("records"), list):
        raise PermanentError(
            f"salesforce: {endpoint} answered without a records list", resource=endpoint
        )
    records = body["records"]
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise PermanentError(
                f"salesforce: {endpoint} record {index} is not an object", resource=endpoint
            )
    if body.get("done", True) is True:
        return records, None
    next_url = body.get("nextRecordsUrl")
    if not isinstance(next_url, str) or not next_url.strip():
        raise PermanentError(
            f"salesforce: {endpoint} says more records follow (done: false) but has no "
            "nextRecordsUrl",
            resource=endpoint,
        )
    return records, next_url


def _modified(record: Mapping[str, Any], sobject: str) -> datetime | None:
    value = record.get("LastModifiedDate")
    if value is None:
        return None
    return field_moment(
        value,
        provider=PROVIDER,
        subject=f"{sobject} {record.get('Id')!r}",
        field="LastModifiedDate",
        resource=sobject,
    )


def build_salesforce(
    config: Mapping[str, Any],
    *,
    secrets: SecretStore | None,
    integration: TenantIntegration | None,
    timing: Timing = SYSTEM_TIMING,
) -> SalesforceAdapter:
    settings = parse_settings(SalesforceSettings, PROVIDER, config)
    session = open_session(
        DEFAULTS, settings, integration=integration, secrets=secrets, timing=timing
    )
    return SalesforceAdapter(settings, session)
