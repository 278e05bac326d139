"""The default Salesforce mappings, applied the way the CRM mapping processor applies them
(a `TenantIntegration` built with the provider defaults, `compile_entity_mapping`), and
the provider registry that hands them out."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from core.errors import PermanentError
from core.integrations.repository import compile_entity_mapping
from core.mapping import CompiledMapping
from core.models.integration import ConnectionConfig, SyncConfig, TenantIntegration
from core.models.shards import declared_fields, structured_data_model
from core.providers.base import RelationshipKey
from core.providers.registry import (
    KNOWN_PROVIDERS,
    build_provider,
    default_custom_transforms,
    default_entity_mappings,
    relationship_keys,
)
from core.providers.salesforce_defaults import (
    SALESFORCE_ENTITIES,
    SALESFORCE_ENTITY_TYPES,
    SALESFORCE_RELATIONSHIP_KEYS,
    format_cursor,
    parse_salesforce_datetime,
    salesforce_default_custom_transforms,
    salesforce_default_entity_mappings,
)

OPPORTUNITY: dict[str, Any] = {
    "attributes": {"type": "Opportunity", "url": "/services/data/v60.0/sobjects/Opportunity/0065g00000yfA7uAAE"},
    "Id": "0065g00000yfA7uAAE",
    "Name": "Acme - Platform Expansion",
    "AccountId": "0015g000007G7dRAAS",
    "Account": {"attributes": {"type": "Account", "url": "/x"}, "Name": "Acme Corp", "Industry": "Technology"},
    "OwnerId": "0055g000001QOvDAAW",
    "Owner": {"attributes": {"type": "User", "url": "/y"}, "Name": "Noah Adams", "Email": "noah@seller.com"},
    "StageName": "Negotiation/Review",
    "Probability": 90.0,
    "Amount": 125000.0,
    "CurrencyIsoCode": "EUR",
    "CloseDate": "2025-03-31",
    "Type": "New Customer",
    "LeadSource": "Web",
    "ForecastCategoryName": "Commit",
    "NextStep": "Legal redlines",
    "Description": "Three regions",
    "IsClosed": False,
    "IsWon": False,
    "CreatedDate": "2024-11-02T09:15:00.000+0000",
    "LastModifiedDate": "2025-03-01T18:30:00.000+0200",
    "LastStageChangeDate": "2025-02-20T10:00:00.000+0000",
    "LastActivityDate": "2025-02-27",
    "OpportunityContactRoles": {
        "totalSize": 2,
        "done": True,
        "records": [
            {"attributes": {"type": "OpportunityContactRole", "url": "/z"}, "Id": "00K5g000000AbCdEAK",
             "ContactId": "0035g00000kzqbNAAQ", "Role": "Economic Buyer", "IsPrimary": True,
             "Contact": {"attributes": {"type": "Contact", "url": "/c"}, "Email": "jane@acme.com"}},
            {"attributes": {"type": "OpportunityContactRole", "url": "/z"}, "Id": "00K5g000000AbCeEAK",
             "ContactId": "0035g00000kzqbOAAQ", "Role": "Evaluator", "IsPrimary": False,
             "Contact": {"attributes": {"type": "Contact", "url": "/c"}, "Email": "li@acme.com"}},
        ],
    },
}  # fmt: skip
ACCOUNT: dict[str, Any] = {
    "attributes": {"type": "Account", "url": "/services/data/v60.0/sobjects/Account/0015g000007G7dRAAS"},
    "Id": "0015g000007G7dRAAS",
    "Name": "Acme Corp",
    "Website": "https://www.acme.com/en-us/about",
    "Industry": "Technology",
    "Type": "Customer - Direct",
    "AnnualRevenue": 52000000.0,
    "NumberOfEmployees": 240,
    "Phone": "+1 415 555 0132",
    "BillingCity": "San Francisco",
    "BillingCountry": "United States",
    "OwnerId": "0055g000001QOvDAAW",
    "ParentId": None,
    "Description": None,
    "CreatedDate": "2022-01-10T08:00:00.000+0000",
    "LastModifiedDate": "2025-01-05T12:00:00.000+0000",
    "LastActivityDate": "2025-01-04",
}  # fmt: skip
CONTACT: dict[str, Any] = {
    "attributes": {"type": "Contact", "url": "/services/data/v60.0/sobjects/Contact/0035g00000kzqbNAAQ"},
    "Id": "0035g00000kzqbNAAQ",
    "FirstName": "Jane",
    "LastName": "Doe",
    "Name": "Jane Doe",
    "Email": "jane@acme.com",
    "Phone": "+1 415 555 0100",
    "Title": "Chief Financial Officer",
    "Department": "Finance",
    "AccountId": "0015g000007G7dRAAS",
    "OwnerId": "0055g000001QOvDAAW",
    "CreatedDate": "2023-04-01T10:00:00.000+0000",
    "LastModifiedDate": "2024-12-01T10:00:00.000+0000",
    "LastActivityDate": None,
}  # fmt: skip
LEAD: dict[str, Any] = {
    "attributes": {"type": "Lead", "url": "/services/data/v60.0/sobjects/Lead/00Q5g00000AbCdEEAV"},
    "Id": "00Q5g00000AbCdEEAV",
    "FirstName": "Omar",
    "LastName": "Reyes",
    "Name": "Omar Reyes",
    "Email": "omar@globex.io",
    "Phone": None,
    "Company": "Globex",
    "Title": "IT Director",
    "Industry": "Energy",
    "Status": "Closed - Converted",
    "LeadSource": "Trade Show",
    "Rating": "Hot",
    "OwnerId": "0055g000001QOvDAAW",
    "IsConverted": True,
    "ConvertedDate": "2025-02-01",
    "ConvertedAccountId": "0015g000007G7dRAAS",
    "ConvertedContactId": "0035g00000kzqbNAAQ",
    "ConvertedOpportunityId": "0065g00000yfA7uAAE",
    "CreatedDate": "2025-01-10T08:00:00.000+0000",
    "LastModifiedDate": "2025-02-01T09:00:00.000+0000",
    "LastActivityDate": "2025-01-20",
}  # fmt: skip
SAMPLES = {"Opportunity": OPPORTUNITY, "Account": ACCOUNT, "Contact": CONTACT, "Lead": LEAD}


def default_integration(provider: str = "files") -> TenantIntegration:
    return TenantIntegration(
        id="crm-1",
        tenant_id="tenant-a",
        integration_type_id=provider,
        name="CRM",
        connection=ConnectionConfig(auth_type="custom", settings={"path": "data"}),
        sync_config=SyncConfig(entity_mappings=default_entity_mappings(provider)),
        custom_transforms=default_custom_transforms(provider),
    )


@pytest.fixture(scope="module")
def compiled() -> dict[str, CompiledMapping]:
    integration = default_integration()
    return {
        mapping.entity_type: compile_entity_mapping(integration, mapping)
        for mapping in integration.sync_config.entity_mappings
    }


def map_clean(
    compiled: dict[str, CompiledMapping], entity_type: str, record: dict[str, Any]
) -> dict[str, Any]:
    """Map a record that must map without a single error or warning, and check that the
    result is valid structured data of the entity's shard type."""
    result = compiled[entity_type].map(record)
    assert result.errors == []
    assert result.warnings == []
    model = structured_data_model(SALESFORCE_ENTITIES[entity_type].shard_type_name)
    model.model_validate(result.data)
    return result.data


