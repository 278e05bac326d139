"""The HubSpot adapter against a local server serving the CRM API's documented payloads.

Shapes from HubSpot's developer docs: "CRM API | Objects" list (`{"results": [{"id",
"properties", "createdAt", "updatedAt", "archived", "associations": {"companies":
{"results": [{"id", "type": "deal_to_company"}]}}}], "paging": {"next": {"after",
"link"}}}`), "CRM API | Search" (`{"total", "results", "paging"}`, 10,000 results per
query), "Associations v4" batch read (`{"status": "COMPLETE", "results": [{"from": {"id"},
"to": [{"toObjectId", "associationTypes": [{"category", "typeId", "label"}]}]}]}`),
"CRM API | Properties" (`{"results": [{"name", "label", "type", "fieldType",
"hubspotDefined"}]}`) and "API usage guidelines" (429 `{"status": "error", "message": "You
have reached your ten_secondly_rolling limit.", "errorType": "RATE_LIMIT", "policyName":
"TEN_SECONDLY_ROLLING"}`, `policyName: "DAILY"` for the daily limit)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from core.errors import AuthError, PermanentError
from core.models.integration import RateLimits
from core.providers.base import DailyLimitReached, ExternalField, FetchedPage
from core.providers.hubspot import HubSpotAdapter
from core.providers.registry import build_provider
from tests.unit.provider_support import FakeClock, MemorySecrets, crm_integration, secret_name

DEALS = "/crm/v3/objects/deals"
SEARCH = f"{DEALS}/search"
SINGULAR = {"companies": "company", "contacts": "contact"}


def _deal(number: int, modified: str, **associations: list[str]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": str(number),
        "properties": {
            "dealname": f"Deal {number}",
            "amount": f"{number * 100}.00",
            "dealstage": "appointmentscheduled",
            "hs_lastmodifieddate": modified,
            "hs_object_id": str(number),
        },
        "createdAt": "2024-01-10T08:00:00.000Z",
        "updatedAt": modified,
        "archived": False,
    }
    if associations:
        record["associations"] = {
            kind: {"results": [{"id": value, "type": f"deal_to_{SINGULAR[kind]}"} for value in ids]}
            for kind, ids in associations.items()
        }
    return record


def _ms(text: str) -> int:
    return round(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


class Portal:
    def __init__(self, server: HTTPServer, *, settings: dict[str, Any] | None = None) -> None:
        self.server = server
        self.clock = FakeClock()
        self.integration = crm_integration(
            "hubspot",
            refs=("apiKey",),
            settings={"baseUrl": server.url_for("/"), **(settings or {})},
        )
        self.token_name = secret_name(self.integration, "apiKey")
        self.token = f"pat-na1-{secrets.token_hex(8)}"
        self.secrets = MemorySecrets({self.token_name: self.token})

    def adapter(self) -> HubSpotAdapter:
        adapter = build_provider(
            "hubspot",
            self.integration.connection.settings,
            secrets=self.secrets,
            integration=self.integration,
            timing=self.clock.timing(),
        )
        assert isinstance(adapter, HubSpotAdapter)
        return adapter

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.get_data()) for r, _ in self.server.log if r.path == path]


def test_a_full_sync_pages_with_after_and_carries_the_cursor_on_the_last_page(
    httpserver: HTTPServer,
) -> None:
    portal = Portal(httpserver)
    pages_out = [
        ([_deal(1, "2024-05-03T10:00:00.000Z", companies=["201", "201"])], "NTI1Cg%3D%3D"),
        ([_deal(2, "2024-05-01T09:00:00.000Z")], "MTA1Cg%3D%3D"),
        ([_deal(3, "2024-05-02T12:30:00.000Z", contacts=["301", "302"])], None),
    ]
    for records, after in pages_out:
        body: dict[str, Any] = {"results": records}
        if after:
            body["paging"] = {
                "next": {"after": after, "link": f"https://api.hubapi.com{DEALS}?after={after}"}
            }
        httpserver.expect_oneshot_request(DEALS, method="GET").respond_with_json(body)

    pages = list(portal.adapter().fetch("deals"))

    assert [[r["id"] for r in page.records] for page in pages] == [["1"], ["2"], ["3"]]
    assert [page.cursor for page in pages] == [None, None, "2024-05-03T10:00:00.000Z"]
    assert pages[0].records[0]["associations"]["companies"]["results"] == [
        {"id": "201", "type": "deal_to_company"}
    ]
    requests = [r for r, _ in httpserver.log]
    assert [r.args.get("after") for r in requests] == [None, "NTI1Cg%3D%3D", "MTA1Cg%3D%3D"]
    first = requests[0].args
    assert first["limit"] == "100"
    assert first["archived"] == "false"
    assert first["associations"] == "companies,contacts"
    properties = first["properties"].split(",")
    assert properties[0] == "hs_lastmodifieddate"
    assert {"dealname", "amount", "dealstage", "closedate", "hubspot_owner_id"} <= set(properties)
    assert all(r.headers["Authorization"] == f"Bearer {portal.token}" for r in requests)


def test_an_incremental_sync_searches_from_the_cursor_and_attaches_associations(
    httpserver: HTTPServer,
) -> None:
    portal = Portal(httpserver, settings={"searchPageSize": 2})
    first = [_deal(1, "2024-05-01T09:58:00.000Z"), _deal(2, "2024-05-01T10:20:00.000Z")]
    second = [_deal(3, "2024-05-01T11:00:00.000Z")]
    httpserver.expect_oneshot_request(SEARCH, method="POST").respond_with_json(
        {"total": 3, "results": first, "paging": {"next": {"after": "2", "link": "?after=2"}}}
    )
    httpserver.expect_oneshot_request(SEARCH, method="POST").respond_with_json(
        {"total": 3, "results": second}
    )

    def associations(request: Request) -> Response:
        to_type = request.path.split("/")[-3]
        inputs = [item["id"] for item in json.loads(request.get_data())["inputs"]]
        results = [
            {
                "from": {"id": deal_id},
                "to": [
                    {
                        "toObjectId": int(f"{9 if to_type == 'companies' else 8}0{deal_id}"),
                        "associationTypes": [
                            {"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"},
                            {"category": "HUBSPOT_DEFINED", "typeId": 341, "label": None},
                        ],
                    }
                ],
            }
            for deal_id in inputs
            if deal_id != "2"
        ]
        return Response(
            json.dumps({"status": "COMPLETE", "results": results}),
            200,
            content_type="application/json",
        )

    for to_type in ("companies", "contacts"):
        httpserver.expect_request(
            f"/crm/v4/associations/deals/{to_type}/batch/read", method="POST"
        ).respond_with_handler(associations)

    pages = list(portal.adapter().fetch("deals", since="2024-05-01T10:00:00.000Z"))

    assert [[r["id"] for r in page.records] for page in pages] == [["1", "2"], ["3"]]
    assert [page.cursor for page in pages] == [
        "2024-05-01T10:20:00.000Z",
        "2024-05-01T11:00:00.000Z",
    ]
    deal_one = pages[0].records[0]
    assert deal_one["associations"] == {
        "companies": {"results": [{"id": "901", "type": "deal_to_company"}]},
        "contacts": {"results": [{"id": "801", "type": "deal_to_contact"}]},
    }
    assert "associations" not in pages[0].records[1]
    searches = portal.bodies(SEARCH)
    start_ms = _ms("2024-05-01T10:00:00+00:00")
    assert searches[0] == {
        "filterGroups": [
            {
                "filters": [
                    {
                        "propertyName": "hs_lastmodifieddate",
                        "operator": "GTE",
                        "value": str(start_ms),
                    }
                ]
            }
        ],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        "properties": searches[0]["properties"],
        "limit": 2,
    }
    assert searches[1]["after"] == "2"
    assert portal.bodies("/crm/v4/associations/deals/companies/batch/read")[0] == {
        "inputs": [{"id": "1"}, {"id": "2"}]
    }


def test_the_search_result_cap_starts_a_new_search_from_the_newest_time_seen(
    httpserver: HTTPServer,
) -> None:
    portal = Portal(httpserver, settings={"searchPageSize": 2, "overlapSeconds": 0})
    early, late = "2024-05-01T10:00:01.000Z", "2024-05-01T10:00:02.000Z"

    def search(request: Request) -> Response:
        body = json.loads(request.get_data())
        value = body["filterGroups"][0]["filters"][0]["value"]
        if value == str(_ms("2024-05-01T10:00:00+00:00")):
            answer = {
                "total": 12000,
                "results": [_deal(1, early), _deal(2, late)],
                "paging": {"next": {"after": "9999"}},
            }
        elif value == str(_ms(late.replace("Z", "+00:00"))) and "after" not in body:
            answer = {
                "total": 3,
                "results": [_deal(2, late), _deal(3, late), _deal(4, "2024-05-01T10:05:00.000Z")],
            }
        else:
            return Response("unexpected search", 500)
        return Response(json.dumps(answer), 200, content_type="application/json")

    httpserver.expect_request(SEARCH, method="POST").respond_with_handler(search)
    httpserver.expect_request("/crm/v4/associations/deals/companies/batch/read").respond_with_json(
        {"results": []}
    )
    httpserver.expect_request("/crm/v4/associations/deals/contacts/batch/read").respond_with_json(
        {"results": []}
    )

    pages = list(portal.adapter().fetch("deals", since="2024-05-01T10:00:00.000Z"))

    assert [[r["id"] for r in page.records] for page in pages] == [["1", "2"], ["3", "4"]]
    assert pages[-1].cursor == "2024-05-01T10:05:00.000Z"
    assert len(portal.bodies(SEARCH)) == 2


def test_429_ten_secondly_rolling_with_retry_after_waits_then_succeeds(
    httpserver: HTTPServer,
) -> None:
    portal = Portal(httpserver)
    httpserver.expect_oneshot_request(DEALS).respond_with_json(
        {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24",
            "policyName": "TEN_SECONDLY_ROLLING",
        },
        status=429,
        headers={"Retry-After": "2"},
    )
    httpserver.expect_oneshot_request(DEALS).respond_with_json(
        {"results": [_deal(1, "2024-05-01T09:00:00.000Z")]}
    )
    pages = list(portal.adapter().fetch("deals"))
    assert [page.cursor for page in pages] == ["2024-05-01T09:00:00.000Z"]
    assert portal.clock.sleeps == [2.0]


def test_the_daily_limit_ends_the_fetch_with_daily_limit_reached(httpserver: HTTPServer) -> None:
    portal = Portal(httpserver)
    httpserver.expect_request(SEARCH).respond_with_json(
        {
            "status": "error",
            "message": "You have reached your daily limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24",
            "policyName": "DAILY",
            "requestId": "3d3e35b7-0dae-4b9f-a6e3-9c230cbcf8dd",
        },
        status=429,
    )
    adapter = portal.adapter()
    with pytest.raises(DailyLimitReached):
        list(adapter.fetch("deals", since="2024-05-01T00:00:00Z"))
    with pytest.raises(DailyLimitReached):
        list(adapter.fetch("companies", since="2024-05-01T00:00:00Z"))
    assert len(httpserver.log) == 1


def test_daily_remaining_header_stops_after_the_page_read(httpserver: HTTPServer) -> None:
    portal = Portal(httpserver)
    httpserver.expect_request(DEALS).respond_with_json(
        {"results": [_deal(1, "2024-05-01T09:00:00.000Z")], "paging": {"next": {"after": "1"}}},
        headers={"X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": "0"},
    )
    pages: list[FetchedPage] = []
    with pytest.raises(DailyLimitReached):
        pages.extend(portal.adapter().fetch("deals"))
    assert len(pages) == 1
    assert len(httpserver.log) == 1


def test_malformed_json_names_provider_and_endpoint(httpserver: HTTPServer) -> None:
    portal = Portal(httpserver)
    httpserver.expect_request(SEARCH).respond_with_data(
        '{"total": 1, "results": [', content_type="application/json"
    )
    with pytest.raises(PermanentError, match=f"^hubspot: POST {SEARCH} returned malformed JSON"):
        list(portal.adapter().fetch("deals", since="2024-05-01T00:00:00Z"))


def test_a_refused_private_app_token_is_reread_once_then_an_auth_error(
    httpserver: HTTPServer,
) -> None:
    portal = Portal(httpserver)
    httpserver.expect_request(DEALS).respond_with_json(
        {
            "status": "error",
            "message": "Authentication credentials not found.",
            "category": "INVALID_AUTHENTICATION",
        },
        status=401,
    )
    with pytest.raises(
        AuthError, match=f"the token in secret {portal.token_name} was refused"
    ) as caught:
        list(portal.adapter().fetch("deals"))
    assert portal.token not in str(caught.value)
    assert len(httpserver.log) == 1


def test_describe_lists_properties_as_source_paths(httpserver: HTTPServer) -> None:
    portal = Portal(httpserver)
    httpserver.expect_request("/crm/v3/properties/deals").respond_with_json(
        {
            "results": [
                {
                    "name": "dealname",
                    "label": "Deal Name",
                    "type": "string",
                    "fieldType": "text",
                    "groupName": "dealinformation",
                    "hubspotDefined": True,
                    "hidden": False,
                },
                {
                    "name": "closedate",
                    "label": "Close Date",
                    "type": "datetime",
                    "fieldType": "date",
                    "groupName": "dealinformation",
                    "hubspotDefined": True,
                },
                {
                    "name": "renewal_risk",
                    "label": "Renewal risk",
                    "type": "enumeration",
                    "fieldType": "select",
                    "groupName": "dealinformation",
                    "options": [{"label": "High", "value": "high"}],
                },
            ]
        }
    )
    assert portal.adapter().describe("Deals") == [
        ExternalField("id", "Record ID", "string", nullable=False),
        ExternalField("properties.dealname", "Deal Name", "string"),
        ExternalField("properties.closedate", "Close Date", "datetime"),
        ExternalField("properties.renewal_risk", "Renewal risk", "enumeration", custom=True),
    ]


def test_contacts_search_on_their_own_modified_property(httpserver: HTTPServer) -> None:
    portal = Portal(httpserver)
    contact = {
        "id": "51",
        "properties": {"email": "ada@example.com", "lastmodifieddate": "2024-05-01T12:00:00.000Z"},
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-05-01T12:00:00.000Z",
        "archived": False,
    }
    httpserver.expect_request("/crm/v3/objects/contacts/search").respond_with_json(
        {"total": 1, "results": [contact]}
    )
    httpserver.expect_request(
        "/crm/v4/associations/contacts/companies/batch/read"
    ).respond_with_json({"status": "COMPLETE", "results": []})
    pages = list(portal.adapter().fetch("contacts", since="2024-05-01T00:00:00Z"))
    assert [page.cursor for page in pages] == ["2024-05-01T12:00:00.000Z"]
    (body,) = portal.bodies("/crm/v3/objects/contacts/search")
    assert body["filterGroups"][0]["filters"][0]["propertyName"] == "lastmodifieddate"
    assert {"email", "associatedcompanyid", "lastmodifieddate"} <= set(body["properties"])


def test_the_configured_daily_request_limit_ends_the_sync_partial(httpserver: HTTPServer) -> None:
    portal = Portal(httpserver, settings={"dailyRequestLimit": 2})
    for number, after in ((1, "1"), (2, "2"), (3, None)):
        body: dict[str, Any] = {"results": [_deal(number, "2024-05-01T09:00:00.000Z")]}
        if after:
            body["paging"] = {"next": {"after": after}}
        httpserver.expect_oneshot_request(DEALS).respond_with_json(body)
    pages: list[FetchedPage] = []
    with pytest.raises(DailyLimitReached, match="dailyRequestLimit of 2") as caught:
        pages.extend(portal.adapter().fetch("deals"))
    assert len(pages) == 2
    assert caught.value.retry_after == pytest.approx(12 * 3600)
    assert len(httpserver.log) == 2


def test_the_integrations_rate_limits_space_the_calls(httpserver: HTTPServer) -> None:
    portal = Portal(httpserver)
    portal.integration = portal.integration.model_copy(
        update={"rate_limits": RateLimits(requests_per_second=1)}
    )
    for number, after in ((1, "1"), (2, "2"), (3, None)):
        body: dict[str, Any] = {"results": [_deal(number, "2024-05-01T09:00:00.000Z")]}
        if after:
            body["paging"] = {"next": {"after": after}}
        httpserver.expect_oneshot_request(DEALS).respond_with_json(body)
    assert len(list(portal.adapter().fetch("deals"))) == 3
    assert portal.clock.sleeps == pytest.approx([1.0, 1.0])
