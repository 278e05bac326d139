"""Ids that only need to be unique (invocation and correlation ids), not unguessable."""

from __future__ import annotations

import random
import uuid


def unique_uuid() -> str:
    """A version-4 UUID drawn from the process's PRNG (reseeded in a forked child).
    `uuid.uuid4()` reads the OS entropy source, and `os.urandom` releases the GIL around
    that system call: on the event loop, every request then handed the GIL to a waiting
    thread and waited to get it back. Never use it for secrets or tokens."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def unique_hex() -> str:
    """32 hex digits from the same source as `unique_uuid`."""
    return f"{random.getrandbits(128):032x}"