def test_there_is_one_default_mapping_per_entity_type_in_sync_order() -> None:
    assert SALESFORCE_ENTITY_TYPES == ("Account", "Contact", "Opportunity", "Lead")
    mappings = salesforce_default_entity_mappings()
    assert [mapping.entity_type for mapping in mappings] == list(SALESFORCE_ENTITY_TYPES)
    assert [mapping.shard_type_name for mapping in mappings] == list(SALESFORCE_ENTITY_TYPES)
    for entity in SALESFORCE_ENTITIES.values():
        assert (entity.external_id_field, entity.modified_field) == ("Id", "LastModifiedDate")
    assert {entity.id_prefix for entity in SALESFORCE_ENTITIES.values()} == {
        "001",
        "003",
        "006",
        "00Q",
    }


@pytest.mark.parametrize("entity_type", SALESFORCE_ENTITY_TYPES)
def test_every_sample_record_maps_cleanly(
    compiled: dict[str, CompiledMapping], entity_type: str
) -> None:
    data = map_clean(compiled, entity_type, SAMPLES[entity_type])
    mapping = next(m for m in salesforce_default_entity_mappings() if m.entity_type == entity_type)
    assert set(data) == {field.target for field in mapping.field_mappings}


def test_opportunity_fields(compiled: dict[str, CompiledMapping]) -> None:
    data = map_clean(compiled, "Opportunity", OPPORTUNITY)
    assert data["name"] == "Acme - Platform Expansion"
    assert (data["accountId"], data["accountName"], data["industry"]) == (
        "0015g000007G7dRAAS",
        "Acme Corp",
        "Technology",
    )
    assert (data["ownerId"], data["ownerEmail"], data["ownerName"]) == (
        "0055g000001QOvDAAW",
        "noah@seller.com",
        "Noah Adams",
    )
    assert (data["stage"], data["status"], data["probability"], data["forecastCategory"]) == (
        "Negotiation/Review",
        "open",
        90.0,
        "Commit",
    )
    assert (data["amount"], data["currency"]) == (125000.0, "EUR")
    assert data["closeDate"] == date(2025, 3, 31)
    assert data["createdDate"] == datetime(2024, 11, 2, 9, 15, tzinfo=UTC)
    assert data["lastModifiedDate"] == datetime(2025, 3, 1, 16, 30, tzinfo=UTC)
    assert data["lastStageChangeDate"] == datetime(2025, 2, 20, 10, tzinfo=UTC)
    assert data["lastActivityDate"] == datetime(2025, 2, 27, tzinfo=UTC)
    roles = [role.model_dump(by_alias=True) for role in data["contactRoles"]]
    assert roles == [
        {"contactId": "0035g00000kzqbNAAQ", "email": "jane@acme.com", "role": "Economic Buyer", "isPrimary": True},
        {"contactId": "0035g00000kzqbOAAQ", "email": "li@acme.com", "role": "Evaluator", "isPrimary": False},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("stage", "status"),
    [
        ("Closed Won", "won"),
        ("Closed Lost", "lost"),
        ("closed won", "won"),
        ("Prospecting", "open"),
        ("Negotiation/Review", "open"),
        ("A tenant's own stage", "open"),
    ],
)
def test_status_follows_the_stage(
    compiled: dict[str, CompiledMapping], stage: str, status: str
) -> None:
    assert (
        map_clean(compiled, "Opportunity", OPPORTUNITY | {"StageName": stage})["status"] == status
    )


