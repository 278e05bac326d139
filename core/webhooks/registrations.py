"""Webhook registrations: which integration accepts which provider's deliveries, with the
secret that authenticates them.

One registration per (integration, scheme): the delivery URL is
`/api/webhooks/{scheme}/{integrationId}`, so the pair names exactly one registration and one
secret (Microsoft Graph needs that: its clientState is per notification URL). The tenant is
never taken from a delivery: the receiver finds the registration by integration id and scheme
with a cross-partition query (cached briefly in-process; see `core.webhooks.receiver`), and
the registration holds the tenant. Its id is derived from (tenant, integration, scheme), so a
second registration of the same scheme is a conflict, decided atomically by the store.

Secrets live in the secret store only, named `{tenantId}--{integrationId}--webhookSecret-{scheme}`
(docs/secret-management.md); the document holds the name. Who provides the secret depends on
the scheme (`SECRET_SOURCES`): we generate it where we choose it at subscription time (GitHub,
generic HMAC, Graph clientState, Google channel token) and return it once; Slack, HubSpot and
Zoom issue it in their consoles, Salesforce's is the sending organization id, and Notion's
arrives in its unsigned verification handshake, so it is kept as *pending* until a tenant
admin activates it (which returns it once, to paste into Notion).
"""

from __future__ import annotations

import builtins
import re
import secrets as random_secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError, field_validator

from core import containers
from core.errors import ConflictError, NotFoundError, PortError
from core.integrations.repository import IntegrationRepository
from core.integrations.service import InputProblem, InvalidInputError, json_path
from core.models.integration import ConfigModel
from core.models.shards import CamelModel, Count, StoredDocument, UtcDateTime
from core.ports import Clock, DocumentStore, Filter, SecretStore
from core.webhooks.verifiers import VERIFIERS

SecretSource = Literal["generated", "provider", "organization_id", "handshake"]

SECRET_SOURCES: dict[str, SecretSource] = {
    "github": "generated",
    "hmac": "generated",
    "msgraph": "generated",
    "gdrive": "generated",
    "slack": "provider",
    "hubspot": "provider",
    "zoom": "provider",
    "salesforce": "organization_id",
    "notion": "handshake",
}
"""Where each scheme's secret comes from when the registration request omits it."""

GENERATED_SECRET_BYTES = 32
MAX_SECRET_LENGTH = 1024
MAX_EVENT_FILTERS = 100
_REGISTRATION_NAMESPACE = uuid.UUID("0a7f1d9e-3c55-4f0e-b5a2-6f8e2d4c9b17")

_SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")

EventFilter = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def derive_registration_id(tenant_id: str, integration_id: str, scheme: str) -> str:
    return str(uuid.uuid5(_REGISTRATION_NAMESPACE, f"{tenant_id}\n{integration_id}\n{scheme}"))


def secret_name(tenant_id: str, integration_id: str, scheme: str) -> str:
    return f"{tenant_id}--{integration_id}--webhookSecret-{scheme}"


def pending_secret_name(tenant_id: str, integration_id: str, scheme: str) -> str:
    return f"{secret_name(tenant_id, integration_id, scheme)}-pending"


def delivery_path(scheme: str, integration_id: str) -> str:
    return f"/api/webhooks/{scheme}/{integration_id}"


class WebhookHealth(CamelModel):
    """Deliveries since registration: `receivedCount` authenticated ones (events, repeats and
    handshakes), `failureCount` refused ones; the reason is a category, never a detail."""

    received_count: Count = 0
    failure_count: Count = 0
    last_received_at: UtcDateTime | None = None
    last_failure_at: UtcDateTime | None = None
    last_failure_reason: str | None = None


class WebhookRegistration(StoredDocument):
    """The document in `webhook_registrations` (partition key `/tenantId`)."""

    id: str = Field(min_length=1)
    tenant_id: str = Field(min_length=1)
    integration_id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    events: list[str] = Field(default_factory=list)
    secret_name: str | None = None
    pending_secret_name: str | None = None
    pending_secret_received_at: UtcDateTime | None = None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    health: WebhookHealth = Field(default_factory=WebhookHealth)


class CreateWebhookRequest(ConfigModel):
    provider: str = Field(description="The scheme: one of core.webhooks.VERIFIERS")
    secret: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SECRET_LENGTH,
        repr=False,
        description="The signing secret the provider issued; omitted: generated where we may",
    )
    events: list[EventFilter] = Field(
        default_factory=list,
        max_length=MAX_EVENT_FILTERS,
        description="Provider event types to accept (shell-style wildcards); empty: all",
    )

    @field_validator("provider")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value not in VERIFIERS:
            raise ValueError(f"unknown provider {value!r}; known: {', '.join(sorted(VERIFIERS))}")
        return value

    @field_validator("secret")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is blank; omit it to have one generated where the scheme allows")
        return value


