"""Providers by name: their adapters, default mappings and relationship keys.

`files` serves records in another provider's shape (`config.shape`, only `salesforce`
today), so it shares that provider's defaults and relationship keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import PermanentError
from core.models.integration import EntityMapping
from core.ports import SecretStore
from core.providers.base import ProviderAdapter, RelationshipKey
from core.providers.files import FilesProvider
from core.providers.salesforce_defaults import (
    salesforce_default_custom_transforms,
    salesforce_default_entity_mappings,
    salesforce_relationship_keys,
)

KNOWN_PROVIDERS: tuple[str, ...] = ("files", "salesforce")
PROVIDERS_WITH_ADAPTERS: tuple[str, ...] = ("files",)
FILE_SHAPES: tuple[str, ...] = ("salesforce",)


def build_provider(
    provider: str, config: Mapping[str, Any], *, secrets: SecretStore | None = None
) -> ProviderAdapter:
    """The adapter for one integration. `secrets` is where adapters that sign in read their
    credentials; the `files` provider has none."""
    if provider == "files":
        return FilesProvider(config)
    raise PermanentError(
        f"provider {provider!r} has no adapter yet (adapters: {', '.join(PROVIDERS_WITH_ADAPTERS)})",
        resource=f"providers/{provider}",
    )


def _require_salesforce_shape(provider: str, config: Mapping[str, Any] | None) -> None:
    """Every known provider's records have the Salesforce shape today; an unknown provider
    or file shape is a config error."""
    if provider == "salesforce":
        return
    if provider == "files":
        shape = (config or {}).get("shape", "salesforce")
        if shape not in FILE_SHAPES:
            raise PermanentError(
                f"files provider: config.shape {shape!r} is not one of {', '.join(FILE_SHAPES)}",
                resource="providers/files",
            )
        return
    raise PermanentError(
        f"unknown provider {provider!r} (known: {', '.join(KNOWN_PROVIDERS)})",
        resource=f"providers/{provider}",
    )


def default_entity_mappings(
    provider: str, config: Mapping[str, Any] | None = None
) -> list[EntityMapping]:
    """The mappings an integration gets when it is created without any (a fresh list)."""
    _require_salesforce_shape(provider, config)
    return salesforce_default_entity_mappings()


def default_custom_transforms(
    provider: str, config: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The `customTransforms` the default mappings name."""
    _require_salesforce_shape(provider, config)
    return salesforce_default_custom_transforms()


def relationship_keys(
    provider: str, entity_type: str, config: Mapping[str, Any] | None = None
) -> list[RelationshipKey]:
    """The foreign keys in a mapped record of `entity_type` (case-insensitive); none for an
    entity type the provider's defaults do not know."""
    _require_salesforce_shape(provider, config)
    return salesforce_relationship_keys(entity_type)