def test_a_stage_of_null_leaves_stage_and_status_null(compiled: dict[str, CompiledMapping]) -> None:
    data = map_clean(compiled, "Opportunity", OPPORTUNITY | {"StageName": None})
    assert (data["stage"], data["status"]) == (None, None)


def test_an_opportunity_without_contact_roles_or_relationships_maps_cleanly(
    compiled: dict[str, CompiledMapping],
) -> None:
    bare = OPPORTUNITY | {
        "OpportunityContactRoles": None,
        "Account": None,
        "AccountId": None,
        "Owner": None,
    }
    data = map_clean(compiled, "Opportunity", bare)
    assert data["contactRoles"] == []
    assert (data["accountName"], data["industry"], data["ownerEmail"]) == (None, None, None)


def test_a_missing_name_is_an_error_naming_the_field(compiled: dict[str, CompiledMapping]) -> None:
    record = {key: value for key, value in OPPORTUNITY.items() if key != "Name"}
    result = compiled["Opportunity"].map(record)
    assert [(error.field, error.source) for error in result.errors] == [("name", "Name")]
    assert "required" in result.errors[0].reason


def test_a_field_the_org_does_not_have_is_left_out_with_a_warning(
    compiled: dict[str, CompiledMapping],
) -> None:
    """Single-currency orgs have no CurrencyIsoCode: a warning, never an error."""
    record = {key: value for key, value in OPPORTUNITY.items() if key != "CurrencyIsoCode"}
    result = compiled["Opportunity"].map(record)
    assert result.errors == []
    assert [warning.field for warning in result.warnings] == ["currency"]
    assert "currency" not in result.data


