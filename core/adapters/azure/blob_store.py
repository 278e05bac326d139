"""`BlobStore` on Azure Blob Storage (and Azurite), with the folder store's rules.

Names, container names and metadata are validated as the folder store does, so a name
that works locally works in Azure and the other way round. Containers are created on
first put. `download_url` is a read-only SAS URL: a user-delegation SAS when the client
authenticates with a token (managed identity), an account-key SAS when it was built from
a connection string (Azurite, or an account key where identity is not available).

This adapter is not a `BlobEventSource`: in Azure, blob-created events come from Event
Grid to the Functions host, and Blob Storage has no ordered "created since" sequence that
stays correct under concurrent writers (a counter bumped before each upload can be seen
out of order). `BlobInfo.sequence` is therefore always 0 here; the local host's blob
trigger needs `BLOBS=folder`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobProperties,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    generate_blob_sas,
)

from core.blob_names import check_container, check_metadata, check_name
from core.config import Settings
from core.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    PortError,
    TransientError,
)
from core.ports import BlobInfo

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_SAS_LIFETIME = timedelta(days=7)  # a user delegation key's longest validity

_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_CLOCK_SKEW = timedelta(minutes=5)


# -------------------------------------------------------------------------------------
# client (one per process)
# -------------------------------------------------------------------------------------

_clients: dict[tuple[str, str], BlobServiceClient] = {}
_clients_lock = threading.Lock()


def shared_client(
    *, account_url: str | None = None, connection_string: str | None = None
) -> BlobServiceClient:
    """The process's BlobServiceClient: from a connection string (Azurite, account key)
    or from the account URL with DefaultAzureCredential."""
    if connection_string:
        cache_key = ("connection_string", connection_string)
    elif account_url:
        cache_key = ("account_url", account_url)
    else:
        raise PermanentError("a blob client needs an account URL or a connection string")
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            if connection_string:
                client = BlobServiceClient.from_connection_string(connection_string)
            else:
                from azure.identity import DefaultAzureCredential

                client = BlobServiceClient(account_url or "", credential=DefaultAzureCredential())
            _clients[cache_key] = client
        return client


def build(settings: Settings) -> AzureBlobStore:
    """The composition root's factory (`BLOBS=azure`)."""
    from core.runtime import ConfigurationError

    if not (settings.blob_connection_string or settings.blob_account_url):
        raise ConfigurationError(
            "BLOBS=azure needs BLOB_ACCOUNT_URL (identity) or BLOB_CONNECTION_STRING (Azurite)"
        )
    return AzureBlobStore(
        shared_client(
            account_url=settings.blob_account_url,
            connection_string=settings.blob_connection_string,
        )
    )


# -------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------


def translate(exc: Exception, resource: str) -> PortError:
    """An SDK exception as the port error it means, naming `resource`."""
    if isinstance(exc, ClientAuthenticationError):
        return AuthError(
            f"Blob Storage {resource}: credentials refused or missing", resource=resource
        )
    if isinstance(exc, ResourceNotFoundError):
        return NotFoundError(f"blob {resource} does not exist", resource=resource)
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        code = getattr(exc, "error_code", None) or exc.reason or ""
        detail = f"Blob Storage {resource}: HTTP {status} {code}".rstrip()
        if status in (401, 403):
            return AuthError(f"{detail}: credentials refused", resource=resource)
        if status in _TRANSIENT_STATUSES or status >= 500 or status == 0:
            return TransientError(detail, resource=resource)
        return PermanentError(detail, resource=resource)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(
            f"Blob Storage {resource}: cannot reach the service ({type(exc).__name__})",
            resource=resource,
        )
    return TransientError(f"Blob Storage {resource}: {type(exc).__name__}", resource=resource)


@contextmanager
def blob_errors(resource: str) -> Iterator[None]:
    try:
        yield
    except PortError:
        raise
    except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
        raise translate(exc, resource) from exc


# -------------------------------------------------------------------------------------
# the store
# -------------------------------------------------------------------------------------


