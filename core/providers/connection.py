"""What every CRM adapter shares: its settings, the signed and rate-limited HTTP session
built from the integration, and the cursor arithmetic of incremental syncs.

Settings are `connection.settings` (non-secret; unknown keys are refused so a typo is
not silently ignored). Credentials come from the secret store through
`connection.secretRefs`, in this order: `refreshToken` (OAuth2 refresh grant with
`config.clientId` and the client secret `secretRefs.clientSecret`, else the platform's
`platform--{provider}--clientSecret`), `accessToken` or `apiKey` (a bearer token as
stored), `clientSecret` alone (client credentials, where the provider allows it).

The sync worker already rewinds every incremental cursor by `SYNC_CURSOR_OVERLAP_SECONDS`
(for every provider), so a record committed late with a modification time just before
the cursor is read by the next sync. `overlapSeconds` (default 0) widens that window
further for one integration whose provider lags more (a search index catching up); the
re-read records map to "unchanged". A page's cursor is the newest
modification time the sync has read, never earlier than the cursor it started from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import Field, ValidationError

from core.errors import AuthError, PermanentError
from core.models.integration import ConfigModel, TenantIntegration
from core.ports import SecretStore
from core.providers.http import Authenticator, ProviderHttp, RetryPolicy
from core.providers.oauth import PROCESS_TOKENS, OAuth2Session, OAuthClient, SecretToken, TokenCache
from core.providers.ratelimit import (
    PROCESS_LIMITERS,
    SYSTEM_TIMING,
    RateLimiters,
    RateLimitSettings,
    Timing,
)

DEFAULT_OVERLAP_SECONDS = 0
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


class CrmSettings(ConfigModel):
    """Settings every CRM adapter understands; each provider adds its own."""

    base_url: str | None = Field(
        default=None,
        description="The API's origin (a sandbox, a proxy); default: connection.instanceUrl "
        "or the provider's public API",
    )
    token_url: str | None = Field(default=None, description="The OAuth token endpoint")
    client_id: str | None = Field(default=None, description="Our OAuth client id")
    overlap_seconds: int = Field(default=DEFAULT_OVERLAP_SECONDS, ge=0, le=86_400)
    daily_request_limit: int | None = Field(
        default=None, ge=1, description="Our own cap per UTC day on calls to the provider"
    )
    entity_types: list[str] | None = Field(
        default=None, min_length=1, description="The entity types to serve, parents first"
    )
    fields: dict[str, list[str]] = Field(
        default_factory=dict, description="Extra fields to read, per entity type"
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)


SettingsT = TypeVar("SettingsT", bound=CrmSettings)


def parse_settings(model: type[SettingsT], provider: str, config: Mapping[str, Any]) -> SettingsT:
    try:
        return model.model_validate(dict(config))
    except ValidationError as exc:
        problems = "; ".join(
            f"config.{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise PermanentError(f"{provider} provider: {problems}", resource=provider) from None


@dataclass(frozen=True)
class ProviderDefaults:
    """What a provider's adapter assumes when the integration does not say."""

    provider: str
    base_url: str | None
    oauth_endpoint: str | None
    rates: RateLimitSettings
    oauth_scope: str | None = None
    client_credentials: bool = False
    """Whether a client secret alone may sign in (client credentials grant)."""


@dataclass
class ProviderSession:
    """One integration's signed, rate-limited client and what its mappings read. Built
    without an integration (a config check) it has no client: calls raise AuthError."""

    provider: str
    http: ProviderHttp | None
    overlap: timedelta
    field_sources: dict[str, list[str]] = field(default_factory=dict)

    def client(self) -> ProviderHttp:
        if self.http is None:
            raise AuthError(
                f"{self.provider} provider: built without an integration and secret store, "
                "so it cannot call the provider",
                resource=self.provider,
            )
        return self.http

    def sources(self, entity_type: str) -> list[str]:
        """The source paths the integration's mapping of `entity_type` reads."""
        return list(self.field_sources.get(entity_type.strip().casefold(), []))

    def close(self) -> None:
        if self.http is not None:
            self.http.close()


class _NotConnected:
    """The authenticator of an integration without credentials: every call is refused."""

    def __init__(self, message: str) -> None:
        self._message = message

    def authorization(self) -> str:
        raise AuthError(self._message)

    def renew(self, rejected: str) -> None:
        raise AuthError(self._message)


