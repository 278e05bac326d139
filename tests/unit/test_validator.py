import json
from datetime import date
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from core.mapping import FieldError, ShardValidator, ValidationMode, compile_mapping
from core.mapping.validator import RECORD_FIELD


class Deal(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    name: str = Field(min_length=1)
    amount: float | None = None
    stage: Literal["open", "won", "lost"] | None = None
    close_date: date | None = None
    probability: float | None = Field(None, ge=0, le=100)

    @model_validator(mode="after")
    def _won_deals_are_certain(self) -> "Deal":
        if self.stage == "won" and self.probability not in (None, 100):
            raise ValueError("a won deal has probability 100")
        return self


class OpenDeal(Deal):
    model_config = ConfigDict(extra="allow")


SPECS: list[dict[str, Any]] = [
    {"source": "Name", "target": "name"},
    {"source": "Amount", "target": "amount"},
    {"source": "Stage", "target": "stage"},
    {"source": "CloseDate", "target": "closeDate"},
    {"source": "Probability", "target": "probability"},
]
MAPPING = compile_mapping(SPECS, Deal)
GOOD = {
    "Name": "Acme",
    "Amount": "1,000",
    "Stage": "open",
    "CloseDate": "2024-03-31",
    "Probability": 40,
}
GOOD_DATA = {
    "name": "Acme",
    "amount": 1000.0,
    "stage": "open",
    "closeDate": date(2024, 3, 31),
    "probability": 40.0,
}
BAD_AMOUNT = {**GOOD, "Amount": "lots"}


@pytest.mark.parametrize("mode", list(ValidationMode))
def test_a_clean_record_is_accepted_in_every_mode(mode: ValidationMode) -> None:
    outcome = ShardValidator(mode).validate_mapping(MAPPING.map(GOOD), Deal)
    assert outcome.accepted
    assert outcome.data == GOOD_DATA
    assert outcome.errors == []
    assert outcome.warnings == []


def test_modes_are_taken_by_name() -> None:
    assert ShardValidator("lenient").mode is ValidationMode.LENIENT
    with pytest.raises(ValueError, match="'relaxed' is not a valid ValidationMode"):
        ShardValidator("relaxed")


# --- strict ------------------------------------------------------------------------------


def test_strict_rejects_a_record_with_a_field_error() -> None:
    outcome = ShardValidator("strict").validate_mapping(MAPPING.map(BAD_AMOUNT), Deal)
    assert not outcome.accepted
    assert outcome.data == {}
    (error,) = outcome.errors
    assert (error.field, error.value, error.source) == ("amount", "lots", "Amount")


def test_strict_keeps_a_record_whose_optional_source_is_absent_with_a_warning() -> None:
    record = {key: value for key, value in GOOD.items() if key != "CloseDate"}
    result = MAPPING.map(record)
    assert result.errors == []
    outcome = ShardValidator("strict").validate_mapping(result, Deal)
    assert outcome.accepted
    assert "closeDate" not in outcome.data
    assert [warning.field for warning in outcome.warnings] == ["closeDate"]
    assert outcome.errors == []


def test_strict_rejects_what_only_the_whole_model_can_see() -> None:
    outcome = ShardValidator("strict").validate(
        {"name": "Acme", "stage": "won", "probability": 50.0}, Deal
    )
    assert not outcome.accepted
    (error,) = outcome.errors
    assert error.field == RECORD_FIELD
    assert "a won deal has probability 100" in error.reason


def test_strict_rejects_unknown_keys_for_a_closed_model() -> None:
    outcome = ShardValidator("strict").validate({"name": "Acme", "colour": "red"}, Deal)
    assert not outcome.accepted
    assert outcome.errors == [FieldError(field="colour", value="red", reason="not a field of Deal")]


# --- lenient -----------------------------------------------------------------------------


def test_lenient_drops_bad_fields_with_warnings_and_keeps_the_record() -> None:
    outcome = ShardValidator("lenient").validate_mapping(MAPPING.map(BAD_AMOUNT), Deal)
    assert outcome.accepted
    assert outcome.data == {key: value for key, value in GOOD_DATA.items() if key != "amount"}
    assert outcome.errors == []
    (warning,) = outcome.warnings
    assert warning.field == "amount"
    assert warning.value == "lots"
    assert warning.reason.endswith("field dropped")


def test_lenient_drops_fields_the_model_refuses() -> None:
    outcome = ShardValidator("lenient").validate(
        {"name": "Acme", "probability": 400, "colour": "red"}, Deal
    )
    assert outcome.accepted
    assert outcome.data == {"name": "Acme"}
    fields = {warning.field: warning for warning in outcome.warnings}
    assert set(fields) == {"probability", "colour"}
    assert fields["probability"].value == 400
    assert fields["probability"].reason.endswith("field dropped")


def test_lenient_still_rejects_a_record_that_cannot_be_valid() -> None:
    missing_name = ShardValidator("lenient").validate({"amount": 5.0}, Deal)
    assert not missing_name.accepted
    assert missing_name.data == {}
    assert [error.field for error in missing_name.errors] == ["name"]
    bad_name = ShardValidator("lenient").validate({"name": "", "amount": 5.0}, Deal)
    assert not bad_name.accepted
    (error,) = bad_name.errors
    assert (error.field, error.value) == ("name", "")
    assert "at least 1 character" in error.reason
    model_rule = ShardValidator("lenient").validate(
        {"name": "Acme", "stage": "won", "probability": 50.0}, Deal
    )
    assert not model_rule.accepted
    assert model_rule.errors[0].field == RECORD_FIELD


def test_lenient_keeps_mapping_warnings() -> None:
    record = {key: value for key, value in GOOD.items() if key != "Amount"}
    outcome = ShardValidator("lenient").validate_mapping(MAPPING.map(record), Deal)
    assert outcome.accepted
    assert [warning.field for warning in outcome.warnings] == ["amount"]


# --- audit -------------------------------------------------------------------------------


def test_audit_keeps_everything_and_records_every_problem() -> None:
    record = {**BAD_AMOUNT, "Probability": 400}
    outcome = ShardValidator("audit").validate_mapping(MAPPING.map(record), Deal)
    assert outcome.accepted
    assert outcome.data == {**GOOD_DATA, "amount": "lots", "probability": 400}
    assert {error.field for error in outcome.errors} == {"amount", "probability"}
    assert len(outcome.errors) == 2


def test_audit_records_model_level_and_unknown_key_problems_without_rejecting() -> None:
    data = {"name": "Acme", "stage": "won", "probability": 50.0, "colour": "red"}
    outcome = ShardValidator("audit").validate(data, Deal)
    assert outcome.accepted
    assert outcome.data == data
    assert [error.field for error in outcome.errors] == [RECORD_FIELD]
    assert [warning.field for warning in outcome.warnings] == ["colour"]


# --- models that keep custom fields ------------------------------------------------------


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_custom_fields_are_fine_on_models_that_keep_extra_fields(mode: str) -> None:
    outcome = ShardValidator(mode).validate({"name": "Acme", "regionCode": "EMEA"}, OpenDeal)
    assert outcome.accepted
    assert outcome.data == {"name": "Acme", "regionCode": "EMEA"}
    assert outcome.warnings == []


@pytest.mark.parametrize("mode", ["strict", "lenient", "audit"])
def test_json_data_mode_returns_the_same_data_in_json_form(mode: str) -> None:
    from pydantic_core import to_jsonable_python

    result = MAPPING.map(GOOD)
    python = ShardValidator(mode).validate_mapping(result, Deal)
    as_json = ShardValidator(mode, json_data=True).validate_mapping(MAPPING.map(GOOD), Deal)
    assert as_json.accepted == python.accepted
    assert as_json.data == to_jsonable_python(python.data)
    assert json.loads(json.dumps(as_json.data)) == as_json.data
