"""The Dynamics 365 adapter against a local server serving the Dataverse Web API's
documented payloads.

Shapes from Microsoft Learn, Dataverse Web API: "Page results" (`Prefer:
odata.maxpagesize=N`, `{"@odata.context", "value": [{"@odata.etag": "W/\\"72201545\\"",
...}], "@odata.nextLink"}`), "Formatted values" (`...@OData.Community.Display.V1.
FormattedValue`), "Query table definitions" (`EntityDefinitions(LogicalName='account')/
Attributes` with `LogicalName, AttributeType, DisplayName.UserLocalizedLabel.Label,
RequiredLevel.Value, IsCustomAttribute, AttributeOf`), "Service protection API limits"
(429 with `Retry-After`, `{"error": {"code": "0x80072322", "message": "Number of requests
exceeded the limit of 6000 over time window of 300 seconds."}}`) and the Microsoft
identity platform client-credentials token response (`token_type, expires_in,
ext_expires_in, access_token`)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from core.errors import PermanentError, TransientError
from core.providers.base import ExternalField
from core.providers.dynamics import DynamicsAdapter
from core.providers.registry import build_provider
from tests.unit.provider_support import FakeClock, MemorySecrets, crm_integration, secret_name

API = "/api/data/v9.2"
ACCOUNTS = f"{API}/accounts"
TOKEN_PATH = "/tenant-id/oauth2/v2.0/token"
FORMATTED = "@OData.Community.Display.V1.FormattedValue"


def _account(number: int, modified: str) -> dict[str, Any]:
    return {
        "@odata.etag": f'W/"7220{number:04d}"',
        "accountid": f"49b0be2e-d01c-ed11-b83e-000d3a57{number:04d}",
        "name": f"Contoso {number}",
        "websiteurl": f"https://www.contoso{number}.com",
        "industrycode": 3,
        f"industrycode{FORMATTED}": "Consulting",
        "_parentaccountid_value": None,
        "_ownerid_value": "f8f9b6a4-0000-0000-0000-000000000001",
        f"_ownerid_value{FORMATTED}": "Ada Admin",
        "modifiedon": modified,
    }


class Org:
    def __init__(self, server: HTTPServer, *, settings: dict[str, Any] | None = None) -> None:
        self.server = server
        self.clock = FakeClock()
        self.org_url = server.url_for("/").rstrip("/")
        self.integration = crm_integration(
            "dynamics",
            refs=("clientSecret",),
            instance_url=self.org_url,
            settings={
                "clientId": "app-id",
                "tokenUrl": server.url_for(TOKEN_PATH),
                **(settings or {}),
            },
        )
        self.secrets = MemorySecrets(
            {secret_name(self.integration, "clientSecret"): f"client-{secrets.token_hex(8)}"}
        )
        self.access = f"access-{secrets.token_hex(8)}"
        server.expect_oneshot_request(TOKEN_PATH, method="POST").respond_with_json(
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": self.access,
            }
        )

    def adapter(self) -> DynamicsAdapter:
        adapter = build_provider(
            "dynamics",
            self.integration.connection.settings,
            secrets=self.secrets,
            integration=self.integration,
            timing=self.clock.timing(),
        )
        assert isinstance(adapter, DynamicsAdapter)
        return adapter

    def next_link(self, page: int) -> str:
        cookie = f"%3Ccookie%20pagenumber=%22{page}%22%20pagingcookie=%22x%22%20/%3E"
        return f"{self.org_url}{ACCOUNTS}?$select=name&$skiptoken={cookie}"

    def page(self, records: list[dict[str, Any]], next_page: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "@odata.context": f"{self.org_url}{API}/$metadata#accounts(name,modifiedon)",
            "value": records,
        }
        if next_page is not None:
            body["@odata.nextLink"] = self.next_link(next_page)
        return body


def test_a_full_sync_follows_odata_next_link_across_three_pages(httpserver: HTTPServer) -> None:
    org = Org(httpserver, settings={"pageSize": 2})
    pages_out = [
        ([_account(1, "2024-05-01T09:00:00Z"), _account(2, "2024-05-01T09:10:00Z")], 2),
        ([_account(3, "2024-05-01T09:20:00Z"), _account(4, "2024-05-01T09:20:00Z")], 3),
        ([_account(5, "2024-05-02T07:00:00Z")], None),
    ]
    for records, next_page in pages_out:
        httpserver.expect_oneshot_request(ACCOUNTS, method="GET").respond_with_json(
            org.page(records, next_page)
        )

    adapter = org.adapter()
    pages = list(adapter.fetch("account"))

    assert [[adapter.external_id("account", r) for r in page.records] for page in pages] == [
        ["49b0be2e-d01c-ed11-b83e-000d3a570001", "49b0be2e-d01c-ed11-b83e-000d3a570002"],
        ["49b0be2e-d01c-ed11-b83e-000d3a570003", "49b0be2e-d01c-ed11-b83e-000d3a570004"],
        ["49b0be2e-d01c-ed11-b83e-000d3a570005"],
    ]
    assert [page.cursor for page in pages] == [
        "2024-05-01T09:10:00.000Z",
        "2024-05-01T09:20:00.000Z",
        "2024-05-02T07:00:00.000Z",
    ]
    token_request, _ = httpserver.log[0]
    assert token_request.form["grant_type"] == "client_credentials"
    assert token_request.form["scope"] == f"{org.org_url}/.default"
    reads = [r for r, _ in httpserver.log if r.path == ACCOUNTS]
    first = reads[0].args
    assert first["$orderby"] == "modifiedon asc,accountid asc"
    assert first["$select"].split(",")[:3] == ["accountid", "modifiedon", "name"]
    assert {"websiteurl", "industrycode", "_ownerid_value", "_parentaccountid_value"} <= set(
        first["$select"].split(",")
    )
    assert "$filter" not in first
    assert "$skiptoken" in reads[1].args
    assert reads[1].args["$select"] == "name"
    for request in reads:
        assert request.headers["Authorization"] == f"Bearer {org.access}"
        assert request.headers["Prefer"] == 'odata.maxpagesize=2,odata.include-annotations="*"'
        assert request.headers["OData-Version"] == "4.0"


def test_an_incremental_sync_filters_on_modifiedon(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    httpserver.expect_request(ACCOUNTS).respond_with_json(
        org.page([_account(1, "2024-05-01T10:30:00Z")], None)
    )
    pages = list(org.adapter().fetch("account", since="2024-05-01T10:00:00.000Z"))
    assert [page.cursor for page in pages] == ["2024-05-01T10:30:00.000Z"]
    (read,) = [r for r, _ in httpserver.log if r.path == ACCOUNTS]
    assert read.args["$filter"] == "modifiedon gt 2024-05-01T10:00:00Z"


def test_service_protection_429_waits_for_retry_after_then_succeeds(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    httpserver.expect_oneshot_request(ACCOUNTS).respond_with_json(
        {
            "error": {
                "code": "0x80072322",
                "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            }
        },
        status=429,
        headers={"Retry-After": "5"},
    )
    httpserver.expect_oneshot_request(ACCOUNTS).respond_with_json(
        org.page([_account(1, "2024-05-01T09:00:00Z")], None)
    )
    pages = list(org.adapter().fetch("account"))
    assert len(pages) == 1
    assert 5.0 in org.clock.sleeps


def test_5xx_is_retried_then_a_transient_error(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    httpserver.expect_request(ACCOUNTS).respond_with_json(
        {"error": {"code": "0x80040216", "message": "An unexpected error occurred."}}, status=500
    )
    with pytest.raises(
        TransientError, match=f"dynamics: GET {ACCOUNTS} answered 500 .*gave up after 4"
    ):
        list(org.adapter().fetch("account"))


def test_malformed_json_names_provider_and_endpoint(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    httpserver.expect_request(ACCOUNTS).respond_with_data(
        '{"value": [{"accountid": ', content_type="application/json"
    )
    with pytest.raises(PermanentError, match=f"^dynamics: GET {ACCOUNTS} returned malformed JSON"):
        list(org.adapter().fetch("account"))


def test_describe_offers_lookups_as_their_value_keys(httpserver: HTTPServer) -> None:
    org = Org(httpserver)

    def attribute(
        name: str, kind: str, label: str, level: str = "None", **extra: Any
    ) -> dict[str, Any]:
        return {
            "@odata.type": f"#Microsoft.Dynamics.CRM.{kind}AttributeMetadata",
            "LogicalName": name,
            "AttributeType": kind,
            "IsCustomAttribute": extra.pop("custom", False),
            "AttributeOf": extra.pop("of", None),
            "DisplayName": {
                "LocalizedLabels": [{"Label": label, "LanguageCode": 1033}],
                "UserLocalizedLabel": {"Label": label, "LanguageCode": 1033},
            },
            "RequiredLevel": {
                "Value": level,
                "CanBeChanged": True,
                "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
            },
        }

    httpserver.expect_request(
        f"{API}/EntityDefinitions(LogicalName='account')/Attributes"
    ).respond_with_json(
        {
            "@odata.context": f"{org.org_url}{API}/$metadata#EntityDefinitions('account')/Attributes",
            "value": [
                attribute("name", "String", "Account Name", "ApplicationRequired"),
                attribute("parentaccountid", "Lookup", "Parent Account"),
                attribute("parentaccountidname", "String", "", of="parentaccountid"),
                attribute("new_tier", "Picklist", "Tier", custom=True),
            ],
        }
    )
    assert org.adapter().describe("Account") == [
        ExternalField("name", "Account Name", "String", nullable=False, custom=False),
        ExternalField("_parentaccountid_value", "Parent Account", "Lookup"),
        ExternalField("new_tier", "Tier", "Picklist", custom=True),
    ]


def test_a_custom_table_is_resolved_from_its_definition(httpserver: HTTPServer) -> None:
    org = Org(httpserver)
    httpserver.expect_request(
        f"{API}/EntityDefinitions(LogicalName='new_project')"
    ).respond_with_json(
        {
            "EntitySetName": "new_projects",
            "PrimaryIdAttribute": "new_projectid",
            "MetadataId": "70816501-edb9-4740-a16c-6a5efbc05d84",
        }
    )
    httpserver.expect_request(f"{API}/new_projects").respond_with_json(
        {
            "value": [
                {"new_projectid": "p1", "new_name": "Rollout", "modifiedon": "2024-05-01T09:00:00Z"}
            ]
        }
    )
    adapter = org.adapter()
    (page,) = list(adapter.fetch("new_project"))
    assert adapter.external_id("new_project", page.records[0]) == "p1"
    read = next(r for r, _ in httpserver.log if r.path == f"{API}/new_projects")
    assert "$select" not in read.args
    assert read.args["$orderby"] == "modifiedon asc,new_projectid asc"
    with pytest.raises(PermanentError, match="new_project record has no new_projectid"):
        adapter.external_id("new_project", {"new_name": "x"})
    with pytest.raises(PermanentError, match="not a table logical name"):
        list(adapter.fetch("account')/x"))
