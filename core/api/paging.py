"""Paging query parameters of the tenant API: `limit` and `continuationToken`.

A list answers `{"items": [...], "continuationToken": "..." | null}`; the token is the
store's, opaque to callers, and only valid for the same query.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from core.api.http import ApiError
from core.errors import PermanentError


def page_params(
    query: Mapping[str, str], *, default_limit: int, max_limit: int
) -> tuple[int, str | None]:
    """`limit` (1..max_limit) and `continuationToken` from the query; 422 naming either."""
    raw = query.get("limit")
    limit = default_limit
    if raw is not None:
        text = raw.strip()
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= max_limit:
            raise ApiError(
                422,
                "invalid query parameter",
                errors=[
                    {
                        "field": "limit",
                        "message": f"must be an integer from 1 to {max_limit}, got {raw!r}",
                    }
                ],
            )
        limit = int(text)
    token = query.get("continuationToken")
    if token is not None and not token.strip():
        raise ApiError(
            422,
            "invalid query parameter",
            errors=[{"field": "continuationToken", "message": "is empty; omit it for page one"}],
        )
    return limit, token


@contextmanager
def continuation_checked(token: str | None) -> Iterator[None]:
    """A store query that refuses the caller's token is a 422 naming `continuationToken`
    (the store raises PermanentError for a token that is not one of its own)."""
    try:
        yield
    except PermanentError as exc:
        if token is None:
            raise
        raise ApiError(
            422,
            "invalid query parameter",
            errors=[
                {
                    "field": "continuationToken",
                    "message": f"{exc}; pass back a token from the previous page of this query",
                }
            ],
        ) from exc


def page_body(items: list[Any], continuation: str | None) -> dict[str, Any]:
    return {"items": items, "continuationToken": continuation}
