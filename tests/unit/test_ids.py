"""Ids that must be unique but need not be secret (invocation and correlation ids)."""

from __future__ import annotations

import os
import re
import uuid

import pytest

from core.ids import unique_hex, unique_uuid


def test_unique_uuids_are_distinct_rfc4122_version_4_uuids() -> None:
    drawn = [unique_uuid() for _ in range(2000)]
    assert len(set(drawn)) == len(drawn)
    for text in drawn[:50]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_unique_hex_is_32_hex_digits_and_distinct() -> None:
    drawn = [unique_hex() for _ in range(2000)]
    assert len(set(drawn)) == len(drawn)
    assert all(re.fullmatch(r"[0-9a-f]{32}", text) for text in drawn)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(reader)
        os.write(writer, unique_hex().encode())
        os._exit(0)
    os.close(writer)
    parent_draw = unique_hex()
    with os.fdopen(reader, "rb") as pipe:
        child_draw = pipe.read().decode()
    os.waitpid(child, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child_draw)
    assert child_draw != parent_draw
