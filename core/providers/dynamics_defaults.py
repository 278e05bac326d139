"""Default mappings for records in the Dynamics 365 (Dataverse) Web API shape.

The shape (Dataverse Web API, "Query data", "Lookup properties", "Formatted values"):
columns by logical name (`name`, `revenue`, `modifiedon: "2024-05-01T10:00:00Z"`),
lookups as `_{name}_value` holding the related row's GUID, and, because the adapter asks
for `odata.include-annotations="*"`, annotations next to them:
`"_parentaccountid_value@OData.Community.Display.V1.FormattedValue": "Contoso"` (a
mapping reads such a key as `["key@annotation"]`). Choice columns are integers
(`statecode: 1`) with their label as the formatted value. Entity types are table
logical names: `account`, `contact`, `opportunity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.models.integration import EntityMapping
from core.providers.base import RelationshipKey
from core.providers.salesforce_defaults import (
    WEBSITE_TO_DOMAIN_TRANSFORM,
    salesforce_default_custom_transforms,
)

STATE_TO_STATUS_TRANSFORM = "dynamicsStateToStatus"
FORMATTED = "@OData.Community.Display.V1.FormattedValue"


@dataclass(frozen=True)
class DataverseTable:
    entity_type: str
    """The table's logical name."""
    entity_set: str
    """The Web API collection (`accounts`)."""
    primary_id: str
    shard_type_name: str


# Parents before children.
DATAVERSE_TABLES: dict[str, DataverseTable] = {
    table.entity_type: table
    for table in (
        DataverseTable("account", "accounts", "accountid", "Account"),
        DataverseTable("contact", "contacts", "contactid", "Contact"),
        DataverseTable("opportunity", "opportunities", "opportunityid", "Opportunity"),
        DataverseTable("lead", "leads", "leadid", "Lead"),
    )
}
DYNAMICS_ENTITY_TYPES: tuple[str, ...] = ("account", "contact", "opportunity")
MODIFIED_COLUMN = "modifiedon"

DYNAMICS_RELATIONSHIP_KEYS: dict[str, tuple[RelationshipKey, ...]] = {
    "account": (RelationshipKey("parent_account", "account", "parentAccountId"),),
    "contact": (RelationshipKey("account", "account", "accountId"),),
    "opportunity": (RelationshipKey("account", "account", "accountId"),),
}


def _field(source: str, target: str, **settings: Any) -> dict[str, Any]:
    return {"source": source, "target": target, **settings}


def _formatted(column: str, target: str) -> dict[str, Any]:
    return _field(f'["{column}{FORMATTED}"]', target)


_AUDIT_FIELDS = (_field("createdon", "createdDate"), _field("modifiedon", "lastModifiedDate"))

_FIELD_MAPPINGS: dict[str, tuple[dict[str, Any], ...]] = {
    "account": (
        _field("name", "name", required=True),
        _field("websiteurl", "domain", transform=WEBSITE_TO_DOMAIN_TRANSFORM),
        _field("websiteurl", "website"),
        _formatted("industrycode", "industry"),
        _field("revenue", "annualRevenue"),
        _field("numberofemployees", "employeeCount"),
        _field("telephone1", "phone"),
        _field("address1_city", "billingCity"),
        _field("address1_country", "billingCountry"),
        _field("_ownerid_value", "ownerId"),
        _field("_parentaccountid_value", "parentAccountId"),
        _field("description", "description"),
        *_AUDIT_FIELDS,
    ),
    "contact": (
        _field("firstname", "firstName"),
        _field("lastname", "lastName"),
        _field("fullname", "name"),
        _field("emailaddress1", "email"),
        _field("telephone1", "phone"),
        _field("jobtitle", "title"),
        _field("department", "department"),
        _field("_parentcustomerid_value", "accountId"),
        _field("_ownerid_value", "ownerId"),
        *_AUDIT_FIELDS,
    ),
    "opportunity": (
        _field("name", "name", required=True),
        _field("_parentaccountid_value", "accountId"),
        _formatted("_parentaccountid_value", "accountName"),
        _field("_ownerid_value", "ownerId"),
        _formatted("_ownerid_value", "ownerName"),
        _field("stepname", "stage"),
        _field("statecode", "status", transform=STATE_TO_STATUS_TRANSFORM),
        _field("estimatedvalue", "amount"),
        _field("closeprobability", "probability"),
        _field("estimatedclosedate", "closeDate"),
        _field("description", "description"),
        *_AUDIT_FIELDS,
    ),
}

_STATE_TO_STATUS: dict[str, Any] = {
    "name": STATE_TO_STATUS_TRANSFORM,
    "kind": "lookup",
    "description": "An opportunity's statecode: 0 open, 1 won, 2 lost",
    "table": {"0": "open", "1": "won", "2": "lost"},
    "unmatched": "error",
}


def dataverse_table(entity_type: str) -> DataverseTable | None:
    return DATAVERSE_TABLES.get(entity_type.strip().casefold())


def dynamics_default_entity_mappings() -> list[EntityMapping]:
    return [
        EntityMapping.model_validate(
            {
                "entityType": entity_type,
                "shardTypeName": DATAVERSE_TABLES[entity_type].shard_type_name,
                "fieldMappings": [dict(field) for field in _FIELD_MAPPINGS[entity_type]],
            }
        )
        for entity_type in DYNAMICS_ENTITY_TYPES
    ]


def dynamics_default_custom_transforms() -> list[dict[str, Any]]:
    website = [
        transform
        for transform in salesforce_default_custom_transforms()
        if transform["name"] == WEBSITE_TO_DOMAIN_TRANSFORM
    ]
    return [*website, dict(_STATE_TO_STATUS)]


def dynamics_relationship_keys(entity_type: str) -> list[RelationshipKey]:
    return list(DYNAMICS_RELATIONSHIP_KEYS.get(entity_type.strip().casefold(), ()))
