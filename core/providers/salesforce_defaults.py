"""Default mappings for records in the Salesforce REST API shape (SOQL query results).

The shape: every record has `attributes: {type, url}` and an 18-character `Id`;
relationship fields are nested objects (`Account: {Name, Industry}`, `Owner: {Email,
Name}`, null when there is no related record); dates are `2025-03-31`, date-times
`2024-05-01T10:00:00.000+0000`; an opportunity's contact roles are a subquery
`OpportunityContactRoles: {totalSize, done, records: [{ContactId, Role, IsPrimary,
Contact: {Email}}]}`, null when there are none.

An integration created without entity mappings gets these (and the custom transforms they
name); a tenant may replace them. Date and number fields need no transform: the mapper
coerces Salesforce's formats to the shard field types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.models.integration import EntityMapping
from core.providers.base import RelationshipKey

STAGE_TO_STATUS_TRANSFORM = "salesforceStageToStatus"
WEBSITE_TO_DOMAIN_TRANSFORM = "websiteToDomain"


@dataclass(frozen=True)
class SalesforceEntity:
    entity_type: str
    shard_type_name: str
    id_prefix: str
    """The key prefix of the object's ids (`006` for Opportunity)."""
    external_id_field: str = "Id"
    modified_field: str = "LastModifiedDate"
    """What incremental syncs filter and their cursors follow."""


# Parents before children, so a sync writes accounts before what refers to them.
SALESFORCE_ENTITIES: dict[str, SalesforceEntity] = {
    entity.entity_type: entity
    for entity in (
        SalesforceEntity("Account", "Account", "001"),
        SalesforceEntity("Contact", "Contact", "003"),
        SalesforceEntity("Opportunity", "Opportunity", "006"),
        SalesforceEntity("Lead", "Lead", "00Q"),
    )
}
SALESFORCE_ENTITY_TYPES: tuple[str, ...] = tuple(SALESFORCE_ENTITIES)

SALESFORCE_RELATIONSHIP_KEYS: dict[str, tuple[RelationshipKey, ...]] = {
    "Account": (RelationshipKey("parent_account", "Account", "parentAccountId"),),
    "Contact": (RelationshipKey("account", "Account", "accountId"),),
    "Opportunity": (
        RelationshipKey("account", "Account", "accountId"),
        RelationshipKey("contact", "Contact", "contactRoles[].contactId"),
    ),
    "Lead": (
        RelationshipKey("converted_account", "Account", "convertedAccountId"),
        RelationshipKey("converted_contact", "Contact", "convertedContactId"),
        RelationshipKey("converted_opportunity", "Opportunity", "convertedOpportunityId"),
    ),
}

_CUSTOM_TRANSFORMS: tuple[dict[str, Any], ...] = (
    {
        "name": STAGE_TO_STATUS_TRANSFORM,
        "kind": "lookup",
        "description": "Salesforce's closed stages as won/lost; every other stage is open",
        "table": {"Closed Won": "won", "Closed Lost": "lost"},
        "caseInsensitive": True,
        "unmatched": "default",
        "default": "open",
    },
    {
        "name": WEBSITE_TO_DOMAIN_TRANSFORM,
        "kind": "regexReplace",
        "description": "The host of a website without scheme, www., port or path",
        "pattern": r"^\s*(?:(?:[a-z][a-z0-9+.-]*:)?//)?(?:[^@/\s]*@)?(?:www\d*\.)?([^/:?#\s]+).*$",
        "replacement": r"\1",
        "ignoreCase": True,
    },
)


def _field(source: str, target: str, **settings: Any) -> dict[str, Any]:
    return {"source": source, "target": target, **settings}


_AUDIT_FIELDS = (
    _field("CreatedDate", "createdDate"),
    _field("LastModifiedDate", "lastModifiedDate"),
    _field("LastActivityDate", "lastActivityDate"),
)