def open_session(
    defaults: ProviderDefaults,
    settings: CrmSettings,
    *,
    integration: TenantIntegration | None,
    secrets: SecretStore | None,
    timing: Timing = SYSTEM_TIMING,
    limiters: RateLimiters = PROCESS_LIMITERS,
    tokens: TokenCache = PROCESS_TOKENS,
    retry: RetryPolicy | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProviderSession:
    provider = defaults.provider
    overlap = timedelta(seconds=settings.overlap_seconds)
    if integration is None or secrets is None:
        return ProviderSession(provider, None, overlap)
    base_url = settings.base_url or integration.connection.instance_url or defaults.base_url
    if not base_url:
        raise PermanentError(
            f"{provider} integration {integration.id!r}: no API URL; set "
            "connection.instanceUrl (or config.baseUrl) to the organization's URL",
            resource=provider,
        )
    auth = _authenticator(defaults, settings, integration, secrets, base_url, timing, tokens)
    rates = _rates(integration, defaults.rates, settings.daily_request_limit)
    limiter = limiters.get(
        f"{provider} integration {integration.tenant_id}/{integration.id}", rates, timing=timing
    )
    field_sources = {
        mapping.entity_type.strip().casefold(): [
            item.source for item in mapping.field_mappings if item.source
        ]
        for mapping in integration.sync_config.entity_mappings
        if mapping.enabled
    }
    http = ProviderHttp(
        provider,
        base_url,
        auth=auth,
        limiter=limiter,
        retry=retry,
        timing=timing,
        timeout=settings.timeout_seconds,
        headers=headers,
    )
    return ProviderSession(provider, http, overlap, field_sources)


def _rates(
    integration: TenantIntegration, provider_rates: RateLimitSettings, daily: int | None
) -> RateLimitSettings:
    configured = integration.rate_limits
    if configured is None:
        return RateLimitSettings(
            requests_per_second=provider_rates.requests_per_second,
            requests_per_minute=provider_rates.requests_per_minute,
            requests_per_hour=provider_rates.requests_per_hour,
            daily_request_limit=daily,
        )
    return RateLimitSettings(
        requests_per_second=configured.requests_per_second,
        requests_per_minute=configured.requests_per_minute,
        requests_per_hour=configured.requests_per_hour,
        daily_request_limit=daily,
    )


def _authenticator(
    defaults: ProviderDefaults,
    settings: CrmSettings,
    integration: TenantIntegration,
    secrets: SecretStore,
    base_url: str,
    timing: Timing,
    tokens: TokenCache,
) -> Authenticator:
    provider = defaults.provider
    refs = integration.connection.secret_refs
    refresh_token = refs.get("refreshToken")
    client_secret = refs.get("clientSecret")
    if refresh_token or (
        client_secret and defaults.client_credentials and not refs.get("accessToken")
    ):
        token_url = settings.token_url or defaults.oauth_endpoint
        if not token_url:
            raise PermanentError(
                f"{provider} provider: config.tokenUrl is required to refresh tokens",
                resource=provider,
            )
        if not settings.client_id:
            raise PermanentError(
                f"{provider} provider: config.clientId (our OAuth client id) is required to "
                "refresh tokens",
                resource=provider,
            )
        scope = (
            defaults.oauth_scope.format(base_url=base_url.rstrip("/"))
            if defaults.oauth_scope
            else None
        )
        client = OAuthClient(
            token_url=token_url,
            client_id=settings.client_id,
            client_secret_name=client_secret or f"platform--{provider}--clientSecret",
            scope=scope,
        )
        return OAuth2Session(
            provider,
            f"{provider}:{integration.tenant_id}/{integration.id}",
            client,
            secrets,
            refresh_token_name=refresh_token,
            timing=timing,
            tokens=tokens,
        )
    for kind in ("accessToken", "apiKey"):
        name = refs.get(kind)
        if name:
            return SecretToken(provider, secrets, name)
    kinds = "refreshToken, accessToken or apiKey"
    if defaults.client_credentials:
        kinds += " (or clientSecret)"
    return _NotConnected(
        f"{provider} integration {integration.id!r} has no credentials: "
        f"connection.secretRefs needs {kinds}; reconnect the integration"
    )


# -- cursors ---------------------------------------------------------------------------------


def parse_moment(value: str, *, provider: str, what: str) -> datetime:
    """An ISO 8601 date-time (`Z`, `+00:00` or Salesforce's `+0000`) as aware UTC; naive
    text is UTC. PermanentError naming `what` otherwise."""
    text = value.strip()
    if not _ISO_DATETIME.match(text):
        raise PermanentError(
            f"{provider}: {what} {value!r} is not an ISO 8601 date-time", resource=provider
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PermanentError(
            f"{provider}: {what} {value!r} is not an ISO 8601 date-time", resource=provider
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def field_moment(value: Any, *, provider: str, subject: str, field: str, resource: str) -> datetime:
    """A record's date-time field (`parse_moment`); PermanentError naming the record and the
    field when the value is not text."""
    if not isinstance(value, str):
        raise PermanentError(
            f"{provider}: {subject} has {field} {value!r}, not a date-time text",
            resource=resource,
        )
    return parse_moment(value, provider=provider, what=f"{subject} {field}")


def format_moment(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds (`2024-05-01T10:00:00.000Z`)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def window_start(since: datetime | None, overlap: timedelta) -> datetime | None:
    """Where an incremental query starts: the cursor less the overlap, whole seconds."""
    if since is None:
        return None
    return (since - overlap).replace(microsecond=0)


def later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is None:
        return current
    if current is None or candidate > current:
        return candidate
    return current
