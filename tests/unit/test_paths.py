from typing import Any

import pytest

from core.mapping.paths import (
    MISSING,
    PathShapeError,
    PathSyntaxError,
    compile_path,
    format_segments,
    parse_path,
)

SALESFORCE = {
    "Id": "006A",
    "Account": {"Name": "Acme", "Industry": "Tech", "Owner": {"Email": "a@acme.com"}},
    "Partner": None,
    "Empty": {},
}
HUBSPOT = {"id": "42", "properties": {"dealname": "Big deal", "amount": None}}
INVOICE = {
    "lines": [{"amount": 10}, {"amount": 20, "tags": ["a", "b"]}],
    "weird.key": {"x[1]": 5},
    "Name": "abc",
}


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("Id", ("Id",)),
        ("Account.Industry", ("Account", "Industry")),
        ("properties.dealname", ("properties", "dealname")),
        ("lines[0].amount", ("lines", 0, "amount")),
        ("lines[-1].tags[1]", ("lines", -1, "tags", 1)),
        ('["weird.key"]["x[1]"]', ("weird.key", "x[1]")),
        ("['weird.key'].y", ("weird.key", "y")),
        ("[0]", (0,)),
        ("Deal Stage", ("Deal Stage",)),
    ],
)
def test_parse_path_splits_keys_and_indexes(path: str, segments: tuple[Any, ...]) -> None:
    assert parse_path(path) == segments


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a..b", "empty key"),
        (".a", "empty key"),
        ("a.", "ends with '.'"),
        ("a.[0]", "index after '.'"),
        ("a[x]", "unexpected character"),
        ("a[0]b", "missing '.'"),
        ('a["b]', "unexpected character"),
    ],
)
def test_parse_path_rejects_malformed_paths_with_a_reason(path: str, reason: str) -> None:
    with pytest.raises(PathSyntaxError) as caught:
        parse_path(path)
    assert reason in caught.value.reason
    assert caught.value.path == path


@pytest.mark.parametrize(
    ("record", "path", "expected"),
    [
        (SALESFORCE, "Id", "006A"),
        (SALESFORCE, "Account.Industry", "Tech"),
        (SALESFORCE, "Account.Owner.Email", "a@acme.com"),
        (HUBSPOT, "properties.dealname", "Big deal"),
        (HUBSPOT, "properties.amount", None),
        (INVOICE, "lines[0].amount", 10),
        (INVOICE, "lines[-1].amount", 20),
        (INVOICE, "lines[1].tags[0]", "a"),
        (INVOICE, '["weird.key"]["x[1]"]', 5),
    ],
)
def test_getters_read_nested_and_indexed_values(
    record: dict[str, Any], path: str, expected: Any
) -> None:
    assert compile_path(path)(record) == expected


@pytest.mark.parametrize(
    ("record", "path"),
    [
        (SALESFORCE, "Missing"),
        (SALESFORCE, "Account.Missing"),
        (SALESFORCE, "Missing.Name"),
        (SALESFORCE, "Empty.Name.Deeper"),
        (SALESFORCE, "Account.Owner.Missing"),
        (SALESFORCE, "Account.Owner.Missing.Deeper"),
        (INVOICE, "lines[5].amount"),
        (INVOICE, "lines[-3]"),
        (INVOICE, "lines[0].tags[0]"),
    ],
)
def test_absent_keys_and_indexes_read_as_missing_at_any_depth(
    record: dict[str, Any], path: str
) -> None:
    assert compile_path(path)(record) is MISSING


@pytest.mark.parametrize("path", ["Partner.Name", "Partner.Owner.Email", "properties.amount.value"])
def test_a_null_part_way_down_reads_as_null_not_missing(path: str) -> None:
    record = {**SALESFORCE, **HUBSPOT}
    assert compile_path(path)(record) is None


@pytest.mark.parametrize(
    ("record", "path", "at", "expected"),
    [
        (INVOICE, "Name.first", "Name", "an object"),
        (INVOICE, "Name[0]", "Name", "an array"),
        (INVOICE, "lines.amount", "lines", "an object"),
        (SALESFORCE, "Account[0]", "Account", "an array"),
        (INVOICE, "lines[0].amount.value", "lines[0].amount", "an object"),
        ("not a record", "Id", "", "an object"),
    ],
)
def test_wrong_shapes_raise_an_error_naming_path_and_position(
    record: Any, path: str, at: str, expected: str
) -> None:
    with pytest.raises(PathShapeError) as caught:
        compile_path(path)(record)
    assert caught.value.path == path
    assert caught.value.at == at
    assert caught.value.expected == expected
    assert path in str(caught.value)


def test_the_missing_sentinel_is_distinct_from_every_json_value() -> None:
    assert MISSING is not None
    assert MISSING not in ("", 0, False, [], {})
    assert repr(MISSING) == "MISSING"


def test_format_segments_round_trips_through_parse() -> None:
    for path in ["a.b[0].c", '["weird.key"].x', "lines[-1]"]:
        assert parse_path(format_segments(parse_path(path))) == parse_path(path)
