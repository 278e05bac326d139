"""Bearer-JWT authentication for every `/api/v1` route.

Azure: Entra ID tokens (issuer, audience, signing keys from the JWKS, cached). Local:
HS256 tokens signed with a key kept in the data dir (or LOCAL_JWT_SIGNING_KEY). The
tenant and roles come from the token's claims, never from the request.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt

from core.config import Settings

ROLE_TENANT_ADMIN = "tenant_admin"
ROLE_SUPER_ADMIN = "super_admin"
TENANT_ROLES = frozenset({ROLE_TENANT_ADMIN, ROLE_SUPER_ADMIN})
SUPER_ADMIN_ROLES = frozenset({ROLE_SUPER_ADMIN})

LOCAL_ISSUER = "urn:integration-data-flow:local"
LOCAL_AUDIENCE = "integration-data-flow"
_KEY_FILE = "jwt-signing.key"


class AuthenticationError(Exception):
    """401: no, malformed, expired or untrusted token."""


class AuthorizationError(Exception):
    """403: a valid token without a role the route needs."""


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    tenant_id: str
    roles: frozenset[str]

    @property
    def is_super_admin(self) -> bool:
        return ROLE_SUPER_ADMIN in self.roles


class TokenVerifier(Protocol):
    def claims(self, token: str) -> Mapping[str, Any]: ...


class LocalTokenVerifier:
    def __init__(self, key: str) -> None:
        self._key = key

    def claims(self, token: str) -> Mapping[str, Any]:
        return jwt.decode(
            token,
            self._key,
            algorithms=["HS256"],
            audience=LOCAL_AUDIENCE,
            issuer=LOCAL_ISSUER,
            options={"require": ["exp", "sub"]},
        )

    def issue(
        self, *, tenant_id: str, roles: Iterable[str], subject: str, ttl_seconds: int = 3600
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": LOCAL_ISSUER,
            "aud": LOCAL_AUDIENCE,
            "sub": subject,
            "tid": tenant_id,
            "roles": sorted(roles),
            "iat": now,
            "exp": now + ttl_seconds,
        }
        return jwt.encode(payload, self._key, algorithm="HS256")


class EntraTokenVerifier:
    """RS256 tokens from Entra ID; the JWKS client caches keys and refetches on a new kid."""

    def __init__(self, *, issuer: str, audience: str, jwks_url: str) -> None:
        self._issuer = issuer
        self._audience = audience
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=10)

    def claims(self, token: str) -> Mapping[str, Any]:
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientError as exc:
            raise jwt.InvalidTokenError(f"signing key not found: {exc}") from exc
        return jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=self._audience,
            issuer=self._issuer,
            options={"require": ["exp", "sub"]},
        )


def local_signing_key(settings: Settings) -> str:
    """The configured key, else one generated once per data dir (never a constant in code)."""
    if settings.local_jwt_signing_key:
        return settings.local_jwt_signing_key
    path = Path(settings.data_dir) / _KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def build_verifier(settings: Settings) -> TokenVerifier:
    if settings.runtime == "azure":
        missing = [
            name
            for name, value in (
                ("AUTH_ISSUER", settings.auth_issuer),
                ("AUTH_AUDIENCE", settings.auth_audience),
                ("AUTH_JWKS_URL", settings.auth_jwks_url),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"RUNTIME=azure needs {', '.join(missing)} for API authentication")
        return EntraTokenVerifier(
            issuer=str(settings.auth_issuer),
            audience=str(settings.auth_audience),
            jwks_url=str(settings.auth_jwks_url),
        )
    return LocalTokenVerifier(local_signing_key(settings))


def authenticate(
    authorization: str | None,
    verifier: TokenVerifier,
    *,
    tenant_claim: str,
    allowed_roles: frozenset[str],
) -> Principal:
    if not authorization:
        raise AuthenticationError("missing Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization header must be 'Bearer <token>'")
    try:
        claims = verifier.claims(token.strip())
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthenticationError(f"invalid token: {exc}") from exc
    tenant = claims.get(tenant_claim)
    if not isinstance(tenant, str) or not tenant:
        raise AuthenticationError(f"token has no '{tenant_claim}' claim")
    raw_roles = claims.get("roles", [])
    roles = (
        frozenset(r for r in raw_roles if isinstance(r, str))
        if isinstance(raw_roles, list)
        else frozenset()
    )
    if not roles & allowed_roles:
        raise AuthorizationError(f"requires one of the roles: {', '.join(sorted(allowed_roles))}")
    return Principal(subject=str(claims.get("sub")), tenant_id=tenant, roles=roles)
