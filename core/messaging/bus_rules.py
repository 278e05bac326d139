"""The argument rules both bus adapters apply, so the local bus refuses exactly what the
Service Bus adapter refuses."""

from __future__ import annotations

from core.errors import PermanentError


def check_receive(entity: str, max_messages: int, wait_seconds: float = 0.0) -> None:
    """A receive or peek takes at least one message and waits no negative time."""
    if max_messages < 1:
        raise PermanentError(
            f"max_messages must be at least 1, got {max_messages}", resource=entity
        )
    if wait_seconds < 0:
        raise PermanentError(
            f"wait_seconds must not be negative, got {wait_seconds}", resource=entity
        )
