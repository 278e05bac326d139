"""The Salesforce adapter against a local server serving the REST API's documented payloads.

Shapes from the Salesforce REST API Developer Guide: "Query" / "Query More Results"
(`{"totalSize", "done", "nextRecordsUrl": "/services/data/vXX.X/query/01gRO0000016PIAYA2-2000",
"records": [{"attributes": {"type", "url"}, ...}]}`), "sObject Describe" (`fields[]` with
`name, label, type, nillable, custom`), "Status Codes and Error Responses" (`[{"message",
"errorCode"}]`, `INVALID_SESSION_ID` on 401, `REQUEST_LIMIT_EXCEEDED` on 403), the
`Sforce-Limit-Info: api-usage=n/max` header, and the OAuth refresh-token flow's token
response (`access_token, instance_url, id, token_type, issued_at, signature`)."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer

from core.errors import AuthError, PermanentError, TransientError
from core.providers.base import DailyLimitReached, ExternalField, FetchedPage
from core.providers.registry import build_provider
from core.providers.salesforce import SalesforceAdapter
from tests.unit.provider_support import FakeClock, MemorySecrets, crm_integration, secret_name

API = "/services/data/v62.0"
QUERY = f"{API}/query"
TOKEN_PATH = "/services/oauth2/token"


def _opportunity(number: int, modified: str) -> dict[str, Any]:
    record_id = f"006RO00000{number:08d}"
    return {
        "attributes": {"type": "Opportunity", "url": f"{API}/sobjects/Opportunity/{record_id}"},
        "Id": record_id,
        "Name": f"Deal {number}",
        "StageName": "Prospecting",
        "Amount": 1000.0 * number,
        "LastModifiedDate": modified,
        "OpportunityContactRoles": None,
    }


def _page(records: list[dict[str, Any]], total: int, next_url: str | None) -> dict[str, Any]:
    page: dict[str, Any] = {"totalSize": total, "done": next_url is None, "records": records}
    if next_url is not None:
        page["nextRecordsUrl"] = next_url
    return page


class Org:
    """One test's Salesforce org: an integration, its secrets and a fake clock."""

    def __init__(
        self,
        server: HTTPServer,
        *,
        settings: dict[str, Any] | None = None,
        mappings: list[dict[str, Any]] | None = None,
    ) -> None:
        self.server = server
        self.clock = FakeClock()
        self.integration = crm_integration(
            "salesforce",
            instance_url=server.url_for("/").rstrip("/"),
            settings={
                "clientId": "connected-app",
                "tokenUrl": server.url_for(TOKEN_PATH),
                **(settings or {}),
            },
            mappings=mappings,
        )
        self.refresh_name = secret_name(self.integration, "refreshToken")
        self.refresh_token = f"refresh-{secrets.token_hex(8)}"
        self.secrets = MemorySecrets(
            {
                self.refresh_name: self.refresh_token,
                "platform--salesforce--clientSecret": f"client-{secrets.token_hex(8)}",
            }
        )
        self.access = f"access-{secrets.token_hex(8)}"

    def token_response(self, access: str, **extra: Any) -> None:
        self.server.expect_oneshot_request(TOKEN_PATH, method="POST").respond_with_json(
            {
                "access_token": access,
                "instance_url": self.server.url_for("/").rstrip("/"),
                "id": "https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001SwiUAAS",
                "token_type": "Bearer",
                "issued_at": "1714560000000",
                "signature": "0CmxinZir53Yex7nE0TD+zMpvIWYGb/bdJh6XfOH6EQ=",
                **extra,
            }
        )

    def adapter(self) -> SalesforceAdapter:
        adapter = build_provider(
            "salesforce",
            self.integration.connection.settings,
            secrets=self.secrets,
            integration=self.integration,
            timing=self.clock.timing(),
        )
        assert isinstance(adapter, SalesforceAdapter)
        return adapter

    def soql(self) -> list[str]:
        return [
            parse_qs(request.query_string.decode())["q"][0]
            for request, _ in self.server.log
            if request.path == QUERY
        ]


def _collect(pages: Any) -> list[FetchedPage]:
    return list(pages)