def _problems(exc: ValidationError) -> list[InputProblem]:
    return [
        InputProblem(json_path(*error["loc"]), str(error["msg"]).removeprefix("Value error, "))
        for error in exc.errors(include_url=False)
    ]


def _parse_create(body: Any) -> CreateWebhookRequest:
    if not isinstance(body, dict):
        raise InvalidInputError([InputProblem("body", "expected a JSON object")])
    try:
        return CreateWebhookRequest.model_validate(body)
    except ValidationError as exc:
        raise InvalidInputError(_problems(exc)) from exc


def _secret_for(request: CreateWebhookRequest) -> tuple[str | None, bool]:
    """(secret to store, whether we generated it); a missing secret the scheme cannot do
    without is a 422 naming `secret` and saying where to find it."""
    source = SECRET_SOURCES[request.provider]
    if request.secret is not None:
        if source == "organization_id" and not _SALESFORCE_ID.fullmatch(request.secret.strip()):
            problem = "must be the sending organization's 15- or 18-character Salesforce id"
            raise InvalidInputError([InputProblem("secret", problem)])
        return request.secret, False
    if source == "generated":
        return random_secrets.token_urlsafe(GENERATED_SECRET_BYTES), True
    if source == "handshake":
        return None, False
    where = {
        "provider": f"{request.provider} issues the signing secret in its console; pass it",
        "organization_id": "Salesforce outbound messages are tied to the sending organization: "
        "pass its 15- or 18-character organization id",
    }[source]
    raise InvalidInputError([InputProblem("secret", f"is required: {where}")])


def find_registrations(
    store: DocumentStore, integration_id: str, scheme: str
) -> builtins.list[WebhookRegistration]:
    """Every registration of (integration, scheme) across tenants: one, or none; more would
    mean two tenants claim one integration id, and the receiver refuses that."""
    page = store.query(
        containers.WEBHOOK_REGISTRATIONS.name,
        filters=[Filter("integrationId", "==", integration_id), Filter("provider", "==", scheme)],
        limit=2,
    )
    return [WebhookRegistration.model_validate(document) for document in page.items]


