"""The shared provider HTTP client against a local server: retries, Retry-After, error
classification and credential renewal. Sleeps go to a fake clock."""

from __future__ import annotations

import secrets
import socket
from datetime import UTC, datetime

import pytest
from pytest_httpserver import HTTPServer

from core.errors import AuthError, NotFoundError, PermanentError, TransientError
from core.providers.base import DailyLimitReached
from core.providers.connection import field_moment
from core.providers.http import ProviderHttp, RetryPolicy
from core.providers.ratelimit import RateLimiter
from tests.unit.provider_support import FakeClock

TOKEN = f"access-{secrets.token_urlsafe(24)}"
"""Built at run time: no credential-looking literal in the repository."""


class CountingAuth:
    """Hands out `first`, then `renewed` once the provider refused it."""

    def __init__(self, first: str = TOKEN, renewed: str = "fresh-token") -> None:
        self.current = first
        self.renewed = renewed
        self.renewals: list[str] = []

    def authorization(self) -> str:
        return f"Bearer {self.current}"

    def renew(self, rejected: str) -> None:
        self.renewals.append(rejected)
        self.current = self.renewed


def _client(
    server: HTTPServer,
    clock: FakeClock,
    *,
    auth: CountingAuth | None = None,
    limiter: RateLimiter | None = None,
    attempts: int = 4,
) -> ProviderHttp:
    return ProviderHttp(
        "salesforce",
        server.url_for("/"),
        auth=auth,
        limiter=limiter,
        retry=RetryPolicy(max_attempts=attempts),
        timing=clock.timing(),
        timeout=5,
    )


def test_5xx_is_retried_with_backoff_then_succeeds(httpserver: HTTPServer) -> None:
    clock = FakeClock()
    for status in (503, 500):
        httpserver.expect_ordered_request("/data").respond_with_json(
            [{"message": "busy", "errorCode": "SERVER_UNAVAILABLE"}], status=status
        )
    httpserver.expect_ordered_request("/data").respond_with_json({"ok": True})
    assert _client(httpserver, clock).json("GET", "/data") == {"ok": True}
    # 1 s then 2 s steps, each the upper half randomised (jitter 0.5 -> 3/4 of the step).
    assert clock.sleeps == pytest.approx([0.75, 1.5])


def test_5xx_past_the_budget_is_a_transient_error(httpserver: HTTPServer) -> None:
    clock = FakeClock()
    httpserver.expect_request("/data").respond_with_json(
        {"error": {"code": "0x80040216", "message": "An unexpected error occurred."}}, status=502
    )
    with pytest.raises(TransientError) as caught:
        _client(httpserver, clock, attempts=3).json("GET", "/data")
    message = str(caught.value)
    assert "salesforce: GET /data answered 502" in message
    assert "An unexpected error occurred." in message
    assert "gave up after 3 attempts" in message
    assert len(httpserver.log) == 3
    assert clock.sleeps == pytest.approx([0.75, 1.5])


def test_429_with_retry_after_pauses_the_integration_then_succeeds(
    httpserver: HTTPServer,
) -> None:
    clock = FakeClock()
    limiter = RateLimiter("salesforce integration t1/i1", timing=clock.timing())
    httpserver.expect_ordered_request("/data").respond_with_json(
        {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "policyName": "TEN_SECONDLY_ROLLING",
        },
        status=429,
        headers={"Retry-After": "7"},
    )
    httpserver.expect_ordered_request("/data").respond_with_json({"ok": True})
    assert _client(httpserver, clock, limiter=limiter).json("GET", "/data") == {"ok": True}
    assert clock.sleeps == [7.0]


def test_429_retry_after_as_http_date_without_a_limiter(httpserver: HTTPServer) -> None:
    clock = FakeClock()
    httpserver.expect_ordered_request("/data").respond_with_data(
        "", status=429, headers={"Retry-After": "Wed, 01 May 2024 12:00:05 GMT"}
    )
    httpserver.expect_ordered_request("/data").respond_with_json({"ok": True})
    assert _client(httpserver, clock).json("GET", "/data") == {"ok": True}
    assert clock.sleeps == [5.0]


def test_a_retry_after_too_long_to_wait_is_handed_to_the_caller(httpserver: HTTPServer) -> None:
    clock = FakeClock()
    httpserver.expect_request("/data").respond_with_data(
        "", status=503, headers={"Retry-After": "3600"}
    )
    with pytest.raises(TransientError) as caught:
        _client(httpserver, clock).json("GET", "/data")
    assert caught.value.retry_after == 3600
    assert len(httpserver.log) == 1
    assert clock.sleeps == []


def test_malformed_json_is_permanent_and_names_provider_and_endpoint(
    httpserver: HTTPServer,
) -> None:
    clock = FakeClock()
    httpserver.expect_request("/services/data/v62.0/query").respond_with_data(
        '{"totalSize": 3, "records": [', content_type="application/json"
    )
    with pytest.raises(PermanentError) as caught:
        _client(httpserver, clock).json("GET", "/services/data/v62.0/query", params={"q": "x"})
    message = str(caught.value)
    assert message.startswith("salesforce: GET /services/data/v62.0/query returned malformed JSON")
    assert "line 1" in message
    assert len(httpserver.log) == 1