def test_a_full_sync_follows_next_records_url_across_three_pages(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    org.token_response(org.access)
    first = [
        _opportunity(1, "2024-05-01T09:00:00.000+0000"),
        _opportunity(2, "2024-05-01T09:30:00.000+0000"),
    ]
    second = [
        _opportunity(3, "2024-05-01T10:00:00.000+0000"),
        _opportunity(4, "2024-05-01T10:00:00.000+0000"),
    ]
    third = [_opportunity(5, "2024-05-02T08:15:30.250+0000")]
    httpserver.expect_request(QUERY).respond_with_json(
        _page(first, 5, f"{QUERY}/01gRO0000016PIAYA2-2")
    )
    httpserver.expect_request(f"{QUERY}/01gRO0000016PIAYA2-2").respond_with_json(
        _page(second, 5, f"{QUERY}/01gRO0000016PIAYA2-4")
    )
    httpserver.expect_request(f"{QUERY}/01gRO0000016PIAYA2-4").respond_with_json(
        _page(third, 5, None)
    )

    pages = _collect(org.adapter().fetch("Opportunity"))

    assert [
        [org.adapter().external_id("Opportunity", r) for r in page.records] for page in pages
    ] == [
        ["006RO0000000000001", "006RO0000000000002"],
        ["006RO0000000000003", "006RO0000000000004"],
        ["006RO0000000000005"],
    ]
    assert [page.cursor for page in pages] == [
        "2024-05-01T09:30:00.000Z",
        "2024-05-01T10:00:00.000Z",
        "2024-05-02T08:15:30.250Z",
    ]
    assert pages[0].records[0]["attributes"]["type"] == "Opportunity"
    (soql,) = org.soql()
    assert soql.startswith(
        "SELECT Id, LastModifiedDate, Name, AccountId, Account.Name, Account.Industry, "
    )
    assert "(SELECT ContactId, Role, IsPrimary, Contact.Email FROM OpportunityContactRoles)" in soql
    assert soql.endswith(" FROM Opportunity ORDER BY LastModifiedDate ASC, Id ASC")
    queries = [request for request, _ in httpserver.log if request.path.startswith(QUERY)]
    assert len(queries) == 3
    for request in queries:
        assert request.headers["Authorization"] == f"Bearer {org.access}"
        assert request.headers["Sforce-Query-Options"] == "batchSize=2000"


def test_an_incremental_sync_filters_from_the_cursor_less_the_overlap(
    httpserver: HTTPServer,
) -> None:
    org = Org(httpserver, settings={"overlapSeconds": 120, "pageSize": 500})
    org.token_response(org.access)
    records = [
        _opportunity(1, "2024-05-01T09:59:00.000+0000"),
        _opportunity(2, "2024-05-01T10:45:10.000+0000"),
    ]
    httpserver.expect_request(QUERY).respond_with_json(_page(records, 2, None))

    pages = _collect(org.adapter().fetch("Opportunity", since="2024-05-01T10:00:00.500Z"))

    (soql,) = org.soql()
    assert " FROM Opportunity WHERE LastModifiedDate > 2024-05-01T09:58:00Z ORDER BY " in soql
    assert [page.cursor for page in pages] == ["2024-05-01T10:45:10.000Z"]
    assert httpserver.log[-1][0].headers["Sforce-Query-Options"] == "batchSize=500"


def test_an_overlap_only_page_keeps_the_cursor_it_started_from(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    org.token_response(org.access)
    httpserver.expect_request(QUERY).respond_with_json(
        _page([_opportunity(1, "2024-05-01T09:58:00.000+0000")], 1, None)
    )
    pages = _collect(org.adapter().fetch("Opportunity", since="2024-05-01T10:00:00.000Z"))
    assert [page.cursor for page in pages] == ["2024-05-01T10:00:00.000Z"]


def test_the_integrations_mapping_decides_the_fields_read(httpserver: HTTPServer) -> None:
    mapping = {
        "entityType": "Account",
        "shardTypeName": "Account",
        "fieldMappings": [
            {"source": "Name", "target": "name", "required": True},
            {"source": "Owner.Email", "target": "ownerId"},
            {"source": "Health_Score__c", "target": "description"},
            {"source": "attributes.type", "target": "type"},
        ],
    }
    org = Org(httpserver, mappings=[mapping], settings={"fields": {"account": ["Rating"]}})
    org.token_response(org.access)
    httpserver.expect_request(QUERY).respond_with_json(_page([], 0, None))
    assert _collect(org.adapter().fetch("Account")) == []
    (soql,) = org.soql()
    assert soql == (
        "SELECT Id, LastModifiedDate, Name, Owner.Email, Health_Score__c, Rating FROM Account "
        "ORDER BY LastModifiedDate ASC, Id ASC"
    )


def test_a_child_relationship_without_its_subquery_is_a_config_error(
    httpserver: HTTPServer,
) -> None:
    mapping = {
        "entityType": "Account",
        "shardTypeName": "Account",
        "fieldMappings": [
            {"source": "Name", "target": "name", "required": True},
            {"source": "Contacts.records", "target": "description"},
        ],
    }
    org = Org(httpserver, mappings=[mapping])
    with pytest.raises(
        PermanentError, match=r"add its subquery, e.g. '\(SELECT Id FROM Contacts\)'"
    ):
        _collect(org.adapter().fetch("Account"))
    assert httpserver.log == []


def test_a_401_refreshes_the_token_once_and_stores_the_rotated_refresh_token(
    httpserver: HTTPServer,
) -> None:
    org = Org(httpserver)
    stale, fresh, rotated = (
        org.access,
        f"access-{secrets.token_hex(8)}",
        f"refresh-{secrets.token_hex(8)}",
    )
    org.token_response(stale)
    org.token_response(fresh, refresh_token=rotated)
    httpserver.expect_request(
        QUERY, headers={"Authorization": f"Bearer {stale}"}
    ).respond_with_json(
        [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], status=401
    )
    httpserver.expect_request(
        QUERY, headers={"Authorization": f"Bearer {fresh}"}
    ).respond_with_json(_page([_opportunity(1, "2024-05-01T09:00:00.000+0000")], 1, None))

    pages = _collect(org.adapter().fetch("Opportunity"))

    assert len(pages) == 1
    assert org.secrets.writes == [(org.refresh_name, rotated)]
    refreshes = [dict(r.form) for r, _ in httpserver.log if r.path == TOKEN_PATH]
    assert [form["refresh_token"] for form in refreshes] == [org.refresh_token, org.refresh_token]


def test_a_refused_refresh_token_is_an_auth_error(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    httpserver.expect_request(TOKEN_PATH).respond_with_json(
        {"error": "invalid_grant", "error_description": "expired access/refresh token"}, status=400
    )
    with pytest.raises(AuthError, match="reconnect the integration") as caught:
        _collect(org.adapter().fetch("Opportunity"))
    assert org.refresh_token not in str(caught.value)
    assert all(request.path == TOKEN_PATH for request, _ in httpserver.log)


def test_429_with_retry_after_waits_then_succeeds(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    org.token_response(org.access)
    httpserver.expect_oneshot_request(QUERY).respond_with_json(
        [{"message": "Too many requests", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        status=429,
        headers={"Retry-After": "4"},
    )
    httpserver.expect_oneshot_request(QUERY).respond_with_json(
        _page([_opportunity(1, "2024-05-01T09:00:00.000+0000")], 1, None)
    )
    pages = _collect(org.adapter().fetch("Opportunity"))
    assert len(pages) == 1
    assert 4.0 in org.clock.sleeps
    assert sum(org.clock.sleeps) == pytest.approx(4.0, abs=0.5)


def test_5xx_is_retried_then_a_transient_error(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    org.token_response(org.access)
    httpserver.expect_request(QUERY).respond_with_json(
        [{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}], status=503
    )
    with pytest.raises(TransientError) as caught:
        _collect(org.adapter().fetch("Opportunity"))
    assert f"salesforce: GET {QUERY} answered 503 (SERVER_UNAVAILABLE" in str(caught.value)
    assert "gave up after 4 attempts" in str(caught.value)
    assert len([r for r, _ in httpserver.log if r.path == QUERY]) == 4


def test_malformed_json_is_a_permanent_error_naming_provider_and_endpoint(
    httpserver: HTTPServer,
) -> None:
    org = Org(httpserver)
    org.token_response(org.access)
    httpserver.expect_request(QUERY).respond_with_data(
        '{"totalSize": 2, "done": true, "records": [{"Id": ', content_type="application/json"
    )
    with pytest.raises(PermanentError, match=f"^salesforce: GET {QUERY} returned malformed JSON"):
        _collect(org.adapter().fetch("Opportunity"))


def test_the_orgs_daily_allowance_ends_the_fetch_with_daily_limit_reached(
    httpserver: HTTPServer,
) -> None:
    org = Org(httpserver)
    org.token_response(org.access)
    httpserver.expect_request(QUERY).respond_with_json(
        [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        status=403,
    )
    with pytest.raises(DailyLimitReached, match="daily API allowance is used up"):
        _collect(org.adapter().fetch("Opportunity"))
    assert len([r for r, _ in httpserver.log if r.path == QUERY]) == 1


def test_usage_headers_stop_the_sync_after_the_pages_already_read(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    org.token_response(org.access)
    httpserver.expect_request(QUERY).respond_with_json(
        _page(
            [_opportunity(1, "2024-05-01T09:00:00.000+0000")], 2, f"{QUERY}/01gRO0000016PIAYA2-1"
        ),
        headers={"Sforce-Limit-Info": "api-usage=15000/15000"},
    )
    pages: list[FetchedPage] = []
    with pytest.raises(DailyLimitReached):
        pages.extend(org.adapter().fetch("Opportunity", since="2024-05-01T00:00:00Z"))
    assert [page.cursor for page in pages] == ["2024-05-01T09:00:00.000Z"]
    assert [r.path for r, _ in httpserver.log if r.path.startswith(QUERY)] == [QUERY]


def test_describe_lists_the_objects_fields(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    org.token_response(org.access)
    httpserver.expect_request(f"{API}/sobjects/Opportunity/describe").respond_with_json(
        {
            "name": "Opportunity",
            "label": "Opportunity",
            "custom": False,
            "keyPrefix": "006",
            "fields": [
                {
                    "name": "Id",
                    "label": "Opportunity ID",
                    "type": "id",
                    "nillable": False,
                    "custom": False,
                },
                {
                    "name": "AccountId",
                    "label": "Account ID",
                    "type": "reference",
                    "nillable": True,
                    "custom": False,
                    "referenceTo": ["Account"],
                    "relationshipName": "Account",
                },
                {
                    "name": "Health_Score__c",
                    "label": "Health Score",
                    "type": "double",
                    "nillable": True,
                    "custom": True,
                },
            ],
        }
    )
    assert org.adapter().describe("opportunity") == [
        ExternalField("Id", "Opportunity ID", "id", nullable=False, custom=False),
        ExternalField("AccountId", "Account ID", "reference", nullable=True, custom=False),
        ExternalField("Health_Score__c", "Health Score", "double", nullable=True, custom=True),
    ]


def test_an_object_no_mapping_covers_reads_every_described_field(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    org.token_response(org.access)
    httpserver.expect_request(f"{API}/sobjects/Invoice__c/describe").respond_with_json(
        {
            "fields": [
                {"name": "Id", "label": "ID", "type": "id"},
                {"name": "Total__c", "label": "Total", "type": "currency"},
                {"name": "LastModifiedDate", "label": "Last Modified", "type": "datetime"},
            ]
        }
    )
    httpserver.expect_request(QUERY).respond_with_json(_page([], 0, None))
    assert _collect(org.adapter().fetch("Invoice__c")) == []
    assert org.soql() == [
        "SELECT Id, Total__c, LastModifiedDate FROM Invoice__c ORDER BY LastModifiedDate ASC, Id ASC"
    ]


def test_records_without_an_id_and_bad_names_are_refused(httpserver: HTTPServer) -> None:
    adapter = Org(httpserver).adapter()
    with pytest.raises(PermanentError, match="Opportunity record has no Id"):
        adapter.external_id("Opportunity", {"attributes": {"type": "Opportunity"}, "Name": "x"})
    with pytest.raises(PermanentError, match="not an object API name"):
        _collect(adapter.fetch("Account; DELETE"))
    with pytest.raises(PermanentError, match="cursor 'yesterday' is not an ISO 8601 date-time"):
        _collect(adapter.fetch("Account", since="yesterday"))