class AzureBlobStore:
    """`BlobStore` on one storage account (see the module docstring)."""

    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service
        self._known_containers: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AzureBlobStore(account={self._service.account_name!r})"

    # ---------------------------------------------------------------- writes

    def put(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> BlobInfo:
        resource = check_name(container, name)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise PermanentError(
                f"blob {resource} data must be bytes, got {type(data).__name__}",
                resource=resource,
            )
        clean_metadata = check_metadata(resource, metadata or {})
        content_type = content_type or DEFAULT_CONTENT_TYPE
        blob = self._service.get_blob_client(container, name)
        upload: dict[str, Any] = {
            "overwrite": True,
            "content_settings": ContentSettings(content_type=content_type),
            "metadata": clean_metadata,
        }
        with blob_errors(resource):
            if container not in self._known_containers:
                self._create_container(container)
            try:
                result = blob.upload_blob(bytes(data), **upload)
            except ResourceNotFoundError:
                self._known_containers.discard(container)
                self._create_container(container)
                result = blob.upload_blob(bytes(data), **upload)
        return BlobInfo(
            container=container,
            name=name,
            size=len(data),
            content_type=content_type,
            metadata=clean_metadata,
            etag=result["etag"],
            created_at=_utc(result["last_modified"]),
        )

    def _create_container(self, container: str) -> None:
        with suppress(ResourceExistsError):
            self._service.create_container(container)
        with self._lock:
            self._known_containers.add(container)

    def delete(self, container: str, name: str) -> bool:
        resource = check_name(container, name)
        with blob_errors(resource):
            try:
                self._service.get_blob_client(container, name).delete_blob()
            except ResourceNotFoundError:
                return False
        return True

    # ---------------------------------------------------------------- reads

    def get(self, container: str, name: str) -> bytes:
        resource = check_name(container, name)
        with blob_errors(resource):
            return self._service.get_blob_client(container, name).download_blob().readall()

    def info(self, container: str, name: str) -> BlobInfo | None:
        resource = check_name(container, name)
        with blob_errors(resource):
            try:
                properties = self._service.get_blob_client(container, name).get_blob_properties()
            except ResourceNotFoundError:
                return None
        return _info(container, properties)

    def list(self, container: str, *, prefix: str = "") -> Iterator[BlobInfo]:
        """Blobs whose name starts with `prefix`, in name order; none for a container that
        does not exist yet."""
        check_container(container)
        return self._list(container, prefix)

    def _list(self, container: str, prefix: str) -> Iterator[BlobInfo]:
        listing = self._service.get_container_client(container).list_blobs(
            name_starts_with=prefix or None, include=["metadata"]
        )
        with blob_errors(container):
            try:
                for properties in listing:
                    yield _info(container, properties)
            except ResourceNotFoundError:
                return

    def download_url(self, container: str, name: str, *, expires_in: timedelta) -> str:
        """A read-only SAS URL valid for `expires_in` (at most 7 days)."""
        resource = check_name(container, name)
        if expires_in <= timedelta(0) or expires_in > MAX_SAS_LIFETIME:
            raise PermanentError(
                f"expires_in must be positive and at most {MAX_SAS_LIFETIME}, got {expires_in}",
                resource=resource,
            )
        if self.info(container, name) is None:
            raise NotFoundError(f"blob {resource} does not exist", resource=resource)
        now = datetime.now(UTC)
        expiry = now + expires_in
        service = self._service
        signing: dict[str, Any]
        credential = service.credential
        with blob_errors(resource):
            if getattr(credential, "account_key", None):
                signing = {"account_key": credential.account_key}
            else:
                signing = {
                    "user_delegation_key": service.get_user_delegation_key(
                        now - _CLOCK_SKEW, expiry
                    )
                }
        token = generate_blob_sas(
            account_name=service.account_name or "",
            container_name=container,
            blob_name=name,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
            start=now - _CLOCK_SKEW,
            **signing,
        )
        return f"{service.get_blob_client(container, name).url}?{token}"

    def ping(self) -> None:
        with blob_errors(self._service.account_name or "blob account"):
            next(iter(self._service.list_containers(results_per_page=1).by_page()), None)


# -------------------------------------------------------------------------------------
# validation
# -------------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _info(container: str, properties: BlobProperties) -> BlobInfo:
    settings = properties.content_settings
    return BlobInfo(
        container=container,
        name=properties.name,
        size=properties.size,
        content_type=settings.content_type if settings else None,
        metadata=dict(properties.metadata or {}),
        etag=properties.etag,
        created_at=_utc(properties.last_modified),
    )
