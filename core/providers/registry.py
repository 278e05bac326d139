"""Providers by name: their adapters, default mappings and relationship keys.

Each CRM provider has its own record shape and defaults (`salesforce_defaults`,
`hubspot_defaults`, `dynamics_defaults`). `files` serves records in another provider's
shape (`config.shape`, only `salesforce` today), so it shares that provider's defaults and
relationship keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.errors import PermanentError
from core.models.integration import EntityMapping, TenantIntegration
from core.ports import SecretStore
from core.providers.base import ProviderAdapter, RelationshipKey
from core.providers.dynamics import build_dynamics
from core.providers.dynamics_defaults import (
    dynamics_default_custom_transforms,
    dynamics_default_entity_mappings,
    dynamics_relationship_keys,
)
from core.providers.files import FilesProvider
from core.providers.hubspot import build_hubspot
from core.providers.hubspot_defaults import (
    hubspot_default_custom_transforms,
    hubspot_default_entity_mappings,
    hubspot_relationship_keys,
)
from core.providers.ratelimit import SYSTEM_TIMING, Timing
from core.providers.salesforce import build_salesforce
from core.providers.salesforce_defaults import (
    salesforce_default_custom_transforms,
    salesforce_default_entity_mappings,
    salesforce_relationship_keys,
)

KNOWN_PROVIDERS: tuple[str, ...] = ("files", "salesforce", "hubspot", "dynamics")
PROVIDERS_WITH_ADAPTERS: tuple[str, ...] = KNOWN_PROVIDERS
FILE_SHAPES: tuple[str, ...] = ("salesforce",)
_CRM_BUILDERS: dict[str, Callable[..., ProviderAdapter]] = {
    "salesforce": build_salesforce,
    "hubspot": build_hubspot,
    "dynamics": build_dynamics,
}
_DEFAULT_MAPPINGS: dict[str, Callable[[], list[EntityMapping]]] = {
    "salesforce": salesforce_default_entity_mappings,
    "hubspot": hubspot_default_entity_mappings,
    "dynamics": dynamics_default_entity_mappings,
}
_DEFAULT_TRANSFORMS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "salesforce": salesforce_default_custom_transforms,
    "hubspot": hubspot_default_custom_transforms,
    "dynamics": dynamics_default_custom_transforms,
}
_RELATIONSHIP_KEYS: dict[str, Callable[[str], list[RelationshipKey]]] = {
    "salesforce": salesforce_relationship_keys,
    "hubspot": hubspot_relationship_keys,
    "dynamics": dynamics_relationship_keys,
}


def build_provider(
    provider: str,
    config: Mapping[str, Any],
    *,
    secrets: SecretStore | None = None,
    integration: TenantIntegration | None = None,
    timing: Timing = SYSTEM_TIMING,
) -> ProviderAdapter:
    """The adapter for one integration. `config` is its `connection.settings`; the CRM
    adapters sign in with the secrets `integration.connection.secretRefs` names, read from
    `secrets`. Without an integration (a config check) they validate `config` and refuse
    to call the provider."""
    if provider == "files":
        return FilesProvider(config)
    builder = _CRM_BUILDERS.get(provider)
    if builder is None:
        raise PermanentError(
            f"unknown provider {provider!r} (known: {', '.join(KNOWN_PROVIDERS)})",
            resource=f"providers/{provider}",
        )
    return builder(config, secrets=secrets, integration=integration, timing=timing)


def _shape(provider: str, config: Mapping[str, Any] | None) -> str:
    """Whose record shape the provider's records have: its own, or for `files` the
    configured one; an unknown provider or file shape is a config error."""
    if provider in _DEFAULT_MAPPINGS:
        return provider
    if provider == "files":
        shape = (config or {}).get("shape", "salesforce")
        if shape not in FILE_SHAPES:
            raise PermanentError(
                f"files provider: config.shape {shape!r} is not one of {', '.join(FILE_SHAPES)}",
                resource="providers/files",
            )
        return str(shape)
    raise PermanentError(
        f"unknown provider {provider!r} (known: {', '.join(KNOWN_PROVIDERS)})",
        resource=f"providers/{provider}",
    )


def default_entity_mappings(
    provider: str, config: Mapping[str, Any] | None = None
) -> list[EntityMapping]:
    """The mappings an integration gets when it is created without any (a fresh list)."""
    return _DEFAULT_MAPPINGS[_shape(provider, config)]()


def default_custom_transforms(
    provider: str, config: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The `customTransforms` the default mappings name."""
    return _DEFAULT_TRANSFORMS[_shape(provider, config)]()


def relationship_keys(
    provider: str, entity_type: str, config: Mapping[str, Any] | None = None
) -> list[RelationshipKey]:
    """The foreign keys in a mapped record of `entity_type` (case-insensitive); none for an
    entity type the provider's defaults do not know."""
    return _RELATIONSHIP_KEYS[_shape(provider, config)](entity_type)
