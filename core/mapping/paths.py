"""Nested source paths (`Account.Industry`, `properties.dealname`, `lines[0].amount`).

A path is parsed once into segments and compiled into a getter; the getter is what runs per
record. Getters tell an absent key (`MISSING`) from an explicit null (`None`): an absent key
means the provider did not send the field, a null means it sent "empty". A null part-way
down the path (Salesforce sends `"Account": null` when there is no account) reads as null.
A value of the wrong shape part-way down (a string where an object was expected) raises
`PathShapeError`, because the mapping and the data disagree and someone has to look.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Final


class Missing(Enum):
    """The type of `MISSING`, so that `value is MISSING` narrows for type checkers."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING

PathSegment = str | int
PathGetter = Callable[[Any], Any]


class PathSyntaxError(ValueError):
    """A mapping's source path cannot be parsed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"invalid source path {path!r}: {reason}")
        self.path = path
        self.reason = reason


class PathShapeError(ValueError):
    """The record has a value of the wrong kind part-way down a path."""

    def __init__(self, path: str, at: str, expected: str, found: Any) -> None:
        super().__init__(
            f"path {path!r}: expected {expected} at {at or '<record>'!r}, "
            f"found {type(found).__name__}"
        )
        self.path = path
        self.at = at
        self.expected = expected
        self.found = found


_TOKEN = re.compile(
    r"""
    (?P<key>[^.\[\]"']+)
    | \[(?P<index>-?\d+)\]
    | \[(?P<quote>["'])(?P<quoted>(?:(?!(?P=quote)).)*)(?P=quote)\]
    | (?P<dot>\.)
    """,
    re.VERBOSE,
)


def parse_path(path: str) -> tuple[PathSegment, ...]:
    """Split a path into keys (str) and list indexes (int).

    Grammar: keys separated by dots, each optionally followed by `[n]` indexes; a key that
    contains dots or brackets is written `["a.b"]`.
    """
    if not path or not path.strip():
        raise PathSyntaxError(path, "the path is empty")
    segments: list[PathSegment] = []
    position = 0
    expect_key = True
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None:
            raise PathSyntaxError(path, f"unexpected character at position {position}")
        if match.group("dot") is not None:
            if expect_key:
                raise PathSyntaxError(path, f"empty key at position {position}")
            expect_key = True
        elif match.group("key") is not None:
            if not expect_key:
                raise PathSyntaxError(path, f"missing '.' before position {position}")
            segments.append(match.group("key"))
            expect_key = False
        elif match.group("index") is not None:
            if expect_key and segments:
                raise PathSyntaxError(path, f"index after '.' at position {position}")
            segments.append(int(match.group("index")))
            expect_key = False
        else:
            if expect_key and segments:
                raise PathSyntaxError(path, f"bracketed key after '.' at position {position}")
            segments.append(match.group("quoted"))
            expect_key = False
        position = match.end()
    if expect_key:
        raise PathSyntaxError(path, "the path ends with '.'")
    return tuple(segments)


def format_segments(segments: tuple[PathSegment, ...]) -> str:
    """The path text of a prefix of segments, for error messages."""
    text = ""
    for segment in segments:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif re.fullmatch(r"[^.\[\]\"']+", segment):
            text += f".{segment}" if text else segment
        else:
            text += f"[{segment!r}]"
    return text


def walk(record: Any, segments: tuple[PathSegment, ...], path: str) -> Any:
    """Follow a path and say exactly what happened: the value, `MISSING`, or a shape error."""
    current = record
    for position, segment in enumerate(segments):
        if current is None:
            return None
        if isinstance(segment, str):
            if not isinstance(current, Mapping):
                at = format_segments(segments[:position])
                raise PathShapeError(path, at, "an object", current)
            if segment not in current:
                return MISSING
            current = current[segment]
        else:
            if not isinstance(current, list | tuple):
                at = format_segments(segments[:position])
                raise PathShapeError(path, at, "an array", current)
            if not -len(current) <= segment < len(current):
                return MISSING
            current = current[segment]
    return current


def compile_path(path: str) -> PathGetter:
    """Compile a path into a getter `record -> value | MISSING | None`.

    Paths made only of keys (the usual case) get a getter that indexes straight through and
    falls back to `walk` only when something is absent or mis-shaped; paths with indexes
    always use `walk`, which checks that an index is applied to an array and not a string.
    """
    segments = parse_path(path)
    if not all(isinstance(segment, str) for segment in segments):
        return lambda record: walk(record, segments, path)
    lookup_errors = (KeyError, TypeError, IndexError)
    if len(segments) == 1:
        (key,) = segments

        def get_one(record: Any) -> Any:
            try:
                return record[key]
            except lookup_errors:
                return walk(record, segments, path)

        return get_one
    if len(segments) == 2:
        first, second = segments

        def get_two(record: Any) -> Any:
            try:
                return record[first][second]
            except lookup_errors:
                return walk(record, segments, path)

        return get_two
    if len(segments) == 3:
        first, second, third = segments

        def get_three(record: Any) -> Any:
            try:
                return record[first][second][third]
            except lookup_errors:
                return walk(record, segments, path)

        return get_three

    def get_deep(record: Any) -> Any:
        try:
            current = record
            for key in segments:
                current = current[key]
            return current
        except lookup_errors:
            return walk(record, segments, path)

    return get_deep
