"""Default mappings for records in the HubSpot CRM v3 shape.

The shape (HubSpot CRM API v3 "Objects", "Search"): `{id, properties: {name: text},
createdAt, updatedAt, archived, associations: {companies: {results: [{id, type}]}}}`.
Every property value is text (`"amount": "1500.50"`, `"closedate":
"2024-06-30T00:00:00Z"`); the mapper coerces it to the shard field's type. Entity types
are the objects' API names: `companies`, `contacts`, `deals`.

Deal status comes from the default pipeline's stage ids (`closedwon`, `closedlost`); a
portal with custom pipelines replaces `hubspotStageToStatus` with its own stage ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.models.integration import EntityMapping
from core.providers.base import RelationshipKey

STAGE_TO_STATUS_TRANSFORM = "hubspotStageToStatus"


@dataclass(frozen=True)
class HubSpotObject:
    entity_type: str
    shard_type_name: str
    modified_property: str
    """What the search API filters and sorts on (contacts keep the older name)."""
    associations: tuple[str, ...] = ()
    """Object types whose associated ids are read with each record."""


# Parents before children.
HUBSPOT_OBJECTS: dict[str, HubSpotObject] = {
    item.entity_type: item
    for item in (
        HubSpotObject("companies", "Account", "hs_lastmodifieddate"),
        HubSpotObject("contacts", "Contact", "lastmodifieddate", ("companies",)),
        HubSpotObject("deals", "Opportunity", "hs_lastmodifieddate", ("companies", "contacts")),
    )
}
HUBSPOT_ENTITY_TYPES: tuple[str, ...] = tuple(HUBSPOT_OBJECTS)
DEFAULT_MODIFIED_PROPERTY = "hs_lastmodifieddate"

HUBSPOT_RELATIONSHIP_KEYS: dict[str, tuple[RelationshipKey, ...]] = {
    "companies": (RelationshipKey("parent_account", "companies", "parentAccountId"),),
    "contacts": (RelationshipKey("account", "companies", "accountId"),),
    "deals": (
        RelationshipKey("account", "companies", "accountId"),
        RelationshipKey("contact", "contacts", "contactRoles[].contactId"),
    ),
}


def _field(source: str, target: str, **settings: Any) -> dict[str, Any]:
    return {"source": source, "target": target, **settings}


def _property(name: str, target: str, **settings: Any) -> dict[str, Any]:
    return _field(f"properties.{name}", target, **settings)


_FIELD_MAPPINGS: dict[str, tuple[dict[str, Any], ...]] = {
    "companies": (
        _property("name", "name", required=True),
        _property("domain", "domain"),
        _property("website", "website"),
        _property("industry", "industry"),
        _property("type", "type"),
        _property("annualrevenue", "annualRevenue"),
        _property("numberofemployees", "employeeCount"),
        _property("phone", "phone"),
        _property("city", "billingCity"),
        _property("country", "billingCountry"),
        _property("hubspot_owner_id", "ownerId"),
        _property("hs_parent_company_id", "parentAccountId"),
        _property("description", "description"),
        _property("createdate", "createdDate"),
        _property("hs_lastmodifieddate", "lastModifiedDate"),
        _property("notes_last_updated", "lastActivityDate"),
    ),
    "contacts": (
        _property("firstname", "firstName"),
        _property("lastname", "lastName"),
        _property("email", "email"),
        _property("phone", "phone"),
        _property("jobtitle", "title"),
        _property("associatedcompanyid", "accountId"),
        _property("hubspot_owner_id", "ownerId"),
        _property("createdate", "createdDate"),
        _property("lastmodifieddate", "lastModifiedDate"),
        _property("notes_last_updated", "lastActivityDate"),
    ),
    "deals": (
        _property("dealname", "name", required=True),
        _field("associations.companies.results[0].id", "accountId"),
        _property("hubspot_owner_id", "ownerId"),
        _property("dealstage", "stage"),
        _property("dealstage", "status", transform=STAGE_TO_STATUS_TRANSFORM),
        _property("amount", "amount"),
        _property("deal_currency_code", "currency"),
        _property("closedate", "closeDate"),
        _property("dealtype", "type"),
        _property("hs_next_step", "nextStep"),
        _property("description", "description"),
        _field(
            "associations.contacts.results",
            "contactRoles",
            transform="mapObjects",
            transformOptions={"fields": {"contactId": "id"}},
            default=[],
        ),
        _property("createdate", "createdDate"),
        _property("hs_lastmodifieddate", "lastModifiedDate"),
        _property("notes_last_updated", "lastActivityDate"),
    ),
}

_CUSTOM_TRANSFORMS: tuple[dict[str, Any], ...] = (
    {
        "name": STAGE_TO_STATUS_TRANSFORM,
        "kind": "lookup",
        "description": "The default pipeline's closed stages as won/lost; others are open",
        "table": {"closedwon": "won", "closedlost": "lost"},
        "caseInsensitive": True,
        "unmatched": "default",
        "default": "open",
    },
)


def hubspot_object(entity_type: str) -> HubSpotObject | None:
    key = entity_type.strip().casefold()
    return HUBSPOT_OBJECTS.get(key)


def hubspot_default_entity_mappings() -> list[EntityMapping]:
    return [
        EntityMapping.model_validate(
            {
                "entityType": item.entity_type,
                "shardTypeName": item.shard_type_name,
                "fieldMappings": [dict(field) for field in _FIELD_MAPPINGS[item.entity_type]],
            }
        )
        for item in HUBSPOT_OBJECTS.values()
    ]


def hubspot_default_custom_transforms() -> list[dict[str, Any]]:
    """The custom transforms the default mappings name (a company's domain is its own
    property, so no website-to-domain transform)."""
    return [dict(transform) for transform in _CUSTOM_TRANSFORMS]


def hubspot_relationship_keys(entity_type: str) -> list[RelationshipKey]:
    item = hubspot_object(entity_type)
    return [] if item is None else list(HUBSPOT_RELATIONSHIP_KEYS[item.entity_type])
