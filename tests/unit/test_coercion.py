import contextlib
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal

import pytest
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.mapping.coercion import (
    CoercionError,
    NumberFormat,
    build_field_coercion,
    to_bool,
    to_date,
    to_datetime,
    to_decimal,
    to_float,
    to_int,
    to_str,
)

JAN_15 = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-15T10:30:00.000+0000", JAN_15),  # Salesforce
        ("2024-01-15T10:30:00Z", JAN_15),
        ("2024-01-15T10:30:00.000Z", JAN_15),  # HubSpot v3
        ("2024-01-15T12:30:00+02:00", JAN_15),
        ("2024-01-15T10:30:00", JAN_15),  # naive: UTC
        ("2024-01-15 10:30", JAN_15),
        (" 2024-01-15T10:30:00Z ", JAN_15),
        ("1705314600000", JAN_15),  # HubSpot epoch-ms string
        ("1705314600", JAN_15),
        (1705314600000, JAN_15),
        (1705314600, JAN_15),
        (1705314600.0, JAN_15),
        (JAN_15, JAN_15),
        (datetime(2024, 1, 15, 10, 30), JAN_15),
        (date(2024, 1, 15), datetime(2024, 1, 15, tzinfo=UTC)),
        ("2024-01-15", datetime(2024, 1, 15, tzinfo=UTC)),
    ],
)
def test_to_datetime_accepts_iso_and_epoch_forms_and_is_always_aware(
    value: Any, expected: datetime
) -> None:
    result = to_datetime(value)
    assert result == expected
    assert result.tzinfo is not None


def test_to_datetime_keeps_the_source_offset() -> None:
    result = to_datetime("2024-01-15T12:30:00+02:00")
    assert result.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("15/01/2024", "is not a date-time"),
        ("yesterday", "is not a date-time"),
        ("", "is not a date-time"),
        ("2024-13-45T00:00:00Z", "is not a date-time"),
        (True, "expected a date-time, got boolean"),
        ({"date": "2024-01-15"}, "expected a date-time, got object"),
        (float("nan"), "is not a date-time"),
        ("99999999999999999999999", "out of the supported date range"),
    ],
)
def test_to_datetime_refuses_unparsable_values_with_a_reason(value: Any, reason: str) -> None:
    with pytest.raises(CoercionError) as caught:
        to_datetime(value)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-31", date(2024, 3, 31)),
        (date(2024, 3, 31), date(2024, 3, 31)),
        ("2024-03-31T00:00:00Z", date(2024, 3, 31)),
        ("2024-03-31T22:30:00-05:00", date(2024, 4, 1)),  # the UTC day
        (datetime(2024, 3, 31, 23, 0, tzinfo=timezone(timedelta(hours=2))), date(2024, 3, 31)),
        ("1711843200000", date(2024, 3, 31)),  # HubSpot date property: midnight UTC in ms
    ],
)
def test_to_date_reduces_instants_to_their_utc_day(value: Any, expected: date) -> None:
    assert to_date(value) == expected
    assert type(to_date(value)) is date


def test_to_date_refuses_non_dates() -> None:
    with pytest.raises(CoercionError, match="is not a date-time"):
        to_date("31/03/2024")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, 12.0),
        (12.5, 12.5),
        ("12.5", 12.5),
        (" 12 ", 12.0),
        ("1,234.50", 1234.5),
        ("-12,000", -12000.0),
        ("1e3", 1000.0),
        (Decimal("2.25"), 2.25),
    ],
)
def test_to_float_accepts_numbers_and_numeric_text(value: Any, expected: float) -> None:
    assert to_float(value) == expected
    assert type(to_float(value)) is float


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", "is not a number"),
        ("1.234,50", "is not a number"),
        ("12,34", "is not a number"),
        ("$12", "is not a number"),
        ("1_000", "is not a number"),
        ("NaN", "is not a number"),
        ("Infinity", "is not a number"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (True, "got a boolean"),
        ([1], "got array"),
        ("", "is not a number"),
    ],
)
def test_to_float_refuses_non_numbers(value: Any, reason: str) -> None:
    with pytest.raises(CoercionError) as caught:
        to_float(value)
    assert reason in caught.value.reason


