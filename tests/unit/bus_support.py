"""Shared pieces of the bus adapter tests: the receive arguments every `Bus` refuses, with
the words of the refusal, so the SQLite bus and the Service Bus adapter are held to one list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RECEIVE_ARGUMENTS_OUT_OF_BOUNDS: list[tuple[Callable[[Any, str], Any], str]] = [
    (
        lambda bus, entity: bus.receive(entity, max_messages=0),
        "max_messages must be at least 1, got 0",
    ),
    (
        lambda bus, entity: bus.receive(entity, wait_seconds=-1),
        "wait_seconds must not be negative, got -1",
    ),
    (
        lambda bus, entity: bus.peek_dead_letters(entity, max_messages=0),
        "max_messages must be at least 1, got 0",
    ),
]
