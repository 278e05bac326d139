"""The `mapObjects` built-in: reshaping arrays of provider objects by paths."""

from __future__ import annotations

from typing import Any

import pytest

from core.mapping import BUILTIN_TRANSFORMS, compile_mapping
from core.mapping.transforms import (
    InvalidTransformOptionsError,
    TransformError,
    TransformFunction,
)
from core.models.shards import ContactRole, OpportunityData

ROLE_FIELDS = {
    "contactId": "ContactId",
    "role": "Role",
    "isPrimary": "IsPrimary",
    "email": "Contact.Email",
}


def build(**options: Any) -> TransformFunction:
    definition = BUILTIN_TRANSFORMS.resolve("mapObjects")
    assert definition is not None
    return definition.build(options)


def test_is_registered_with_a_description_and_an_options_schema() -> None:
    described = {item.name: item for item in BUILTIN_TRANSFORMS.describe()}
    map_objects = described["mapObjects"]
    assert map_objects.category == "array"
    assert "Contact.Email" in map_objects.description
    schema = map_objects.options_schema
    assert schema["required"] == ["fields"]
    assert schema["properties"]["fields"]["additionalProperties"] == {"type": "string"}


def test_reshapes_each_item_by_its_paths() -> None:
    rows = [
        {"ContactId": "003A", "Role": "Decision Maker", "IsPrimary": True, "Contact": {"Email": "a@x.com"}},
        {"ContactId": "003B", "Role": None, "IsPrimary": False, "Contact": {"Email": "b@x.com"}},
    ]  # fmt: skip
    assert build(fields=ROLE_FIELDS)(rows) == [
        {"contactId": "003A", "role": "Decision Maker", "isPrimary": True, "email": "a@x.com"},
        {"contactId": "003B", "role": None, "isPrimary": False, "email": "b@x.com"},
    ]


def test_a_path_an_item_lacks_leaves_the_key_out_and_a_null_parent_gives_null() -> None:
    rows = [{"ContactId": "003A"}, {"ContactId": "003B", "Contact": None}]
    assert build(fields=ROLE_FIELDS)(rows) == [
        {"contactId": "003A"},
        {"contactId": "003B", "email": None},
    ]


def test_indexes_and_quoted_keys_work_inside_items() -> None:
    transform = build(fields={"first": "tags[0]", "dotted": '["a.b"]'})
    assert transform([{"tags": ["x", "y"], "a.b": 1}]) == [{"first": "x", "dotted": 1}]


def test_null_passes_through_and_an_empty_array_stays_empty() -> None:
    transform = build(fields=ROLE_FIELDS)
    assert transform(None) is None
    assert transform([]) == []


def test_the_input_is_not_changed() -> None:
    rows = [{"ContactId": "003A", "Contact": {"Email": "a@x.com"}}]
    build(fields=ROLE_FIELDS)(rows)
    assert rows == [{"ContactId": "003A", "Contact": {"Email": "a@x.com"}}]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"records": []}, "mapObjects expects an array, got object"),
        ("003A", "mapObjects expects an array, got string"),
        ([{"ContactId": "003A"}, "003B"], "item 1 is string, not an object"),
        ([None], "item 0 is null, not an object"),
        ([{"Contact": "a@x.com"}], "item 0: path 'Contact.Email'"),
    ],
)
def test_values_of_the_wrong_shape_are_errors_naming_the_item(value: Any, message: str) -> None:
    with pytest.raises(TransformError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        build(fields=ROLE_FIELDS)(value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "fields: Field required"),
        ({"fields": {}}, "fields: .*at least 1 item"),
        ({"fields": {"email": "Contact..Email"}}, "email: invalid source path 'Contact..Email'"),
        ({"fields": {" ": "Email"}}, "an output key is empty"),
        ({"fields": {"email": 3}}, "fields.email: Input should be a valid string"),
        ({"fields": ROLE_FIELDS, "skipNulls": True}, "skipNulls: Extra inputs are not permitted"),
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTransformOptionsError, match=message):
        build(**options)


def test_maps_salesforce_contact_roles_onto_the_opportunity_model() -> None:
    compiled = compile_mapping(
        [
            {"source": "Name", "target": "name"},
            {
                "source": "OpportunityContactRoles.records",
                "target": "contactRoles",
                "transform": "mapObjects",
                "transformOptions": {"fields": ROLE_FIELDS},
                "default": [],
            },
        ],
        OpportunityData,
    )
    record = {
        "Name": "Deal",
        "OpportunityContactRoles": {
            "totalSize": 1,
            "done": True,
            "records": [{"ContactId": "003A", "Role": "Evaluator", "IsPrimary": True, "Contact": {"Email": "a@x.com"}}],
        },
    }  # fmt: skip
    result = compiled.map(record)
    assert result.errors == []
    assert result.data["contactRoles"] == [
        ContactRole(contact_id="003A", role="Evaluator", is_primary=True, email="a@x.com")
    ]
    no_roles = compiled.map({"Name": "Deal", "OpportunityContactRoles": None})
    assert (no_roles.errors, no_roles.warnings, no_roles.data["contactRoles"]) == ([], [], [])
    broken = compiled.map(
        {"Name": "Deal", "OpportunityContactRoles": {"records": [{"Role": "Evaluator"}]}}
    )
    assert [error.field for error in broken.errors] == ["contactRoles"]
    assert broken.errors[0].value == [{"role": "Evaluator"}]
    assert "required" in broken.errors[0].reason


@pytest.mark.parametrize(
    "value",
    [
        "",
        b"bytes",
        3,
        True,
        object(),
        {"a": 1},
        [[1]],
        [{"Contact": 5}],
        [{"Contact": [1]}],
        [{"tags": "abc"}],
        (item for item in [1]),
    ],
)
def test_only_ever_raises_transform_errors(value: Any) -> None:
    transform = build(fields={"email": "Contact.Email", "first": "tags[0]"})
    with pytest.raises(TransformError):
        transform(value)