@pytest.mark.parametrize(
    ("website", "domain"),
    [
        ("https://www.acme.com/en-us/about", "acme.com"),
        ("http://acme.com", "acme.com"),
        ("https://acme.co.uk/", "acme.co.uk"),
        ("www.acme.io", "acme.io"),
        ("acme.de", "acme.de"),
        ("acme.com:8443/portal", "acme.com"),
        ("HTTPS://WWW.Acme.com", "Acme.com"),
        ("https://www2.acme.com?ref=x", "acme.com"),
        ("//shop.acme.com#top", "shop.acme.com"),
        ("  https://www.acme.com  ", "acme.com"),
    ],
)
def test_account_domain_is_the_website_host(
    compiled: dict[str, CompiledMapping], website: str, domain: str
) -> None:
    data = map_clean(compiled, "Account", ACCOUNT | {"Website": website})
    assert (data["domain"], data["website"]) == (domain, website)


def test_account_and_contact_and_lead_fields(compiled: dict[str, CompiledMapping]) -> None:
    account = map_clean(compiled, "Account", ACCOUNT)
    assert (account["domain"], account["employeeCount"], account["annualRevenue"]) == (
        "acme.com",
        240,
        52000000.0,
    )
    assert (account["billingCity"], account["billingCountry"], account["parentAccountId"]) == (
        "San Francisco",
        "United States",
        None,
    )
    contact = map_clean(compiled, "Contact", CONTACT)
    assert (contact["email"], contact["accountId"], contact["department"]) == (
        "jane@acme.com",
        "0015g000007G7dRAAS",
        "Finance",
    )
    lead = map_clean(compiled, "Lead", LEAD)
    assert (lead["isConverted"], lead["convertedAt"]) == (True, datetime(2025, 2, 1, tzinfo=UTC))
    assert lead["convertedOpportunityId"] == "0065g00000yfA7uAAE"
    assert (lead["company"], lead["status"], lead["rating"]) == (
        "Globex",
        "Closed - Converted",
        "Hot",
    )


def test_text_only_values_as_a_csv_export_has_them_map_cleanly(
    compiled: dict[str, CompiledMapping],
) -> None:
    account = ACCOUNT | {"AnnualRevenue": "52000000", "NumberOfEmployees": "240"}
    assert map_clean(compiled, "Account", account)["employeeCount"] == 240
    opportunity = OPPORTUNITY | {
        "Amount": "125000.50",
        "Probability": "90",
        "OpportunityContactRoles": None,
    }
    assert map_clean(compiled, "Opportunity", opportunity)["amount"] == 125000.5
    lead = map_clean(compiled, "Lead", LEAD | {"IsConverted": "false"})
    assert lead["isConverted"] is False


def test_the_defaults_are_fresh_copies() -> None:
    first = salesforce_default_entity_mappings()
    first[0].field_mappings.clear()
    assert salesforce_default_entity_mappings()[0].field_mappings
    transforms = salesforce_default_custom_transforms()
    transforms[0]["table"] = {}
    assert salesforce_default_custom_transforms()[0]["table"]


