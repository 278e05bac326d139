"""`jsontext.loads` reads every text as `json.loads` does, fast parser or not."""

from __future__ import annotations

import json

import pytest

from core import jsontext

TEXTS = [
    '{"a":1,"a":2}',
    "[1e400, -1e400, 1E2, 1.5e-7, 0.1, -0.0, 1.0]",
    "[12345678901234567890123, -9223372036854775809]",
    '{"a": NaN, "b": Infinity, "c": -Infinity}',
    '"\\u00e9 and é and \\ud83d\\ude00"',
    '"\\ud800 lone surrogate"',
    ' [true, false, null, {"nested": [[]]}] ',
]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("as_bytes", [False, True])
def test_loads_reads_as_json_does(text: str, as_bytes: bool) -> None:
    given = text.encode() if as_bytes else text
    assert repr(jsontext.loads(given)) == repr(json.loads(given))


def test_loads_reads_utf16_bytes_as_json_does() -> None:
    text = '{"name": "Ω"}'.encode("utf-16")
    assert jsontext.loads(text) == json.loads(text) == {"name": "Ω"}


@pytest.mark.parametrize("text", ["", "{", "[1,]", "nul", '{"a" 1}', b"\xff"])
def test_loads_refuses_what_json_refuses_with_its_error(text: str | bytes) -> None:
    refusals = []
    for parse in (jsontext.loads, json.loads):
        try:
            parse(text)
        except ValueError as exc:  # JSONDecodeError or UnicodeDecodeError
            refusals.append((type(exc), str(exc)))
    assert len(refusals) == 2
    assert refusals[0] == refusals[1]
