import contextlib
import random
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from core.mapping.transforms import (
    BUILTIN_TRANSFORMS,
    InvalidTransformOptionsError,
    TransformError,
    TransformFunction,
    lookup_key,
    round_half_up,
)

SEED_BUILTINS = {
    "mapObjects",
    "dateToISO",
    "dateToUnix",
    "stringToNumber",
    "roundToDecimals",
    "toLowerCase",
    "toUpperCase",
    "trim",
    "arrayToString",
    "arrayFirst",
    "booleanToString",
    "booleanToYesNo",
    "nullToDefault",
}


def build(name: str, **options: Any) -> TransformFunction:
    definition = BUILTIN_TRANSFORMS.resolve(name)
    assert definition is not None
    return definition.build(options)


def test_every_builtin_from_the_design_is_registered() -> None:
    assert set(BUILTIN_TRANSFORMS.names()) == SEED_BUILTINS


def test_registry_describes_each_transform_with_an_options_schema() -> None:
    described = {item.name: item for item in BUILTIN_TRANSFORMS.describe()}
    assert set(described) == SEED_BUILTINS
    rounding = described["roundToDecimals"].model_dump(by_alias=True)
    assert rounding["category"] == "number"
    assert rounding["description"]
    assert rounding["optionsSchema"]["properties"]["decimals"]["default"] == 2
    assert rounding["optionsSchema"]["properties"]["decimals"]["maximum"] == 12
    separators = described["stringToNumber"].options_schema["properties"]
    assert {"decimalSeparator", "thousandsSeparator"} <= set(separators)
    assert described["trim"].options_schema["properties"] == {}
    assert "default" in described["nullToDefault"].options_schema["required"]


@pytest.mark.parametrize("name", sorted(SEED_BUILTINS - {"nullToDefault"}))
def test_every_transform_but_null_to_default_passes_null_through(name: str) -> None:
    assert build(name, **DEFAULT_OPTIONS.get(name, {}))(None) is None


# --- dates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-15T10:30:00.000+0000", "2024-01-15T10:30:00Z"),
        ("2024-01-15T12:30:00+02:00", "2024-01-15T10:30:00Z"),
        ("1705314600000", "2024-01-15T10:30:00Z"),
        (1705314600, "2024-01-15T10:30:00Z"),
        (datetime(2024, 1, 15, 10, 30, 0, 250000, tzinfo=UTC), "2024-01-15T10:30:00.250000Z"),
        (date(2024, 1, 15), "2024-01-15T00:00:00Z"),
    ],
)
def test_date_to_iso(value: Any, expected: str) -> None:
    assert build("dateToISO")(value) == expected


def test_date_to_iso_date_only_gives_the_utc_day() -> None:
    to_day = build("dateToISO", dateOnly=True)
    assert to_day("2024-03-31T22:30:00-05:00") == "2024-04-01"
    assert to_day(date(2024, 3, 31)) == "2024-03-31"


def test_date_to_unix_in_seconds_and_milliseconds() -> None:
    assert build("dateToUnix")("2024-01-15T10:30:00Z") == 1705314600
    assert build("dateToUnix", unit="milliseconds")("2024-01-15T10:30:00.123Z") == 1705314600123
    assert build("dateToUnix")("1969-12-31T23:59:59.5Z") == -1


@pytest.mark.parametrize("name", ["dateToISO", "dateToUnix"])
def test_date_transforms_refuse_non_dates(name: str) -> None:
    with pytest.raises(TransformError, match="is not a date-time"):
        build(name)("next tuesday")