def test_relationship_keys_name_declared_fields_and_known_entity_types() -> None:
    for entity_type, keys in SALESFORCE_RELATIONSHIP_KEYS.items():
        fields = declared_fields(
            structured_data_model(SALESFORCE_ENTITIES[entity_type].shard_type_name)
        )
        for key in keys:
            assert key.target_entity_type in SALESFORCE_ENTITY_TYPES
            assert key.field_path.partition("[].")[0] in fields, key


def test_relationship_keys_by_provider_and_entity_type() -> None:
    expected = [
        RelationshipKey("account", "Account", "accountId"),
        RelationshipKey("contact", "Contact", "contactRoles[].contactId"),
    ]
    assert relationship_keys("files", "Opportunity") == expected
    assert relationship_keys("salesforce", "opportunity") == expected
    assert relationship_keys("files", "Contact") == [("account", "Account", "accountId")]
    assert relationship_keys("files", "Task") == []
    with pytest.raises(PermanentError, match="unknown provider 'zoho'"):
        relationship_keys("zoho", "deals")


def test_relationship_external_ids_are_read_from_the_json_form_of_mapped_data(
    compiled: dict[str, CompiledMapping],
) -> None:
    mapped = compiled["Opportunity"].map(OPPORTUNITY).data
    data = structured_data_model("Opportunity").model_validate(mapped).to_data()
    account, contact = relationship_keys("files", "Opportunity")
    assert account.external_ids(data) == ["0015g000007G7dRAAS"]
    assert contact.external_ids(data) == ["0035g00000kzqbNAAQ", "0035g00000kzqbOAAQ"]
    messy = {
        "accountId": "  ",
        "contactRoles": [{"contactId": "003A"}, {"contactId": "003A"}, {"role": "x"}, "junk"],
    }
    assert account.external_ids(messy) == []
    assert contact.external_ids(messy) == ["003A"]
    assert contact.external_ids({}) == []


def test_registry_hands_out_the_salesforce_defaults_for_both_providers() -> None:
    assert {"files", "salesforce"} <= set(KNOWN_PROVIDERS)
    for provider in ("files", "salesforce"):
        assert default_entity_mappings(provider) == salesforce_default_entity_mappings()
        assert default_custom_transforms(provider) == salesforce_default_custom_transforms()
        default_integration(provider)
    assert default_entity_mappings("files", {"path": "x", "shape": "salesforce"})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: default_entity_mappings("zoho"), "unknown provider 'zoho'"),
        (lambda: default_custom_transforms("pipedrive"), "unknown provider 'pipedrive'"),
        (lambda: default_entity_mappings("files", {"shape": "hubspot"}), "config.shape 'hubspot'"),
        (lambda: build_provider("zoho", {}), "unknown provider 'zoho'"),
        (lambda: build_provider("salesforce", {"pageSize": 5}), "config.pageSize"),
    ],
)
def test_registry_refuses_what_it_does_not_have(call: Any, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        call()


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2024-05-01T10:00:00.000+0000", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T12:00:00.000+0200", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00.250+00:00", datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ],
)
def test_salesforce_datetimes_parse_to_utc_instants(text: str, instant: datetime) -> None:
    parsed = parse_salesforce_datetime(text, field="LastModifiedDate")
    assert parsed == instant
    assert parsed.tzinfo is UTC


def test_a_bad_datetime_names_the_field() -> None:
    with pytest.raises(ValueError, match="LastModifiedDate 'yesterday' is not a date-time"):
        parse_salesforce_datetime("yesterday", field="LastModifiedDate")


def test_cursors_are_iso_utc_and_keep_their_precision() -> None:
    assert format_cursor(datetime(2024, 5, 1, 10, tzinfo=UTC)) == "2024-05-01T10:00:00.000Z"
    assert (
        format_cursor(datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC))
        == "2024-05-01T10:00:00.123456Z"
    )
    moment = parse_salesforce_datetime("2024-05-01T12:00:00.250+0200", field="x")
    assert parse_salesforce_datetime(format_cursor(moment), field="x") == moment
