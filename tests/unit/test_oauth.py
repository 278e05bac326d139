"""OAuth2 access tokens against a local token endpoint: caching, refresh-token rotation
written back to the secret store, refused grants, one refresh at a time.

Token responses follow RFC 6749 section 5.1 (`access_token`, `token_type`, `expires_in`,
`refresh_token`) as Microsoft identity platform and HubSpot document them; refused grants
follow section 5.2 (`{"error": "invalid_grant", "error_description": ...}`), and HubSpot's
`{"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token"}`."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from core.errors import AuthError, PermanentError
from core.providers.oauth import OAuth2Session, OAuthClient, SecretToken, TokenCache
from tests.unit.provider_support import FakeClock, MemorySecrets

REFRESH_NAME = "t1--crm--refreshToken"
PLATFORM_CLIENT_REF = "platform--hubspot--clientSecret"


def _token(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def _session(
    server: HTTPServer,
    store: MemorySecrets,
    clock: FakeClock,
    *,
    refresh_name: str | None = REFRESH_NAME,
    scope: str | None = None,
) -> OAuth2Session:
    client = OAuthClient(
        token_url=server.url_for("/oauth/v1/token"),
        client_id="our-client-id",
        client_secret_name=PLATFORM_CLIENT_REF,
        scope=scope,
    )
    return OAuth2Session(
        "hubspot",
        "hubspot:t1/crm",
        client,
        store,
        refresh_token_name=refresh_name,
        timing=clock.timing(),
        tokens=TokenCache(),
    )


def _store(refresh: str) -> MemorySecrets:
    return MemorySecrets({REFRESH_NAME: refresh, PLATFORM_CLIENT_REF: _token("client-secret")})


def _forms(server: HTTPServer) -> list[dict[str, Any]]:
    return [dict(request.form) for request, _ in server.log]


def test_the_access_token_is_cached_until_it_expires(httpserver: HTTPServer) -> None:
    refresh, first, second = _token("refresh"), _token("access"), _token("access")
    store, clock = _store(refresh), FakeClock()
    for access in (first, second):
        httpserver.expect_ordered_request("/oauth/v1/token", method="POST").respond_with_json(
            {"token_type": "bearer", "access_token": access, "expires_in": 1800}
        )
    session = _session(httpserver, store, clock)
    assert session.authorization() == f"Bearer {first}"
    clock.advance(1700)
    assert session.access_token() == first
    clock.advance(60)
    assert session.access_token() == second
    forms = _forms(httpserver)
    assert forms[0] == {
        "grant_type": "refresh_token",
        "refresh_token": refresh,
        "client_id": "our-client-id",
        "client_secret": store.values[PLATFORM_CLIENT_REF],
    }
    assert len(forms) == 2
    assert store.writes == []


def test_a_rotated_refresh_token_is_written_back_before_it_is_needed(
    httpserver: HTTPServer,
) -> None:
    refresh, rotated = _token("refresh"), _token("refresh")
    store, clock = _store(refresh), FakeClock()
    httpserver.expect_ordered_request("/oauth/v1/token").respond_with_json(
        {"access_token": _token("access"), "refresh_token": rotated, "expires_in": 3599}
    )
    httpserver.expect_ordered_request("/oauth/v1/token").respond_with_json(
        {"access_token": _token("access"), "refresh_token": rotated, "expires_in": 3599}
    )
    session = _session(httpserver, store, clock, scope="https://org.crm.dynamics.com/.default")
    session.access_token()
    assert store.writes == [(REFRESH_NAME, rotated)]
    session.renew(session.authorization())
    forms = _forms(httpserver)
    assert forms[0]["scope"] == "https://org.crm.dynamics.com/.default"
    assert forms[1]["refresh_token"] == rotated
    assert store.writes == [(REFRESH_NAME, rotated)]


def test_camel_case_token_responses_are_understood(httpserver: HTTPServer) -> None:
    access = _token("access")
    httpserver.expect_request("/oauth/v1/token").respond_with_json(
        {"accessToken": access, "expiresIn": 1800, "tokenType": "bearer", "hubId": 7}
    )
    assert _session(httpserver, _store(_token("refresh")), FakeClock()).access_token() == access


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "invalid_grant", "error_description": "expired access/refresh token"}),
        (400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token"}),
    ],
)
def test_a_refused_refresh_token_asks_to_reconnect(
    httpserver: HTTPServer, status: int, body: dict[str, str]
) -> None:
    refresh = _token("refresh")
    httpserver.expect_request("/oauth/v1/token").respond_with_json(body, status=status)
    with pytest.raises(AuthError) as caught:
        _session(httpserver, _store(refresh), FakeClock()).access_token()
    message = str(caught.value)
    assert "reconnect the integration" in message
    assert REFRESH_NAME in message
    assert refresh not in message
    assert len(httpserver.log) == 1


def test_a_refresh_token_rotated_by_another_instance_is_reread_and_used(
    httpserver: HTTPServer,
) -> None:
    stale, current, access = _token("refresh"), _token("refresh"), _token("access")
    store = _store(stale)

    def token_endpoint(request: Request) -> Response:
        if request.form["refresh_token"] == stale:
            store.values[REFRESH_NAME] = current
            return Response('{"error": "invalid_grant"}', 400, content_type="application/json")
        return Response(f'{{"access_token": "{access}", "expires_in": 3600}}', 200)

    httpserver.expect_request("/oauth/v1/token").respond_with_handler(token_endpoint)
    assert _session(httpserver, store, FakeClock()).access_token() == access
    assert [form["refresh_token"] for form in _forms(httpserver)] == [stale, current]


def test_a_refused_client_names_the_client_settings(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/oauth/v1/token").respond_with_json(
        {"error": "invalid_client", "error_description": "client identifier invalid"}, status=401
    )
    with pytest.raises(
        AuthError, match=r"config\.clientId and secret platform--hubspot--clientSecret"
    ):
        _session(httpserver, _store(_token("refresh")), FakeClock()).access_token()


def test_missing_secrets_are_auth_errors_naming_the_secret(httpserver: HTTPServer) -> None:
    store = MemorySecrets({PLATFORM_CLIENT_REF: _token("client-secret")})
    with pytest.raises(AuthError, match=f"refresh token secret {REFRESH_NAME} is missing"):
        _session(httpserver, store, FakeClock()).access_token()
    with pytest.raises(AuthError, match=f"client secret secret {PLATFORM_CLIENT_REF} is missing"):
        _session(httpserver, MemorySecrets({REFRESH_NAME: "x"}), FakeClock()).access_token()
    assert httpserver.log == []


def test_a_token_response_without_a_token_or_json_is_permanent(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/oauth/v1/token").respond_with_json({"token_type": "bearer"})
    httpserver.expect_ordered_request("/oauth/v1/token").respond_with_data("<html>oops</html>")
    session = _session(httpserver, _store(_token("refresh")), FakeClock())
    with pytest.raises(
        PermanentError, match="POST /oauth/v1/token answered without an access_token"
    ):
        session.access_token()
    with pytest.raises(
        PermanentError, match="hubspot: POST /oauth/v1/token returned malformed JSON"
    ):
        session.access_token()


def test_client_credentials_when_there_is_no_refresh_token(httpserver: HTTPServer) -> None:
    access = _token("access")
    httpserver.expect_request("/oauth/v1/token").respond_with_json(
        {"token_type": "Bearer", "expires_in": 3599, "access_token": access}
    )
    store = MemorySecrets({PLATFORM_CLIENT_REF: _token("client-secret")})
    session = _session(
        httpserver, store, FakeClock(), refresh_name=None, scope="https://o/.default"
    )
    assert session.access_token() == access
    form = _forms(httpserver)[0]
    assert form["grant_type"] == "client_credentials"
    assert "refresh_token" not in form
    assert form["scope"] == "https://o/.default"


def test_one_refresh_at_a_time_per_integration(httpserver: HTTPServer) -> None:
    access = _token("access")

    def slow_token_endpoint(request: Request) -> Response:
        time.sleep(0.2)
        return Response(f'{{"access_token": "{access}", "expires_in": 3600}}', 200)

    httpserver.expect_request("/oauth/v1/token").respond_with_handler(slow_token_endpoint)
    session = _session(httpserver, _store(_token("refresh")), FakeClock())
    tokens: list[str] = []
    threads = [
        threading.Thread(target=lambda: tokens.append(session.access_token())) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert tokens == [access] * 6
    assert len(httpserver.log) == 1


def test_renew_reuses_a_token_another_caller_already_refreshed(httpserver: HTTPServer) -> None:
    first, second = _token("access"), _token("access")
    for access in (first, second):
        httpserver.expect_ordered_request("/oauth/v1/token").respond_with_json(
            {"access_token": access, "expires_in": 3600}
        )
    session = _session(httpserver, _store(_token("refresh")), FakeClock())
    rejected = session.authorization()
    session.renew(rejected)
    assert session.access_token() == second
    session.renew(rejected)
    assert session.access_token() == second
    assert len(httpserver.log) == 2


def test_a_stored_token_is_reread_once_after_a_401() -> None:
    old, new = _token("pat"), _token("pat")
    store = MemorySecrets({"t1--crm--apiKey": old})
    token = SecretToken("hubspot", store, "t1--crm--apiKey")
    assert token.authorization() == f"Bearer {old}"
    store.values["t1--crm--apiKey"] = new
    token.renew(f"Bearer {old}")
    assert token.authorization() == f"Bearer {new}"
    with pytest.raises(
        AuthError, match="the token in secret t1--crm--apiKey was refused"
    ) as caught:
        token.renew(f"Bearer {new}")
    assert new not in str(caught.value)