# --- numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "value", "expected"),
    [
        ({}, "42", 42),
        ({}, "1,234.50", 1234.5),
        ({}, " -7.25 ", -7.25),
        ({}, 3.5, 3.5),
        ({"decimalSeparator": ",", "thousandsSeparator": "."}, "1.234,5", 1234.5),
        ({"decimalSeparator": ",", "thousandsSeparator": " "}, "1 234,5", 1234.5),
        ({"thousandsSeparator": ""}, "1234.5", 1234.5),
    ],
)
def test_string_to_number(options: dict[str, Any], value: Any, expected: float) -> None:
    result = build("stringToNumber", **options)(value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize("value", ["abc", "12abc", "$5", "1,2", "NaN", True, ["1"]])
def test_string_to_number_refuses_non_numbers(value: Any) -> None:
    with pytest.raises(TransformError):
        build("stringToNumber")(value)


def test_string_to_number_without_thousands_separator_refuses_grouped_numbers() -> None:
    with pytest.raises(TransformError):
        build("stringToNumber", thousandsSeparator="")("1,234")


def test_string_to_number_options_must_use_different_separators() -> None:
    with pytest.raises(InvalidTransformOptionsError, match="must differ"):
        build("stringToNumber", decimalSeparator=".", thousandsSeparator=".")


@pytest.mark.parametrize(
    ("decimals", "value", "expected"),
    [
        (2, 2.675, 2.68),  # half up on the decimal text, where round() gives 2.67
        (2, -2.675, -2.68),
        (2, 1.005, 1.01),
        (2, 1234.5678, 1234.57),
        (0, 2.5, 3),
        (0, "7.5", 8),
        (1, "1,234.45", 1234.5),
        (2, 10, 10.0),
        (3, Decimal("1.0005"), 1.001),
    ],
)
def test_round_to_decimals(decimals: int, value: Any, expected: float) -> None:
    result = build("roundToDecimals", decimals=decimals)(value)
    assert result == expected
    assert type(result) is (int if decimals == 0 else float)


def test_round_to_decimals_defaults_to_two() -> None:
    assert build("roundToDecimals")(3.14159) == 3.14


@pytest.mark.parametrize("value", ["abc", float("nan"), float("inf"), True, {}])
def test_round_to_decimals_refuses_non_numbers(value: Any) -> None:
    with pytest.raises(TransformError):
        build("roundToDecimals")(value)


@pytest.mark.parametrize("options", [{"decimals": -1}, {"decimals": 13}, {"decimals": "two"}])
def test_round_to_decimals_refuses_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidTransformOptionsError, match="decimals"):
        build("roundToDecimals", **options)


def test_round_half_up_fast_path_matches_decimal_rounding() -> None:
    def exact(number: float, decimals: int) -> float:
        quantum = Decimal(1).scaleb(-decimals)
        return float(Decimal(repr(number)).quantize(quantum, rounding=ROUND_HALF_UP))

    rng = random.Random(20240115)
    for _ in range(20_000):
        decimals = rng.randrange(0, 7)
        candidates = [
            round(rng.uniform(-1e6, 1e6), decimals + 1),  # many exact ties
            rng.uniform(-1e13, 1e13),  # beyond the fast path's range
            rng.uniform(-5, 5),
        ]
        for number in candidates:
            assert round_half_up(number, decimals) == exact(number, decimals), (number, decimals)


# --- strings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("toLowerCase", "Owner@Example.COM", "owner@example.com"),
        ("toUpperCase", "eur", "EUR"),
        ("trim", "  Big deal \n", "Big deal"),
    ],
)
def test_string_transforms(name: str, value: str, expected: str) -> None:
    assert build(name)(value) == expected


@pytest.mark.parametrize("name", ["toLowerCase", "toUpperCase", "trim"])
@pytest.mark.parametrize("value", [12, True, ["a"]])
def test_string_transforms_refuse_non_text(name: str, value: Any) -> None:
    with pytest.raises(TransformError, match=f"{name} expects text"):
        build(name)(value)


@pytest.mark.parametrize("name", ["toLowerCase", "trim"])
def test_string_transforms_take_no_options(name: str) -> None:
    with pytest.raises(InvalidTransformOptionsError, match="Extra inputs"):
        build(name, locale="tr")


# --- arrays ------------------------------------------------------------------------------


def test_array_to_string_joins_with_the_separator_and_skips_nulls() -> None:
    assert build("arrayToString")(["a", None, "b"]) == "a, b"
    assert build("arrayToString", separator=";")(["a", 1, True, 2.5]) == "a;1;true;2.5"
    assert build("arrayToString")([]) == ""


