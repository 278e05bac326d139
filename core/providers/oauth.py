"""Credentials for provider calls: OAuth2 access tokens and stored bearer tokens.

`OAuth2Session` gets access tokens from the provider's token endpoint with the
refresh-token grant (RFC 6749 section 6), or with client credentials when the integration
has a client secret and no refresh token (Dataverse application users), and keeps each
in memory until shortly before it expires, shared by every adapter of the integration in
this process (`TokenCache`). One refresh at a time per integration: concurrent callers
wait for it and reuse its token.

Rotation (docs/secret-management.md): when the token endpoint returns a new refresh
token (Microsoft does on every refresh; Salesforce and HubSpot when the app is set up to
rotate) it is written back to the secret store under the integration's
`secretRefs.refreshToken` name before the new access token is used. A refresh refused with
`invalid_grant` (HubSpot: `BAD_REFRESH_TOKEN`) re-reads the secret once, in case another
instance rotated it, and otherwise raises AuthError telling the tenant to reconnect.

`SecretToken` serves a long-lived token kept as a secret (`accessToken`, or a HubSpot
private app token as `apiKey`); after a 401 it re-reads the secret once, so a token
rotated elsewhere is picked up before the call counts as refused.

Token values never appear in messages or logs; secrets are named, never shown.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from core.errors import AuthError, PermanentError
from core.ports import SecretStore
from core.providers.http import ProviderHttp, error_detail
from core.providers.ratelimit import SYSTEM_TIMING, Timing

log = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFETIME_SECONDS = 1800.0
"""For token endpoints that do not say (Salesforce sends no `expires_in`; its session
timeout is set per org, two hours by default): a 401 refreshes earlier if needed."""
EXPIRY_MARGIN_SECONDS = 60.0
REFUSED_GRANT_CODES = frozenset({"invalid_grant", "BAD_REFRESH_TOKEN"})
REFUSED_CLIENT_CODES = frozenset({"invalid_client", "unauthorized_client", "BAD_CLIENT_ID"})


class TokenResponse(BaseModel):
    """A token endpoint's answer; both the RFC 6749 names and HubSpot's camelCase ones."""

    model_config = ConfigDict(extra="ignore")

    access_token: str = Field(
        min_length=1, validation_alias=AliasChoices("access_token", "accessToken")
    )
    refresh_token: str | None = Field(
        default=None, validation_alias=AliasChoices("refresh_token", "refreshToken")
    )
    expires_in: float | None = Field(
        default=None, validation_alias=AliasChoices("expires_in", "expiresIn")
    )


@dataclass(frozen=True)
class CachedToken:
    value: str
    expires_at: float
    """On the `Timing.monotonic` clock."""


class TokenCache:
    """Access tokens by integration key, and the lock that serialises each one's refresh."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._tokens: dict[str, CachedToken] = {}
        self._locks: dict[str, threading.Lock] = {}

    def get(self, key: str) -> CachedToken | None:
        with self._guard:
            return self._tokens.get(key)

    def put(self, key: str, token: CachedToken) -> None:
        with self._guard:
            self._tokens[key] = token

    def refresh_lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


PROCESS_TOKENS = TokenCache()


@dataclass(frozen=True)
class OAuthClient:
    """Our OAuth client at one provider: where tokens come from and who asks."""

    token_url: str
    client_id: str
    client_secret_name: str
    """The secret holding the client secret: the platform's
    (`platform--{provider}--clientSecret`) or the tenant's own (`secretRefs.clientSecret`)."""
    scope: str | None = None