def test_to_int_takes_whole_numbers_only() -> None:
    assert to_int("1,000") == 1000
    assert to_int(7.0) == 7
    assert to_int("7.0") == 7
    assert to_int(Decimal("7")) == 7
    with pytest.raises(CoercionError, match="not a whole number"):
        to_int(7.5)
    with pytest.raises(CoercionError, match="got a boolean"):
        to_int(True)


def test_to_decimal_keeps_the_digits_of_text() -> None:
    assert to_decimal("1,234.10") == Decimal("1234.10")
    assert to_decimal(0.1) == Decimal("0.1")
    assert to_decimal(5) == Decimal(5)
    with pytest.raises(CoercionError):
        to_decimal("ten")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("FALSE", False),
        (" yes ", True),
        ("no", False),
        ("1", True),
        ("0", False),
        (1, True),
        (0, False),
    ],
)
def test_to_bool_accepts_the_usual_spellings(value: Any, expected: bool) -> None:
    assert to_bool(value) is expected


@pytest.mark.parametrize("value", ["maybe", 2, -1, 1.0, None, []])
def test_to_bool_refuses_anything_else(value: Any) -> None:
    with pytest.raises(CoercionError, match="is not a boolean"):
        to_bool(value)


def test_to_str_takes_text_and_numbers_but_not_structures() -> None:
    assert to_str("x") == "x"
    assert to_str(12) == "12"
    assert to_str(1.5) == "1.5"
    assert to_str(Decimal("1.50")) == "1.50"
    for value in (True, {"a": 1}, [1]):
        with pytest.raises(CoercionError, match="expected text"):
            to_str(value)


def test_number_format_with_european_separators() -> None:
    european = NumberFormat(decimal_separator=",", thousands_separator=".")
    assert european.parse("1.234,50") == 1234.5
    assert european.parse("12") == 12
    with pytest.raises(CoercionError):
        european.parse("1,234.50")
    with pytest.raises(ValueError, match="must differ"):
        NumberFormat(".", ".")


# --- per-field coercers against the model's own validation ------------------------------


class Color(Enum):
    RED = "red"
    BLUE = "blue"


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _in_2024(value: datetime) -> datetime:
    if value.year != 2024:
        raise ValueError("must be in 2024")
    return value


def _with_info(value: datetime, info: Any) -> datetime:
    return value.replace(microsecond=0)


