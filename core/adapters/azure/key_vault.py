"""`SecretStore` on Azure Key Vault (azure-keyvault-secrets).

Names follow the EnvSecretStore's rules (`{tenantId}--{integrationId}--{kind}`: 1-127
letters, digits and hyphens, which is also Key Vault's rule). `set` writes a new version
(rotation keeps the old ones in the vault's history); a name that is soft-deleted is
recovered first, since Key Vault refuses to set it otherwise. `delete` waits until the
deletion is done, so a `set` right after it works.

Values are cached in process for `cache_seconds` (default 5 minutes: Key Vault throttles
at a few thousand calls per 10 s per vault); `set` and `delete` on this instance update
the cache at once, another process's rotation is seen when the entry expires. Missing
secrets are not cached. Values never appear in logs, errors or `repr`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from core.config import Settings
from core.errors import AuthError, PermanentError, PortError, TransientError

CACHE_SECONDS = 300.0
DELETED_BUT_RECOVERABLE = "ObjectIsDeletedButRecoverable"

_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class SecretClientLike(Protocol):
    """What this adapter uses of `azure.keyvault.secrets.SecretClient`."""

    @property
    def vault_url(self) -> str: ...

    def get_secret(self, name: str) -> Any: ...

    def set_secret(self, name: str, value: str) -> Any: ...

    def begin_delete_secret(self, name: str) -> Any: ...

    def begin_recover_deleted_secret(self, name: str) -> Any: ...

    def list_properties_of_secrets(self, *, max_page_size: int) -> Any: ...


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def shared_client(vault_url: str) -> Any:
    """The process's SecretClient for this vault, with DefaultAzureCredential."""
    with _clients_lock:
        client = _clients.get(vault_url)
        if client is None:
            from azure.identity import DefaultAzureCredential
            from azure.keyvault.secrets import SecretClient

            client = _clients[vault_url] = SecretClient(vault_url, DefaultAzureCredential())
        return client


def build(settings: Settings) -> KeyVaultSecretStore:
    """The composition root's factory (`SECRETS=keyvault`)."""
    from core.runtime import ConfigurationError

    if not settings.key_vault_url:
        raise ConfigurationError("SECRETS=keyvault needs KEY_VAULT_URL (the vault's URL)")
    return KeyVaultSecretStore(shared_client(settings.key_vault_url))


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
        raise PermanentError(
            f"invalid secret name {name!r}: use 1-127 letters, digits and hyphens",
            resource=str(name),
        )
    return name


def translate(exc: Exception, resource: str) -> PortError:
    """An SDK exception as the port error it means, naming the secret (never its value)."""
    if isinstance(exc, ClientAuthenticationError):
        return AuthError(
            f"Key Vault secret {resource}: credentials missing, expired or refused",
            resource=resource,
        )
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if status in (401, 403):
            return AuthError(
                f"Key Vault secret {resource}: HTTP {status}, access refused", resource=resource
            )
        if status in _TRANSIENT_STATUSES or status >= 500:
            headers = getattr(exc.response, "headers", None) or {}
            header = headers.get("Retry-After")
            retry_after = float(header) if header and header.isdigit() else None
            return TransientError(
                f"Key Vault secret {resource}: HTTP {status}",
                resource=resource,
                retry_after=retry_after,
            )
        return PermanentError(f"Key Vault secret {resource}: HTTP {status}", resource=resource)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(
            f"Key Vault secret {resource}: cannot reach the vault ({type(exc).__name__})",
            resource=resource,
        )
    return TransientError(f"Key Vault secret {resource}: {type(exc).__name__}", resource=resource)


@contextmanager
def vault_errors(resource: str) -> Iterator[None]:
    try:
        yield
    except PortError:
        raise
    except (HttpResponseError, ClientAuthenticationError, ServiceRequestError) as exc:
        raise translate(exc, resource) from exc


def _error_code(exc: HttpResponseError) -> str | None:
    error = getattr(exc, "error", None)
    return getattr(error, "code", None)


class KeyVaultSecretStore:
    """`SecretStore` on one Key Vault (see the module docstring)."""

    def __init__(
        self,
        client: SecretClientLike,
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyVaultSecretStore(vault={self._client.vault_url!r})"

    def get(self, name: str) -> str | None:
        check_name(name)
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        with vault_errors(name):
            try:
                value = self._client.get_secret(name).value
            except ResourceNotFoundError:
                self._forget(name)
                return None
        self._remember(name, value)
        return value

    def set(self, name: str, value: str) -> None:
        check_name(name)
        if not isinstance(value, str):
            raise PermanentError(
                f"secret {name!r} must be a string, got {type(value).__name__}", resource=name
            )
        with vault_errors(name):
            try:
                self._client.set_secret(name, value)
            except ResourceExistsError as exc:
                if _error_code(exc) != DELETED_BUT_RECOVERABLE:
                    raise
                self._client.begin_recover_deleted_secret(name).wait()
                self._client.set_secret(name, value)
        self._remember(name, value)

    def delete(self, name: str) -> None:
        check_name(name)
        self._forget(name)
        with vault_errors(name):
            try:
                self._client.begin_delete_secret(name).wait()
            except ResourceNotFoundError:
                return

    def ping(self) -> None:
        with vault_errors(self._client.vault_url):
            next(iter(self._client.list_properties_of_secrets(max_page_size=1)), None)

    def _remember(self, name: str, value: str) -> None:
        if self._cache_seconds <= 0:
            return
        with self._lock:
            self._cache[name] = (value, self._clock() + self._cache_seconds)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._cache.pop(name, None)
