"""Shared pieces of the provider adapter tests: a fake clock that records sleeps instead of
sleeping, an in-memory secret store that records writes, and CRM integrations pointing at
the local test server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from core.models.integration import TenantIntegration
from core.providers.ratelimit import Timing


class FakeClock:
    def __init__(self, start: datetime = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)) -> None:
        self.start = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds

    def monotonic(self) -> float:
        return self.elapsed

    def utcnow(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds

    def timing(self, jitter: float = 0.5) -> Timing:
        return Timing(
            sleep=self.sleep, monotonic=self.monotonic, utcnow=self.utcnow, jitter=lambda: jitter
        )


class MemorySecrets:
    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.writes: list[tuple[str, str]] = []

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.writes.append((name, value))
        self.values[name] = value

    def delete(self, name: str) -> None:
        self.values.pop(name, None)

    def ping(self) -> None:
        return None


def crm_integration(
    provider: str,
    *,
    refs: tuple[str, ...] = ("refreshToken",),
    settings: dict[str, Any] | None = None,
    instance_url: str | None = None,
    mappings: list[dict[str, Any]] | None = None,
    custom_transforms: list[dict[str, Any]] | None = None,
    rate_limits: dict[str, Any] | None = None,
) -> TenantIntegration:
    """A fresh integration id each call, so the process-wide token cache and limiters
    never carry state from one test to the next."""
    integration_id = f"crm-{uuid.uuid4().hex[:12]}"
    return TenantIntegration.model_validate(
        {
            "id": integration_id,
            "tenantId": "t1",
            "integrationTypeId": provider,
            "name": f"{provider} test",
            "connection": {
                "authType": "oauth2",
                "instanceUrl": instance_url,
                "secretRefs": {kind: f"t1--{integration_id}--{kind}" for kind in refs},
                "settings": settings or {},
            },
            "syncConfig": {"entityMappings": mappings or []},
            "customTransforms": custom_transforms or [],
            "rateLimits": rate_limits,
        }
    )


def secret_name(integration: TenantIntegration, kind: str) -> str:
    return integration.connection.secret_refs[kind]