@pytest.mark.parametrize(
    ("value", "reason"),
    [("a;b", "expects an array, got string"), ([{"a": 1}], "item 0 is object")],
)
def test_array_to_string_refuses_bad_input(value: Any, reason: str) -> None:
    with pytest.raises(TransformError, match=reason):
        build("arrayToString")(value)


def test_array_to_string_separator_length_is_bounded() -> None:
    with pytest.raises(InvalidTransformOptionsError, match="separator"):
        build("arrayToString", separator="x" * 21)


def test_array_first() -> None:
    assert build("arrayFirst")(["a", "b"]) == "a"
    assert build("arrayFirst")([]) is None
    with pytest.raises(TransformError, match="expects an array"):
        build("arrayFirst")("a")


# --- booleans ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "as_string", "as_yes_no"),
    [(True, "true", "Yes"), (False, "false", "No"), ("TRUE", "true", "Yes"), (0, "false", "No")],
)
def test_boolean_transforms(value: Any, as_string: str, as_yes_no: str) -> None:
    assert build("booleanToString")(value) == as_string
    assert build("booleanToYesNo")(value) == as_yes_no


@pytest.mark.parametrize("name", ["booleanToString", "booleanToYesNo"])
def test_boolean_transforms_refuse_non_booleans(name: str) -> None:
    with pytest.raises(TransformError, match="is not a boolean"):
        build(name)("perhaps")


# --- nulls -------------------------------------------------------------------------------


def test_null_to_default() -> None:
    fill = build("nullToDefault", default="Unknown")
    assert fill(None) == "Unknown"
    assert fill("") == ""
    assert fill("Web") == "Web"
    fill_empty = build("nullToDefault", default=0, emptyAsNull=True)
    assert fill_empty("") == 0
    assert fill_empty([]) == 0
    assert fill_empty("x") == "x"


def test_null_to_default_requires_its_default_option() -> None:
    with pytest.raises(InvalidTransformOptionsError, match="default"):
        build("nullToDefault")


# --- lookup keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("Won", "Won"),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (3.0, "3"),
        (2.5, "2.5"),
        (Decimal("4.00"), "4"),
        (Decimal("4.5"), "4.5"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
    ],
)
def test_lookup_key_is_the_json_text_of_a_value(value: Any, key: str) -> None:
    assert lookup_key(value) == key


def test_lookup_key_has_no_key_for_structures() -> None:
    assert lookup_key({"a": 1}) is None
    assert lookup_key([1]) is None


ODD_VALUES: list[Any] = [
    None,
    "",
    "-",
    "1" * 5000,
    "9" * 25,
    "1e400",
    "2024-02-30",
    10**400,
    1e308,
    -1e308,
    1e30,
    float("nan"),
    float("-inf"),
    Decimal("NaN"),
    Decimal("Infinity"),
    Decimal("1e999999"),
    Decimal("1e-999999"),
    b"bytes",
    {"a": 1},
    [1, {"a": 1}],
    [],
    object(),
    True,
]
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "nullToDefault": {"default": "x"},
    "mapObjects": {"fields": {"x": "a.b"}},
}


@pytest.mark.parametrize("name", sorted(SEED_BUILTINS))
def test_transforms_only_ever_raise_transform_errors(name: str) -> None:
    transform = build(name, **DEFAULT_OPTIONS.get(name, {}))
    for value in ODD_VALUES:
        with contextlib.suppress(TransformError):
            transform(value)


def test_rounding_huge_and_tiny_numbers() -> None:
    assert build("roundToDecimals")(1e300) == 1e300
    assert build("roundToDecimals")(10**30) == 1e30
    assert build("roundToDecimals", decimals=0)(10**30) == 10**30
    assert build("roundToDecimals")(Decimal("1e-999999")) == 0.0
    with pytest.raises(TransformError, match="too large"):
        build("roundToDecimals")(Decimal("1e999999"))