_FIELD_MAPPINGS: dict[str, tuple[dict[str, Any], ...]] = {
    "Account": (
        _field("Name", "name", required=True),
        _field("Website", "domain", transform=WEBSITE_TO_DOMAIN_TRANSFORM),
        _field("Website", "website"),
        _field("Industry", "industry"),
        _field("Type", "type"),
        _field("AnnualRevenue", "annualRevenue"),
        _field("NumberOfEmployees", "employeeCount"),
        _field("Phone", "phone"),
        _field("BillingCity", "billingCity"),
        _field("BillingCountry", "billingCountry"),
        _field("OwnerId", "ownerId"),
        _field("ParentId", "parentAccountId"),
        _field("Description", "description"),
        *_AUDIT_FIELDS,
    ),
    "Contact": (
        _field("FirstName", "firstName"),
        _field("LastName", "lastName"),
        _field("Name", "name"),
        _field("Email", "email"),
        _field("Phone", "phone"),
        _field("Title", "title"),
        _field("Department", "department"),
        _field("AccountId", "accountId"),
        _field("OwnerId", "ownerId"),
        *_AUDIT_FIELDS,
    ),
    "Opportunity": (
        _field("Name", "name", required=True),
        _field("AccountId", "accountId"),
        _field("Account.Name", "accountName"),
        _field("Account.Industry", "industry"),
        _field("OwnerId", "ownerId"),
        _field("Owner.Email", "ownerEmail"),
        _field("Owner.Name", "ownerName"),
        _field("StageName", "stage"),
        _field("StageName", "status", transform=STAGE_TO_STATUS_TRANSFORM),
        _field("Amount", "amount"),
        _field("CurrencyIsoCode", "currency"),
        _field("Probability", "probability"),
        _field("CloseDate", "closeDate"),
        _field("Type", "type"),
        _field("LeadSource", "leadSource"),
        _field("ForecastCategoryName", "forecastCategory"),
        _field("NextStep", "nextStep"),
        _field("Description", "description"),
        _field(
            "OpportunityContactRoles.records",
            "contactRoles",
            transform="mapObjects",
            transformOptions={
                "fields": {
                    "contactId": "ContactId",
                    "role": "Role",
                    "isPrimary": "IsPrimary",
                    "email": "Contact.Email",
                }
            },
            default=[],
        ),
        _field("CreatedDate", "createdDate"),
        _field("LastModifiedDate", "lastModifiedDate"),
        _field("LastStageChangeDate", "lastStageChangeDate"),
        _field("LastActivityDate", "lastActivityDate"),
    ),
    "Lead": (
        _field("FirstName", "firstName"),
        _field("LastName", "lastName"),
        _field("Name", "name"),
        _field("Email", "email"),
        _field("Phone", "phone"),
        _field("Company", "company"),
        _field("Title", "title"),
        _field("Industry", "industry"),
        _field("Status", "status"),
        _field("LeadSource", "leadSource"),
        _field("Rating", "rating"),
        _field("OwnerId", "ownerId"),
        _field("IsConverted", "isConverted"),
        _field("ConvertedDate", "convertedAt"),
        _field("ConvertedAccountId", "convertedAccountId"),
        _field("ConvertedContactId", "convertedContactId"),
        _field("ConvertedOpportunityId", "convertedOpportunityId"),
        *_AUDIT_FIELDS,
    ),
}


def salesforce_default_entity_mappings() -> list[EntityMapping]:
    """A fresh list each call: callers may change what they get."""
    return [
        EntityMapping.model_validate(
            {
                "entityType": entity.entity_type,
                "shardTypeName": entity.shard_type_name,
                "fieldMappings": [dict(field) for field in _FIELD_MAPPINGS[entity.entity_type]],
            }
        )
        for entity in SALESFORCE_ENTITIES.values()
    ]


def salesforce_default_custom_transforms() -> list[dict[str, Any]]:
    """The custom transforms the default mappings name, as `customTransforms` entries."""
    return [dict(transform) for transform in _CUSTOM_TRANSFORMS]


def parse_salesforce_datetime(value: str, *, field: str) -> datetime:
    """A Salesforce date-time (`2024-05-01T10:00:00.000+0000`, also `...Z` or `+00:00`) as
    an aware UTC instant; naive text is taken as UTC. ValueError naming `field` otherwise."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{field} {value!r} is not a date-time (e.g. 2024-05-01T10:00:00.000+0000)"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_cursor(moment: datetime) -> str:
    """An instant as ISO 8601 UTC with milliseconds (`2024-05-01T10:00:00.000Z`), or
    microseconds when it has them, so that no precision is lost between syncs."""
    timespec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def salesforce_entity(entity_type: str) -> SalesforceEntity | None:
    """The entity by name, case-insensitively (providers and webhooks disagree on case)."""
    key = entity_type.strip().casefold()
    for entity in SALESFORCE_ENTITIES.values():
        if entity.entity_type.casefold() == key:
            return entity
    return None


def salesforce_relationship_keys(entity_type: str) -> list[RelationshipKey]:
    entity = salesforce_entity(entity_type)
    return [] if entity is None else list(SALESFORCE_RELATIONSHIP_KEYS[entity.entity_type])
