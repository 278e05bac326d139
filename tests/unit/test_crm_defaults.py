"""The registry's CRM providers: default mappings that compile and map the providers'
record shapes, relationship keys, and adapters built from integration config."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import AuthError, PermanentError
from core.integrations.repository import compile_entity_mapping
from core.models.integration import TenantIntegration
from core.models.shards import structured_data_model
from core.providers.base import RelationshipKey
from core.providers.registry import (
    KNOWN_PROVIDERS,
    PROVIDERS_WITH_ADAPTERS,
    build_provider,
    default_custom_transforms,
    default_entity_mappings,
    relationship_keys,
)
from tests.unit.provider_support import MemorySecrets, crm_integration

FORMATTED = "@OData.Community.Display.V1.FormattedValue"

# One record per entity type in each provider's documented shape (HubSpot CRM v3 objects
# with associations; Dataverse Web API rows with lookups and formatted-value annotations).
SAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "hubspot": {
        "companies": {
            "id": "201",
            "properties": {
                "name": "Acme",
                "domain": "acme.com",
                "numberofemployees": "250",
                "annualrevenue": "1000000",
                "hs_parent_company_id": "200",
                "hs_lastmodifieddate": "2024-05-01T10:00:00.000Z",
            },
        },
        "contacts": {
            "id": "301",
            "properties": {
                "firstname": "Ada",
                "lastname": "Lovelace",
                "email": "ada@acme.com",
                "associatedcompanyid": "201",
                "lastmodifieddate": "2024-05-01T10:00:00.000Z",
            },
        },
        "deals": {
            "id": "512",
            "properties": {
                "dealname": "Acme renewal",
                "amount": "1500.50",
                "dealstage": "closedwon",
                "closedate": "2024-06-30T00:00:00Z",
                "deal_currency_code": "EUR",
                "hs_lastmodifieddate": "2024-05-01T10:00:00.000Z",
            },
            "associations": {
                "companies": {"results": [{"id": "201", "type": "deal_to_company"}]},
                "contacts": {
                    "results": [
                        {"id": "301", "type": "deal_to_contact"},
                        {"id": "302", "type": "deal_to_contact"},
                    ]
                },
            },
        },
    },
    "dynamics": {
        "account": {
            "accountid": "a1",
            "name": "Contoso",
            "websiteurl": "https://www.contoso.com/about",
            "industrycode": 3,
            f"industrycode{FORMATTED}": "Consulting",
            "numberofemployees": 250,
            "_parentaccountid_value": "a0",
            "modifiedon": "2024-05-01T10:00:00Z",
        },
        "contact": {
            "contactid": "c1",
            "firstname": "Ada",
            "lastname": "Lovelace",
            "fullname": "Ada Lovelace",
            "emailaddress1": "ada@contoso.com",
            "_parentcustomerid_value": "a1",
        },
        "opportunity": {
            "opportunityid": "o1",
            "name": "Contoso renewal",
            "statecode": 1,
            f"statecode{FORMATTED}": "Won",
            "estimatedvalue": 1000.0,
            "estimatedclosedate": "2024-06-30",
            "closeprobability": 80,
            "_parentaccountid_value": "a1",
            f"_parentaccountid_value{FORMATTED}": "Contoso",
            "stepname": "3-Propose",
            "modifiedon": "2024-05-01T10:00:00Z",
        },
    },
}

EXPECTED: dict[str, dict[str, dict[str, Any]]] = {
    "hubspot": {
        "companies": {
            "name": "Acme",
            "domain": "acme.com",
            "employeeCount": 250,
            "annualRevenue": 1000000.0,
            "parentAccountId": "200",
        },
        "contacts": {"firstName": "Ada", "email": "ada@acme.com", "accountId": "201"},
        "deals": {
            "name": "Acme renewal",
            "amount": 1500.5,
            "status": "won",
            "currency": "EUR",
            "closeDate": "2024-06-30",
            "accountId": "201",
        },
    },
    "dynamics": {
        "account": {
            "name": "Contoso",
            "domain": "contoso.com",
            "industry": "Consulting",
            "employeeCount": 250,
            "parentAccountId": "a0",
        },
        "contact": {"name": "Ada Lovelace", "email": "ada@contoso.com", "accountId": "a1"},
        "opportunity": {
            "name": "Contoso renewal",
            "status": "won",
            "amount": 1000.0,
            "probability": 80.0,
            "closeDate": "2024-06-30",
            "accountId": "a1",
            "accountName": "Contoso",
            "stage": "3-Propose",
        },
    },
}

RELATED: dict[str, dict[str, list[tuple[str, str, list[str]]]]] = {
    "hubspot": {
        "companies": [("parent_account", "companies", ["200"])],
        "contacts": [("account", "companies", ["201"])],
        "deals": [("account", "companies", ["201"]), ("contact", "contacts", ["301", "302"])],
    },
    "dynamics": {
        "account": [("parent_account", "account", ["a0"])],
        "contact": [("account", "account", ["a1"])],
        "opportunity": [("account", "account", ["a1"])],
    },
}


def _integration(provider: str) -> TenantIntegration:
    return TenantIntegration.model_validate(
        {
            "id": "crm-1",
            "tenantId": "t1",
            "integrationTypeId": provider,
            "name": provider,
            "connection": {"authType": "oauth2"},
            "syncConfig": {
                "entityMappings": [
                    mapping.model_dump(by_alias=True)
                    for mapping in default_entity_mappings(provider)
                ]
            },
            "customTransforms": default_custom_transforms(provider),
        }
    )


@pytest.mark.parametrize("provider", ["hubspot", "dynamics"])
def test_default_mappings_compile_and_map_the_providers_records(provider: str) -> None:
    integration = _integration(provider)
    mapped_types = [mapping.entity_type for mapping in integration.sync_config.entity_mappings]
    assert mapped_types == list(SAMPLES[provider])
    for mapping in integration.sync_config.entity_mappings:
        result = compile_entity_mapping(integration, mapping).map(
            SAMPLES[provider][mapping.entity_type]
        )
        assert result.errors == [], (mapping.entity_type, result.errors)
        data = structured_data_model(mapping.shard_type_name).model_validate(result.data).to_data()
        expected = EXPECTED[provider][mapping.entity_type]
        assert {key: data.get(key) for key in expected} == expected
        keys = relationship_keys(provider, mapping.entity_type)
        assert [
            (key.relationship_type, key.target_entity_type, key.external_ids(data)) for key in keys
        ] == RELATED[provider][mapping.entity_type]


def test_relationship_keys_name_entity_types_the_provider_syncs() -> None:
    assert relationship_keys("hubspot", "DEALS")[0] == RelationshipKey(
        "account", "companies", "accountId"
    )
    assert relationship_keys("dynamics", "lead") == []
    assert relationship_keys("hubspot", "tickets") == []


def test_an_unmatched_dynamics_state_is_a_mapping_error() -> None:
    integration = _integration("dynamics")
    mapping = integration.entity_mapping("opportunity")
    result = compile_entity_mapping(integration, mapping).map({"name": "x", "statecode": 7})
    assert [error.field for error in result.errors] == ["status"]


def test_every_known_provider_has_an_adapter() -> None:
    assert KNOWN_PROVIDERS == ("files", "salesforce", "hubspot", "dynamics")
    assert PROVIDERS_WITH_ADAPTERS == KNOWN_PROVIDERS


@pytest.mark.parametrize("provider", ["salesforce", "hubspot", "dynamics"])
def test_without_an_integration_config_is_checked_and_calls_are_refused(provider: str) -> None:
    with pytest.raises(
        PermanentError, match=rf"^{provider} provider: config.pageSiz: Extra inputs"
    ):
        build_provider(provider, {"pageSiz": 10})
    adapter = build_provider(provider, {})
    with pytest.raises(AuthError, match="built without an integration"):
        list(adapter.fetch(adapter.entity_types()[0]))


def test_an_integration_without_credentials_is_refused_at_the_first_call() -> None:
    integration = crm_integration("hubspot", refs=())
    adapter = build_provider("hubspot", {}, secrets=MemorySecrets(), integration=integration)
    with pytest.raises(
        AuthError, match=r"connection\.secretRefs needs refreshToken, accessToken or apiKey"
    ):
        list(adapter.fetch("deals"))


def test_oauth_needs_a_client_id_and_an_api_url() -> None:
    integration = crm_integration("salesforce", instance_url="https://acme.my.salesforce.com")
    with pytest.raises(PermanentError, match=r"config\.clientId"):
        build_provider("salesforce", {}, secrets=MemorySecrets(), integration=integration)
    integration = crm_integration("dynamics", settings={"clientId": "app"})
    with pytest.raises(PermanentError, match=r"set connection\.instanceUrl"):
        build_provider(
            "dynamics", {"clientId": "app"}, secrets=MemorySecrets(), integration=integration
        )


def test_entity_types_default_per_provider_and_can_be_configured() -> None:
    assert build_provider("hubspot", {}).entity_types() == ["companies", "contacts", "deals"]
    assert build_provider("dynamics", {}).entity_types() == ["account", "contact", "opportunity"]
    assert build_provider("salesforce", {}).entity_types() == [
        "Account",
        "Contact",
        "Opportunity",
        "Lead",
    ]
    assert build_provider("hubspot", {"entityTypes": ["companies", "tickets"]}).entity_types() == [
        "companies",
        "tickets",
    ]