@pytest.mark.parametrize(
    ("status", "body", "error", "needle"),
    [
        (
            400,
            [
                {
                    "message": "No such column 'Foo__c' on entity 'Account'",
                    "errorCode": "INVALID_FIELD",
                }
            ],
            PermanentError,
            "answered 400 (INVALID_FIELD: No such column 'Foo__c'",
        ),
        (
            404,
            [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
            NotFoundError,
            "was not found (404) (NOT_FOUND",
        ),
        (
            403,
            [{"errorCode": "INSUFFICIENT_ACCESS", "message": "insufficient access rights"}],
            AuthError,
            "not allowed for this connection (403)",
        ),
    ],
)
def test_other_client_errors_are_classified_with_the_providers_reason(
    httpserver: HTTPServer, status: int, body: object, error: type[Exception], needle: str
) -> None:
    clock = FakeClock()
    httpserver.expect_request("/data").respond_with_json(body, status=status)
    with pytest.raises(error) as caught:
        _client(httpserver, clock).json("GET", "/data")
    assert needle in str(caught.value)
    assert not isinstance(caught.value, TransientError)
    assert len(httpserver.log) == 1


def test_401_renews_the_credential_once_and_retries(httpserver: HTTPServer) -> None:
    clock = FakeClock()
    auth = CountingAuth()
    httpserver.expect_request(
        "/data", headers={"Authorization": f"Bearer {TOKEN}"}
    ).respond_with_json(
        [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], status=401
    )
    httpserver.expect_request(
        "/data", headers={"Authorization": "Bearer fresh-token"}
    ).respond_with_json({"ok": True})
    assert _client(httpserver, clock, auth=auth).json("GET", "/data") == {"ok": True}
    assert auth.renewals == [f"Bearer {TOKEN}"]


def test_a_renewed_credential_refused_again_is_an_auth_error_without_the_token(
    httpserver: HTTPServer,
) -> None:
    clock = FakeClock()
    auth = CountingAuth()
    httpserver.expect_request("/data").respond_with_json(
        [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], status=401
    )
    with pytest.raises(AuthError) as caught:
        _client(httpserver, clock, auth=auth).json("GET", "/data")
    message = str(caught.value)
    assert "salesforce: GET /data refused the credentials (401)" in message
    assert "INVALID_SESSION_ID" in message
    assert TOKEN not in message
    assert "fresh-token" not in message
    assert len(auth.renewals) == 1
    assert len(httpserver.log) == 2


def test_the_daily_allowance_error_is_not_retried(httpserver: HTTPServer) -> None:
    clock = FakeClock()
    limiter = RateLimiter("salesforce integration t1/i1", timing=clock.timing())
    httpserver.expect_request("/data").respond_with_json(
        [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        status=403,
    )
    client = _client(httpserver, clock, limiter=limiter)
    with pytest.raises(DailyLimitReached):
        client.json("GET", "/data")
    with pytest.raises(DailyLimitReached):
        client.json("GET", "/data")
    assert len(httpserver.log) == 1


def test_network_errors_are_retried_then_transient() -> None:
    clock = FakeClock()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ProviderHttp(
        "dynamics",
        f"http://127.0.0.1:{port}/",
        retry=RetryPolicy(max_attempts=2),
        timing=clock.timing(),
        timeout=2,
    )
    with pytest.raises(TransientError) as caught:
        client.json("GET", "/api/data/v9.2/accounts")
    assert "dynamics: GET /api/data/v9.2/accounts failed: ConnectError" in str(caught.value)
    assert clock.sleeps == pytest.approx([0.75])


def test_next_links_to_another_origin_are_refused(httpserver: HTTPServer) -> None:
    client = _client(httpserver, FakeClock(), auth=CountingAuth())
    with pytest.raises(PermanentError, match=r"refusing to follow https://evil\.example"):
        client.json("GET", "https://evil.example/services/data/v62.0/query/01g-2000")
    assert httpserver.log == []


def test_a_base_url_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(PermanentError, match="not an absolute http"):
        ProviderHttp("hubspot", "api.hubapi.com")


def test_a_record_date_time_field_is_parsed_or_refused_naming_record_and_field() -> None:
    assert field_moment(
        "2024-05-01T10:00:00.000+0000",
        provider="salesforce",
        subject="Opportunity '006A'",
        field="LastModifiedDate",
        resource="Opportunity",
    ) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(PermanentError) as refused:
        field_moment(
            1714557600,
            provider="dynamics",
            subject="account 'a1'",
            field="modifiedon",
            resource="account",
        )
    assert str(refused.value) == (
        "dynamics: account 'a1' has modifiedon 1714557600, not a date-time text"
    )
    assert refused.value.resource == "account"
