"""`encode_document` accepts exactly what strict `json` accepts, and counts UTF-8 bytes."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from collections import OrderedDict
from typing import Any

import pytest

from core.documents import MAX_DOCUMENT_BYTES, encode_document
from core.errors import PermanentError
from core.ports import ContainerSpec

SPEC = ContainerSpec(name="things", partition_key="/tenantId")
STRICT = json.JSONEncoder(allow_nan=False)


class Plain(enum.Enum):
    A = 1


class Text(enum.StrEnum):
    A = "a"


class Number(enum.IntEnum):
    A = 1


@dataclasses.dataclass
class Record:
    x: int = 1


class SubDict(dict[str, Any]):
    pass


VALUES: list[Any] = [
    "plain",
    "é and \u2028 and 😀",
    "\ud800",
    -0.0,
    0.1,
    1e300,
    5e-324,
    2**63 - 1,
    -(2**63),
    10**30,
    True,
    None,
    [1, [2, {"b": None}]],
    (1, 2),
    {1: "int key"},
    {1.5: "float key"},
    {True: "bool key"},
    {None: "null key"},
    {(1,): "tuple key"},
    SubDict(a=1),
    OrderedDict(a=1),
    Text.A,
    Number.A,
    float("nan"),
    float("inf"),
    -float("inf"),
    uuid.UUID(int=1),
    datetime.datetime(2026, 1, 1),
    datetime.date(2026, 1, 1),
    Plain.A,
    decimal.Decimal("1.5"),
    Record(),
    {1, 2},
    frozenset(),
    b"bytes",
    bytearray(b"bytes"),
    1j,
    ...,
    range(3),
    object(),
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(value)[:30] for value in VALUES])
def test_a_value_is_accepted_exactly_when_strict_json_accepts_it(value: Any) -> None:
    body = {"id": "a", "tenantId": "t", "value": value}
    try:
        reference = STRICT.encode(body)
    except (TypeError, ValueError):
        with pytest.raises(PermanentError, match="'a' in container things is not JSON"):
            encode_document(SPEC, "a", body)
        return
    assert json.loads(encode_document(SPEC, "a", body)) == json.loads(reference)


def test_a_cycle_and_too_deep_nesting_are_refused() -> None:
    cyclic: dict[str, Any] = {"id": "a", "tenantId": "t"}
    cyclic["self"] = cyclic
    deep: list[Any] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]
    for body in (cyclic, {"id": "a", "tenantId": "t", "deep": deep}):
        with pytest.raises(PermanentError, match="refers to itself or is nested too deeply"):
            encode_document(SPEC, "a", body)


@pytest.mark.parametrize(("character", "utf8_bytes"), [("a", 1), ("é", 2), ("€", 3), ("😀", 4)])
def test_the_size_limit_counts_utf8_bytes(character: str, utf8_bytes: int) -> None:
    overhead = len(json.dumps({"id": "a", "tenantId": "t", "text": ""}, separators=(",", ":")))
    fits = (MAX_DOCUMENT_BYTES - overhead) // utf8_bytes
    encode_document(SPEC, "a", {"id": "a", "tenantId": "t", "text": character * fits})
    over = overhead + (fits + 1) * utf8_bytes
    with pytest.raises(PermanentError, match=f"is {over} bytes, over the"):
        encode_document(SPEC, "a", {"id": "a", "tenantId": "t", "text": character * (fits + 1)})
