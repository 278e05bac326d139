import threading
from datetime import UTC, date, datetime
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from core.mapping import (
    FieldSpec,
    MappingConfigError,
    compile_mapping,
    registry_for_integration,
    validate_mapping_config,
)
from core.mapping.mapper import MappingResult


class Opportunity(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    external_id: str
    name: str
    amount: float | None = None
    stage: Literal["open", "won", "lost"] | None = None
    close_date: date | None = None
    probability: float | None = Field(None, ge=0, le=100)
    account_name: str | None = None
    industry: str | None = None
    owner_email: str | None = None
    last_modified_date: datetime | None = None
    is_won: bool = False
    lead_source: str | None = None
    line_total: float | None = None
    currency: str = "USD"
    quantity: int


class OpenOpportunity(Opportunity):
    model_config = ConfigDict(extra="allow")


SALESFORCE_RECORD: dict[str, Any] = {
    "attributes": {"type": "Opportunity"},
    "Id": "006A000001",
    "Name": "  Acme renewal ",
    "Amount": 12500.456,
    "StageName": "Closed Won",
    "CloseDate": "2024-03-31",
    "Probability": 100,
    "Account": {"Name": "Acme", "Industry": "Technology"},
    "Owner": {"Email": "Jane.Doe@Example.com"},
    "LastModifiedDate": "2024-01-15T10:30:00.000+0000",
    "IsWon": True,
    "LeadSource": None,
    "Lines": [{"Total": "1,200.50"}, {"Total": "99"}],
    "Quantity": "3",
}

SPECS: list[dict[str, Any]] = [
    {"source": "Id", "target": "externalId", "required": True},
    {"source": "Name", "target": "name", "transform": "trim", "required": True},
    {
        "source": "Amount",
        "target": "amount",
        "transform": "roundToDecimals",
        "transformOptions": {"decimals": 2},
    },
    {
        "source": "StageName",
        "target": "stage",
        "valueMap": {"Closed Won": "won", "Closed Lost": "lost", "Prospecting": "open"},
    },
    {"source": "CloseDate", "target": "closeDate"},
    {"source": "Probability", "target": "probability"},
    {"source": "Account.Name", "target": "accountName"},
    {"source": "Account.Industry", "target": "industry"},
    {"source": "Owner.Email", "target": "ownerEmail", "transform": "toLowerCase"},
    {"source": "LastModifiedDate", "target": "last_modified_date"},
    {"source": "IsWon", "target": "isWon"},
    {
        "source": "LeadSource",
        "target": "leadSource",
        "transform": "nullToDefault",
        "transformOptions": {"default": "Unknown"},
    },
    {"source": "Lines[0].Total", "target": "lineTotal"},
    {"source": "Quantity", "target": "quantity"},
]

EXPECTED = {
    "externalId": "006A000001",
    "name": "Acme renewal",
    "amount": 12500.46,
    "stage": "won",
    "closeDate": date(2024, 3, 31),
    "probability": 100.0,
    "accountName": "Acme",
    "industry": "Technology",
    "ownerEmail": "jane.doe@example.com",
    "lastModifiedDate": datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
    "isWon": True,
    "leadSource": "Unknown",
    "lineTotal": 1200.5,
    "quantity": 3,
}


def map_one(
    specs: list[dict[str, Any]], record: dict[str, Any], model: type[BaseModel] = Opportunity
) -> MappingResult:
    return compile_mapping(specs, model).map(record)


def test_a_salesforce_opportunity_maps_completely() -> None:
    result = compile_mapping(SPECS, Opportunity).map(SALESFORCE_RECORD)
    assert result.errors == []
    assert result.warnings == []
    assert result.ok
    assert result.data == EXPECTED
    assert (
        Opportunity.model_validate(result.data).model_dump(by_alias=True, exclude_unset=True)
        == EXPECTED
    )


def test_specs_may_be_field_spec_models_or_camel_case_dicts() -> None:
    specs = [FieldSpec.model_validate(spec) for spec in SPECS]
    assert compile_mapping(specs, Opportunity).map(SALESFORCE_RECORD).data == EXPECTED
    snake = [FieldSpec(source="Quantity", target="quantity", transform_options={})]
    assert compile_mapping(snake, Opportunity).target_keys == ("quantity",)


def test_a_hubspot_deal_maps_epoch_millisecond_strings_and_nested_properties() -> None:
    specs = [
        {"source": "id", "target": "externalId"},
        {"source": "properties.dealname", "target": "name"},
        {"source": "properties.amount", "target": "amount"},
        {"source": "properties.closedate", "target": "closeDate"},
        {"source": "properties.hs_lastmodifieddate", "target": "lastModifiedDate"},
        {"source": "properties.hs_is_closed_won", "target": "isWon"},
        {"source": "properties.num_items", "target": "quantity"},
    ]
    record = {
        "id": "123",
        "properties": {
            "dealname": "Big deal",
            "amount": "2500.75",
            "closedate": "1711843200000",
            "hs_lastmodifieddate": "1705314600000",
            "hs_is_closed_won": "false",
            "num_items": "2",
        },
    }
    result = map_one(specs, record)
    assert result.errors == []
    assert result.data == {
        "externalId": "123",
        "name": "Big deal",
        "amount": 2500.75,
        "closeDate": date(2024, 3, 31),
        "lastModifiedDate": datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
        "isWon": False,
        "quantity": 2,
    }


# --- partial mapping and errors ----------------------------------------------------------


def test_failing_fields_are_reported_and_the_rest_is_kept() -> None:
    record = {
        **SALESFORCE_RECORD,
        "Amount": "lots",
        "CloseDate": "31/03/2024",
        "Probability": 250,
        "StageName": "Negotiation",
        "Owner": "someone",
        "Quantity": "2.5",
    }
    result = compile_mapping(SPECS, Opportunity).map(record)
    errors = {error.field: error for error in result.errors}
    assert set(errors) == {
        "amount",
        "closeDate",
        "probability",
        "stage",
        "ownerEmail",
        "quantity",
    }
    assert not result.ok
    assert errors["amount"].value == "lots"
    assert errors["amount"].source == "Amount"
    assert "not a number" in errors["amount"].reason
    assert errors["closeDate"].value == "31/03/2024"
    assert "is not a date-time" in errors["closeDate"].reason
    assert errors["probability"].value == 250
    assert "between 0 and 100" in errors["probability"].reason
    assert errors["stage"].value == "Negotiation"
    assert "is not one of 'open', 'won', 'lost'" in errors["stage"].reason
    assert errors["ownerEmail"].value == "someone"
    assert "expected an object at 'Owner'" in errors["ownerEmail"].reason
    assert "not a whole number" in errors["quantity"].reason
    kept = {key: value for key, value in EXPECTED.items() if key not in errors}
    assert result.data == kept


def test_error_text_names_field_source_value_and_reason() -> None:
    result = map_one([{"source": "Amount", "target": "amount"}], {"Amount": "lots"})
    (error,) = result.errors
    text = str(error)
    assert "amount" in text
    assert "'Amount'" in text
    assert "'lots'" in text
    assert "not a number" in text


def test_a_transform_failure_reports_the_source_value() -> None:
    result = map_one([{"source": "Name", "target": "name", "transform": "trim"}], {"Name": ["a"]})
    (error,) = result.errors
    assert error.field == "name"
    assert error.value == ["a"]
    assert "trim expects text" in error.reason


# --- missing, null, defaults, required ---------------------------------------------------


def test_required_fields_that_are_missing_or_null_are_errors() -> None:
    specs = [{"source": "Id", "target": "externalId", "required": True}]
    missing = map_one(specs, {})
    assert [(e.field, e.reason) for e in missing.errors] == [
        ("externalId", "required field: the source is missing from the record")
    ]
    null = map_one(specs, {"Id": None})
    assert [(e.field, e.reason) for e in null.errors] == [
        ("externalId", "required field: no value")
    ]
    nested = map_one(
        [{"source": "Account.Name", "target": "accountName", "required": True}], {"Account": None}
    )
    assert nested.errors[0].field == "accountName"


def test_defaults_fill_missing_and_null_values_after_coercion() -> None:
    specs = [
        {"source": "Probability", "target": "probability", "default": "10"},
        {"source": "Quantity", "target": "quantity", "default": 1},
    ]
    assert map_one(specs, {}).data == {"probability": 10.0, "quantity": 1}
    assert map_one(specs, {"Probability": None, "Quantity": None}).data == {
        "probability": 10.0,
        "quantity": 1,
    }
    assert map_one(specs, {"Probability": 5, "Quantity": 7}).data == {
        "probability": 5.0,
        "quantity": 7,
    }


def test_a_default_satisfies_required() -> None:
    specs = [{"source": "Id", "target": "externalId", "required": True, "default": "none"}]
    result = map_one(specs, {})
    assert result.errors == []
    assert result.data == {"externalId": "none"}


def test_a_mapping_without_source_sets_a_constant() -> None:
    result = map_one([{"target": "currency", "default": "EUR"}], {"anything": 1})
    assert result.data == {"currency": "EUR"}


def test_missing_sources_are_left_out_with_a_warning_and_nulls_are_kept() -> None:
    specs = [
        {"source": "Account.Industry", "target": "industry"},
        {"source": "Amount", "target": "amount"},
    ]
    result = map_one(specs, {"Account": {}, "Amount": None})
    assert result.data == {"amount": None}
    assert result.errors == []
    (warning,) = result.warnings
    assert warning.field == "industry"
    assert warning.source == "Account.Industry"
    assert "missing from the record" in warning.reason


def test_a_null_part_way_down_the_path_is_a_null() -> None:
    result = map_one([{"source": "Account.Name", "target": "accountName"}], {"Account": None})
    assert result.data == {"accountName": None}
    assert result.warnings == []


def test_null_for_a_non_nullable_field_uses_the_model_default_or_is_an_error() -> None:
    with_default = map_one([{"source": "Cur", "target": "currency"}], {"Cur": None})
    assert with_default.data == {}
    assert "left to the model default" in with_default.warnings[0].reason
    without_default = map_one([{"source": "Qty", "target": "quantity"}], {"Qty": None})
    assert without_default.data == {}
    (error,) = without_default.errors
    assert error.field == "quantity"
    assert "null for a field that needs a whole number" in error.reason


def test_null_to_default_applies_to_missing_sources_too() -> None:
    specs = [
        {
            "source": "LeadSource",
            "target": "leadSource",
            "transform": "nullToDefault",
            "transformOptions": {"default": "Unknown"},
        }
    ]
    assert map_one(specs, {}).data == {"leadSource": "Unknown"}


# --- value maps --------------------------------------------------------------------------


def test_value_maps_replace_known_values_and_pass_others_to_the_type_check() -> None:
    specs = [
        {"source": "Stage", "target": "stage", "valueMap": {"Closed Won": "won", "Open": "open"}}
    ]
    assert map_one(specs, {"Stage": "Closed Won"}).data == {"stage": "won"}
    assert map_one(specs, {"Stage": "lost"}).data == {"stage": "lost"}
    unknown = map_one(specs, {"Stage": "Weird"})
    assert unknown.data == {}
    assert unknown.errors[0].value == "Weird"


def test_value_maps_look_up_booleans_and_numbers_by_their_json_text() -> None:
    specs = [
        {
            "source": "Won",
            "target": "stage",
            "valueMap": {"true": "won", "false": "open", "0": "lost"},
        }
    ]
    assert map_one(specs, {"Won": True}).data == {"stage": "won"}
    assert map_one(specs, {"Won": False}).data == {"stage": "open"}
    assert map_one(specs, {"Won": 0}).data == {"stage": "lost"}


def test_value_maps_apply_after_the_transform() -> None:
    specs = [
        {
            "source": "Stage",
            "target": "stage",
            "transform": "toLowerCase",
            "valueMap": {"closed won": "won"},
        }
    ]
    assert map_one(specs, {"Stage": "CLOSED WON"}).data == {"stage": "won"}


def test_a_value_map_to_null_with_required_is_an_error() -> None:
    specs = [{"source": "Id", "target": "externalId", "required": True, "valueMap": {"N/A": None}}]
    result = map_one(specs, {"Id": "N/A"})
    assert result.errors[0].reason == "required field: no value"


# --- custom transforms -------------------------------------------------------------------


def test_custom_transforms_are_used_by_short_or_prefixed_name() -> None:
    registry = registry_for_integration(
        "int-1",
        [
            {
                "kind": "lookup",
                "name": "salesforceStageToInternal",
                "table": {"Closed Won": "won", "Closed Lost": "lost"},
                "unmatched": "default",
                "default": "open",
            },
            {
                "kind": "expression",
                "name": "toPercent",
                "expression": "value * 100 if value <= 1 else value",
            },
        ],
    )
    specs = [
        {"source": "StageName", "target": "stage", "transform": "salesforceStageToInternal"},
        {"source": "Probability", "target": "probability", "transform": "int-1:toPercent"},
    ]
    mapping = compile_mapping(specs, Opportunity, registry)
    assert mapping.map({"StageName": "Closed Lost", "Probability": 0.4}).data == {
        "stage": "lost",
        "probability": 40.0,
    }
    assert mapping.map({"StageName": "Qualify", "Probability": 55}).data == {
        "stage": "open",
        "probability": 55.0,
    }


# --- config validation -------------------------------------------------------------------


def test_validate_mapping_config_reports_every_problem() -> None:
    specs: list[Any] = [
        {"source": "Id", "target": "externalId"},
        {"source": "X", "target": "notAField"},
        {"source": "Y", "target": "externalId"},
        {"source": "Z", "target": "amount", "transform": "noSuchTransform"},
        {
            "source": "Z",
            "target": "probability",
            "transform": "roundToDecimals",
            "transformOptions": {"decimals": 99},
        },
        {"source": "a..b", "target": "name"},
        {"source": "S", "target": "stage", "valueMap": {"Closed Won": "Won"}},
        {"source": "D", "target": "closeDate", "default": "someday"},
        {"target": "industry"},
        {"source": "Q", "target": "quantity", "transformOptions": {"decimals": 2}},
        {"source": "E", "target": "ownerEmail", "unexpected": True},
    ]
    problems = validate_mapping_config(specs, Opportunity)
    reasons = {(problem.field, problem.reason.split(":")[0]) for problem in problems}
    assert ("notAField", "unknown target field for Opportunity") in reasons
    assert any(field == "externalId" and "mapped twice" in reason for field, reason in reasons)
    assert ("amount", "unknown transform 'noSuchTransform'") in reasons
    assert any(field == "probability" and "invalid options" in reason for field, reason in reasons)
    assert any(
        field == "name" and "empty key" in problem.reason
        for problem in problems
        for field in [problem.field]
    )
    assert any(p.field == "stage" and "valueMap['Closed Won']" in p.reason for p in problems)
    assert any(p.field == "closeDate" and p.reason.startswith("default:") for p in problems)
    assert any(p.field == "industry" and "source path or a default" in p.reason for p in problems)
    assert any(p.field == "quantity" and "without a transform" in p.reason for p in problems)
    assert any(p.field == "ownerEmail" and "unexpected" in p.reason for p in problems)
    assert len(problems) == 10
    with pytest.raises(MappingConfigError) as caught:
        compile_mapping(specs, Opportunity)
    assert caught.value.errors == problems


def test_a_valid_config_has_no_problems() -> None:
    assert validate_mapping_config(SPECS, Opportunity) == []


def test_targets_may_be_field_names_or_aliases_but_not_case_variants() -> None:
    assert validate_mapping_config([{"source": "A", "target": "owner_email"}], Opportunity) == []
    (problem,) = validate_mapping_config([{"source": "A", "target": "OwnerEmail"}], Opportunity)
    assert "only by case" in problem.reason


def test_models_that_keep_extra_fields_take_custom_targets_unchanged() -> None:
    specs = [
        {"source": "Custom__c", "target": "regionCode"},
        {"source": "Id", "target": "externalId"},
    ]
    assert validate_mapping_config(specs, Opportunity)[0].field == "regionCode"
    result = compile_mapping(specs, OpenOpportunity).map({"Custom__c": {"code": "EMEA"}, "Id": "1"})
    assert result.data == {"regionCode": {"code": "EMEA"}, "externalId": "1"}


# --- concurrency and reuse ---------------------------------------------------------------


def test_a_compiled_mapping_is_reusable_and_safe_across_threads() -> None:
    mapping = compile_mapping(SPECS, Opportunity)
    failures: list[Any] = []

    def work(offset: int) -> None:
        for number in range(200):
            record = {**SALESFORCE_RECORD, "Id": f"{offset}-{number}", "Quantity": number}
            result = mapping.map(record)
            if result.data != {**EXPECTED, "externalId": f"{offset}-{number}", "quantity": number}:
                failures.append(result)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_mapping_does_not_modify_the_record() -> None:
    record = {**SALESFORCE_RECORD, "Account": dict(SALESFORCE_RECORD["Account"])}
    snapshot = repr(record)
    compile_mapping(SPECS, Opportunity).map(record)
    assert repr(record) == snapshot


@pytest.mark.parametrize(
    "record",
    [
        {"Id": 7, "Name": "x", "Quantity": 1.0},
        {"Id": "7", "Name": "x", "Quantity": True},
        {"Id": "7", "Name": "x", "Quantity": "7"},
        {"Id": "7", "Name": 5, "Quantity": 1},
        "not a record",
        {"Id": None, "Name": None, "Quantity": None},
    ],
)
def test_the_fast_paths_agree_with_the_general_path(record: Any) -> None:
    """Fields without transforms take a shortcut; a field with both a (no-op) transform and
    an (empty) value map takes the general path. Both must give the same data and problems."""
    direct = [
        {"source": "Id", "target": "externalId"},
        {"source": "Name", "target": "name"},
        {"source": "Quantity", "target": "quantity"},
    ]
    general = [
        {
            **spec,
            "transform": "nullToDefault",
            "transformOptions": {"default": None},
            "valueMap": {},
        }
        for spec in direct
    ]
    fast = compile_mapping(direct, Opportunity).map(record)
    slow = compile_mapping(general, Opportunity).map(record)
    assert fast.data == slow.data
    assert [(e.field, e.reason) for e in fast.errors] == [(e.field, e.reason) for e in slow.errors]


ODD_VALUES: list[Any] = [
    "",
    "1" * 5000,
    10**400,
    1e308,
    float("nan"),
    b"bytes",
    {"a": 1},
    [1, {"a": 1}],
    object(),
    True,
]


@pytest.mark.parametrize("odd", ODD_VALUES, ids=lambda value: type(value).__name__)
def test_any_value_in_any_field_gives_data_or_field_errors_never_an_exception(odd: Any) -> None:
    mapping = compile_mapping(SPECS, Opportunity)
    for spec in SPECS:
        path = spec["source"]
        top = path.split(".")[0].split("[")[0]
        result = mapping.map({**SALESFORCE_RECORD, top: odd})
        target = spec["target"]
        key = {"last_modified_date": "lastModifiedDate"}.get(target, target)
        problems = [problem.field for problem in [*result.errors, *result.warnings]]
        assert key in result.data or key in problems
