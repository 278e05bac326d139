"""Opaque continuation tokens for keyset paging, shared by the store adapters.

A token carries the last row's sort key and a checksum bound to the query that produced
it (its fingerprint), so a garbled token, or one replayed against another query, is
refused with "invalid continuation token" instead of paging from a wrong place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from typing import Any

from core.errors import PermanentError

BAD_CONTINUATION = "invalid continuation token"


def fingerprint(*query_shape: Any) -> str:
    """Identifies a query: container, filters, parameters, ordering."""
    shape = json.dumps(list(query_shape), sort_keys=True, default=str)
    return hashlib.sha256(shape.encode()).hexdigest()


def _check(key_text: str, query: str) -> str:
    return hashlib.sha256(f"{query}|{key_text}".encode()).hexdigest()[:24]


def encode_token(key: list[Any], query: str) -> str:
    key_text = json.dumps(key, separators=(",", ":"))
    payload = json.dumps({"k": key, "c": _check(key_text, query)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(
    token: str,
    query: str,
    key_length: int,
    container: str,
    *,
    part_ok: Callable[[Any], bool] = lambda part: True,
) -> list[Any]:
    """The key a token carries; the last two parts (partition key, id) are strings and
    every part must satisfy `part_ok`. PermanentError naming the container otherwise."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        payload = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise PermanentError(BAD_CONTINUATION, resource=container) from exc
    if not isinstance(payload, dict) or set(payload) != {"k", "c"}:
        raise PermanentError(BAD_CONTINUATION, resource=container)
    key = payload["k"]
    if (
        not isinstance(key, list)
        or len(key) != key_length
        or not all(isinstance(part, str) for part in key[-2:])
        or not all(part_ok(part) for part in key)
        or payload["c"] != _check(json.dumps(key, separators=(",", ":")), query)
    ):
        raise PermanentError(BAD_CONTINUATION, resource=container)
    return key