class Target(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    text: str = Field(alias="textField")
    short: str | None = Field(None, max_length=3)
    whole: int | None = None
    ratio: float | None = Field(None, ge=0, le=1)
    positive: Annotated[int, Field(gt=0)] | None = None
    money: Decimal | None = None
    flag: bool = False
    day: date | None = None
    moment: datetime | None = None
    utc_moment: Annotated[datetime, AfterValidator(_as_utc)] | None = None
    moment_2024: Annotated[datetime, AfterValidator(_as_utc), AfterValidator(_in_2024)] | None = (
        None
    )
    moment_info: Annotated[datetime, AfterValidator(_with_info)] | None = None
    stage: Literal["open", "won", "lost"] | None = None
    color: Color | None = None
    anything: Any = None
    tags: list[str] = Field(default_factory=list)
    code: str | None = Field(None, pattern=r"^[A-Z]{3}$")


INPUTS: dict[str, list[Any]] = {
    "text": ["abc", 12, 1.5],
    "short": ["ab", "abc"],
    "whole": [3, "4", 5.0, "1,000"],
    "ratio": [0, 0.5, "1", 1],
    "positive": [1, "2"],
    "money": ["1,234.56", 2, 0.1],
    "flag": [True, "false", 1, "yes"],
    "day": ["2024-01-15", "2024-01-15T23:00:00-03:00", 1705314600000],
    "moment": ["2024-01-15T10:30:00.000+0000", "1705314600000", "2024-01-15T10:30:00"],
    "utc_moment": ["2024-01-15T12:30:00+02:00"],
    "moment_2024": ["2025-01-01T01:00:00+02:00", 1705314600000],
    "moment_info": ["2024-01-15T12:30:00.123456+02:00"],
    "stage": ["open", "won"],
    "color": ["red", Color.BLUE],
    "anything": [{"nested": [1, 2]}, "x"],
    "tags": [["a", "b"]],
    "code": ["EUR"],
}


@pytest.mark.parametrize(
    ("field_name", "value"),
    [(name, value) for name, values in INPUTS.items() for value in values],
)
def test_coerced_values_are_what_the_model_validates_them_to(field_name: str, value: Any) -> None:
    """The mapper promises values the model accepts unchanged: validating the coerced value
    through the model gives back an equal value of the same type."""
    coercion = build_field_coercion(Target, field_name)
    coerced = coercion.coerce(value)
    validated = getattr(
        Target.model_validate({"textField": "x", coercion.key: coerced}), field_name
    )
    assert validated == coerced
    assert type(validated) is type(coerced)


@pytest.mark.parametrize(
    ("field_name", "value", "reason"),
    [
        ("short", "abcd", "length of at most 3"),
        ("ratio", 1.5, "between 0 and 1"),
        ("positive", 0, "greater than 0"),
        ("stage", "Open", "is not one of 'open', 'won', 'lost'"),
        ("color", "green", "is not one of 'red', 'blue'"),
        ("tags", "a,b", "valid list"),
        ("code", "eur", "pattern"),
        ("whole", "1.5", "not a whole number"),
        ("moment_2024", "2024-12-31T23:30:00-02:00", "Value error, must be in 2024"),
    ],
)
def test_coercers_enforce_the_fields_constraints(field_name: str, value: Any, reason: str) -> None:
    coercion = build_field_coercion(Target, field_name)
    with pytest.raises(CoercionError) as caught:
        coercion.coerce(value)
    assert reason in caught.value.reason


def test_utc_after_validator_on_the_field_is_applied() -> None:
    coerced = build_field_coercion(Target, "utc_moment").coerce("2024-01-15T12:30:00+02:00")
    assert coerced.utcoffset() == timedelta(0)


def test_field_coercion_reports_key_nullability_and_defaults() -> None:
    text = build_field_coercion(Target, "text")
    assert (text.key, text.nullable, text.has_default) == ("textField", False, False)
    flag = build_field_coercion(Target, "flag")
    assert (flag.key, flag.nullable, flag.has_default) == ("flag", False, True)
    assert build_field_coercion(Target, "moment").nullable


def test_model_wide_string_settings_are_honoured() -> None:
    class Stripped(BaseModel):
        model_config = ConfigDict(str_strip_whitespace=True, str_to_lower=True)
        name: str

    assert build_field_coercion(Stripped, "name").coerce("  ACME ") == "acme"


ODD_VALUES: list[Any] = [
    None,
    "",
    " ",
    "-",
    "1" * 5000,
    "9" * 25,
    "-" + "9" * 25,
    "1e400",
    "0x1F",
    "\u0661\u0662\u0663",  # Arabic-Indic digits
    "2024-02-30",
    "2024-01-15T25:00:00Z",
    "\uff12\uff10\uff12\uff14-01-15",  # full-width digits
    10**400,
    -(10**30),
    1e308,
    -1e308,
    float("nan"),
    float("-inf"),
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("Infinity"),
    Decimal("1e999999"),
    b"bytes",
    {"a": 1},
    [1, 2],
    (1,),
    {1, 2},
    object(),
    True,
]


@pytest.mark.parametrize("field_name", sorted(INPUTS))
def test_coercers_only_ever_raise_coercion_errors(field_name: str) -> None:
    """A record can hold anything JSON (and a provider SDK) can: a coercer must either
    convert it or say why not, never crash with another exception."""
    coerce = build_field_coercion(Target, field_name).coerce
    for value in ODD_VALUES:
        with contextlib.suppress(CoercionError):
            coerce(value)


@pytest.mark.parametrize("text", ["\u0661\u0662\u0663", "\uff11\uff12"])
def test_only_ascii_digits_are_numbers_or_epochs(text: str) -> None:
    with pytest.raises(CoercionError):
        to_float(text)
    with pytest.raises(CoercionError):
        to_datetime(text)