class WebhookRegistrations:
    """Create, list, delete and activate registrations; `on_change(integrationId, scheme)`
    lets the receiver of this process forget what it cached about the pair."""

    def __init__(
        self,
        store: DocumentStore,
        secrets: SecretStore,
        clock: Clock,
        *,
        on_change: Callable[[str, str], None] = lambda integration_id, scheme: None,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._clock = clock
        self._on_change = on_change

    # -- tenant API ------------------------------------------------------------------------

    def create(
        self, tenant_id: str, integration_id: str, body: Any
    ) -> tuple[WebhookRegistration, str | None]:
        """The new registration and, when we generated its secret, that secret (shown once).

        The document is created first: the store decides a concurrent duplicate atomically
        (ConflictError, 409) before any secret is written, so a losing request cannot
        overwrite the winner's secret. If the secret cannot be stored the document goes too.
        """
        request = _parse_create(body)
        IntegrationRepository(self._store).get(tenant_id, integration_id)
        secret, generated = _secret_for(request)
        scheme = request.provider
        now = self._clock.now()
        name = secret_name(tenant_id, integration_id, scheme)
        registration = WebhookRegistration(
            id=derive_registration_id(tenant_id, integration_id, scheme),
            tenant_id=tenant_id,
            integration_id=integration_id,
            provider=scheme,
            events=request.events,
            secret_name=name if secret is not None else None,
            created_at=now,
            updated_at=now,
        )
        try:
            stored = self._store.create(
                containers.WEBHOOK_REGISTRATIONS.name, registration.to_document()
            )
        except ConflictError as exc:
            raise ConflictError(
                f"integration {integration_id!r} already has a {scheme} webhook registration "
                f"({registration.id}); delete it first to register again",
                resource=f"webhook_registrations/{registration.id}",
            ) from exc
        if secret is not None:
            try:
                self._secrets.set(name, secret)
            except PortError:
                self._store.delete(
                    containers.WEBHOOK_REGISTRATIONS.name, tenant_id, registration.id
                )
                raise
        self._on_change(integration_id, scheme)
        return WebhookRegistration.model_validate(stored), secret if generated else None

    def list(self, tenant_id: str, integration_id: str) -> builtins.list[WebhookRegistration]:
        IntegrationRepository(self._store).get(tenant_id, integration_id)
        page = self._store.query(
            containers.WEBHOOK_REGISTRATIONS.name,
            partition_key=tenant_id,
            filters=[Filter("integrationId", "==", integration_id)],
            order_by="createdAt",
            limit=len(VERIFIERS),
        )
        return [WebhookRegistration.model_validate(document) for document in page.items]

    def get(self, tenant_id: str, integration_id: str, registration_id: str) -> WebhookRegistration:
        document = self._store.get(
            containers.WEBHOOK_REGISTRATIONS.name, tenant_id, registration_id
        )
        if document is None or document.get("integrationId") != integration_id:
            raise NotFoundError(
                f"webhook registration {registration_id!r} not found for integration "
                f"{integration_id!r}",
                resource=f"webhook_registrations/{registration_id}",
            )
        return WebhookRegistration.model_validate(document)

    def delete(self, tenant_id: str, integration_id: str, registration_id: str) -> None:
        """Secrets first, then the document: a failure half-way leaves a registration that
        authenticates nothing and a DELETE that can simply be repeated."""
        registration = self.get(tenant_id, integration_id, registration_id)
        for name in (
            secret_name(tenant_id, integration_id, registration.provider),
            pending_secret_name(tenant_id, integration_id, registration.provider),
        ):
            self._secrets.delete(name)
        self._store.delete(containers.WEBHOOK_REGISTRATIONS.name, tenant_id, registration.id)
        self._on_change(integration_id, registration.provider)

    def activate(
        self, tenant_id: str, integration_id: str, registration_id: str
    ) -> tuple[WebhookRegistration, str]:
        """Make the verification token of a Notion handshake the active secret and return it,
        once, for the admin to paste into Notion. Unsigned handshakes can be sent by anyone
        who knows the URL, which is why a person confirms this step."""
        registration = self.get(tenant_id, integration_id, registration_id)
        if registration.pending_secret_name is None:
            raise ConflictError(
                f"webhook registration {registration.id} has no pending verification token "
                f"to activate ({registration.provider} sends none, or none has arrived yet)",
                resource=f"webhook_registrations/{registration.id}",
            )
        token = self._secrets.get(registration.pending_secret_name)
        if token is None:
            raise ConflictError(
                f"the pending verification token of webhook registration {registration.id} "
                "is gone from the secret store; have the provider send it again",
                resource=f"webhook_registrations/{registration.id}",
            )
        active = secret_name(tenant_id, integration_id, registration.provider)
        self._secrets.set(active, token)
        self._secrets.delete(registration.pending_secret_name)

        def activated(current: WebhookRegistration) -> WebhookRegistration:
            return current.model_copy(
                update={
                    "secret_name": active,
                    "pending_secret_name": None,
                    "pending_secret_received_at": None,
                    "updated_at": self._clock.now(),
                }
            )

        updated = self.update(tenant_id, registration.id, activated)
        self._on_change(integration_id, registration.provider)
        return updated, token

    # -- receiver --------------------------------------------------------------------------

    def record_pending_secret(
        self, registration: WebhookRegistration, token: str, received_at: datetime
    ) -> None:
        """Keep a handshake's token as pending; it never replaces the active secret."""
        name = pending_secret_name(
            registration.tenant_id, registration.integration_id, registration.provider
        )
        self._secrets.set(name, token)

        def pending(current: WebhookRegistration) -> WebhookRegistration:
            return current.model_copy(
                update={
                    "pending_secret_name": name,
                    "pending_secret_received_at": received_at,
                    "updated_at": received_at,
                }
            )

        self.update(registration.tenant_id, registration.id, pending)
        self._on_change(registration.integration_id, registration.provider)

    def update(
        self,
        tenant_id: str,
        registration_id: str,
        change: Callable[[WebhookRegistration], WebhookRegistration],
        *,
        attempts: int = 5,
    ) -> WebhookRegistration:
        """Read-modify-write with the etag (health flushes of other instances race with it)."""
        for _ in range(attempts):
            document = self._store.get(
                containers.WEBHOOK_REGISTRATIONS.name, tenant_id, registration_id
            )
            if document is None:
                raise NotFoundError(
                    f"webhook registration {registration_id!r} not found",
                    resource=f"webhook_registrations/{registration_id}",
                )
            current = WebhookRegistration.model_validate(document)
            changed = change(current.model_copy(deep=True))
            try:
                stored = self._store.upsert(
                    containers.WEBHOOK_REGISTRATIONS.name,
                    changed.to_document(),
                    if_match=current.etag,
                )
            except ConflictError:
                continue
            return WebhookRegistration.model_validate(stored)
        raise ConflictError(
            f"webhook registration {registration_id!r} changed concurrently {attempts} times",
            resource=f"webhook_registrations/{registration_id}",
        )