class OAuth2Session:
    """An `Authenticator` with OAuth2 access tokens."""

    def __init__(
        self,
        provider: str,
        key: str,
        client: OAuthClient,
        secrets: SecretStore,
        *,
        refresh_token_name: str | None,
        timing: Timing = SYSTEM_TIMING,
        tokens: TokenCache = PROCESS_TOKENS,
        default_lifetime: float = DEFAULT_TOKEN_LIFETIME_SECONDS,
        http: ProviderHttp | None = None,
    ) -> None:
        self.provider = provider
        self.key = key
        self._client = client
        self._secrets = secrets
        self._refresh_token_name = refresh_token_name
        self._timing = timing
        self._tokens = tokens
        self._default_lifetime = default_lifetime
        self._http = http or ProviderHttp(provider, client.token_url, timing=timing)

    # -- Authenticator ---------------------------------------------------------------------

    def authorization(self) -> str:
        return f"Bearer {self.access_token()}"

    def renew(self, rejected: str) -> None:
        rejected_token = rejected.removeprefix("Bearer ").strip()
        with self._tokens.refresh_lock(self.key):
            current = self._tokens.get(self.key)
            if current is not None and current.value != rejected_token and self._fresh(current):
                return
            self._refresh()

    # -- tokens ----------------------------------------------------------------------------

    def access_token(self) -> str:
        cached = self._tokens.get(self.key)
        if cached is not None and self._fresh(cached):
            return cached.value
        with self._tokens.refresh_lock(self.key):
            cached = self._tokens.get(self.key)
            if cached is not None and self._fresh(cached):
                return cached.value
            return self._refresh().value

    def _fresh(self, token: CachedToken) -> bool:
        return token.expires_at > self._timing.monotonic()

    def _refresh(self) -> CachedToken:
        """A new access token (caller holds the refresh lock)."""
        client_secret = self._secret(self._client.client_secret_name, "client secret")
        if self._refresh_token_name is None:
            form = {"grant_type": "client_credentials"}
            return self._exchange(form, client_secret, refresh_token=None)
        refresh_token = self._secret(self._refresh_token_name, "refresh token")
        grant = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        try:
            return self._exchange(grant, client_secret, refresh_token=refresh_token)
        except _RefusedGrantError as refused:
            detail = refused.detail
        reread = self._secrets.get(self._refresh_token_name)
        if reread and reread != refresh_token:
            log.info(
                "%s: refresh token %s changed in the secret store; retrying the refresh",
                self.provider,
                self._refresh_token_name,
            )
            grant = {"grant_type": "refresh_token", "refresh_token": reread}
            try:
                return self._exchange(grant, client_secret, refresh_token=reread)
            except _RefusedGrantError as again:
                detail = again.detail
        raise AuthError(
            f"{self.provider}: the token endpoint refused the refresh token in secret "
            f"{self._refresh_token_name} ({detail}); reconnect the integration",
            resource=self._refresh_token_name,
        )

    def _exchange(
        self, form: dict[str, str], client_secret: str, *, refresh_token: str | None
    ) -> CachedToken:
        form = {**form, "client_id": self._client.client_id, "client_secret": client_secret}
        if self._client.scope:
            form["scope"] = self._client.scope
        response = self._http.send("POST", self._client.token_url, data=form)
        if not response.is_success:
            detail = error_detail(response)
            if response.status_code in (400, 401) and detail.code in REFUSED_GRANT_CODES:
                raise _RefusedGrantError(detail.describe())
            if response.status_code in (400, 401) and detail.code in REFUSED_CLIENT_CODES:
                raise AuthError(
                    f"{self.provider}: the token endpoint refused client {self._client.client_id!r} "
                    f"({detail.describe()}); check config.clientId and secret "
                    f"{self._client.client_secret_name}",
                    resource=self._client.client_secret_name,
                )
            raise self._http.error_for(response)
        body = self._http.parse_json(response)
        try:
            grant = TokenResponse.model_validate(body)
        except ValidationError:
            raise PermanentError(
                f"{self.provider}: POST {response.request.url.path} answered without an "
                "access_token",
                resource=f"{self.provider}:{response.request.url.path}",
            ) from None
        if (
            self._refresh_token_name is not None
            and grant.refresh_token
            and grant.refresh_token != refresh_token
        ):
            self._secrets.set(self._refresh_token_name, grant.refresh_token)
            log.info(
                "%s: stored the rotated refresh token in secret %s",
                self.provider,
                self._refresh_token_name,
            )
        lifetime = grant.expires_in if grant.expires_in else self._default_lifetime
        margin = EXPIRY_MARGIN_SECONDS if lifetime > 2 * EXPIRY_MARGIN_SECONDS else lifetime / 2
        token = CachedToken(grant.access_token, self._timing.monotonic() + lifetime - margin)
        self._tokens.put(self.key, token)
        return token

    def _secret(self, name: str, what: str) -> str:
        value = self._secrets.get(name)
        if not value:
            raise AuthError(
                f"{self.provider}: the {what} secret {name} is missing from the secret store; "
                "reconnect the integration",
                resource=name,
            )
        return value


class _RefusedGrantError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SecretToken:
    """An `Authenticator` with a long-lived bearer token kept as a secret."""

    def __init__(self, provider: str, secrets: SecretStore, name: str) -> None:
        self.provider = provider
        self._secrets = secrets
        self._name = name
        self._lock = threading.Lock()
        self._value: str | None = None

    def authorization(self) -> str:
        with self._lock:
            if self._value is None:
                self._value = self._read()
            return f"Bearer {self._value}"

    def renew(self, rejected: str) -> None:
        rejected_token = rejected.removeprefix("Bearer ").strip()
        with self._lock:
            value = self._read()
            if value == rejected_token:
                raise AuthError(
                    f"{self.provider}: the token in secret {self._name} was refused (401); "
                    "replace it or reconnect the integration",
                    resource=self._name,
                )
            self._value = value

    def _read(self) -> str:
        value = self._secrets.get(self._name)
        if not value:
            raise AuthError(
                f"{self.provider}: the token secret {self._name} is missing from the secret "
                "store; reconnect the integration",
                resource=self._name,
            )
        return value
