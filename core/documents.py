"""The rules every store applies to a document before writing it: Cosmos DB's own limits
(id characters and length, item size), the partition key field, `ttl`, strict JSON. Both
store adapters call these, so the embedded store refuses exactly what Cosmos refuses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NoReturn

from core.errors import PermanentError
from core.jsontext import dumps_strict
from core.ports import ContainerSpec, Filter

MAX_PAGE_SIZE = 1000
MAX_IN_VALUES = 1000
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024  # Cosmos DB's item size limit
MAX_ID_BYTES = 1023  # Cosmos DB's id length limit
INVALID_ID_CHARS = frozenset("/\\?#")  # characters Cosmos DB refuses in an id


def document_keys(spec: ContainerSpec, doc: Any) -> tuple[str, str, int | None]:
    """The document's id, partition key and `ttl` (None when absent), validated."""
    if type(doc) is not dict and not isinstance(doc, Mapping):  # the ABC check is slow
        raise PermanentError(
            f"a document for {spec.name} must be a JSON object, got {type(doc).__name__}",
            resource=spec.name,
        )
    doc_id = doc.get("id")
    if not isinstance(doc_id, str) or not doc_id:
        raise PermanentError(
            f"document for container {spec.name} needs a non-empty string field 'id'",
            resource=spec.name,
        )
    if not INVALID_ID_CHARS.isdisjoint(doc_id) or len(doc_id.encode()) > MAX_ID_BYTES:
        raise PermanentError(
            f"document id {doc_id!r} in container {spec.name} must not contain / \\ ? #"
            f" and must be at most {MAX_ID_BYTES} bytes",
            resource=spec.name,
        )
    pk = doc.get(spec.partition_field)
    if not isinstance(pk, str):
        raise PermanentError(
            f"document {doc_id!r} for container {spec.name} needs the partition key field"
            f" {spec.partition_field!r} as a string",
            resource=spec.name,
        )
    ttl = doc.get("ttl")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or not (ttl > 0 or ttl == -1)
    ):
        raise PermanentError(
            f"document {doc_id!r} in container {spec.name}: field 'ttl' must be a positive"
            f" integer number of seconds or -1, got {ttl!r}",
            resource=spec.name,
        )
    return doc_id, pk, ttl


def encode_document(spec: ContainerSpec, doc_id: str, body: Mapping[str, Any]) -> str:
    """Strict JSON (no NaN, no unknown types) within the item size limit, counted in UTF-8
    bytes."""
    try:
        text = dumps_strict(body)
    except (TypeError, ValueError) as exc:
        raise PermanentError(
            f"document {doc_id!r} in container {spec.name} is not JSON: {exc}",
            resource=spec.name,
        ) from exc
    except RecursionError as exc:
        raise PermanentError(
            f"document {doc_id!r} in container {spec.name} is not JSON: it refers to itself"
            " or is nested too deeply",
            resource=spec.name,
        ) from exc
    size = len(text) if text.isascii() else len(text.encode())
    if size > MAX_DOCUMENT_BYTES:
        raise PermanentError(
            f"document {doc_id!r} in container {spec.name} is {size} bytes,"
            f" over the {MAX_DOCUMENT_BYTES}-byte limit",
            resource=spec.name,
        )
    return text


# --- filters ---------------------------------------------------------------------------

FILTER_PATH = re.compile(r"[A-Za-z0-9_]+(?:\[\d+\])*(?:\.[A-Za-z0-9_]+(?:\[\d+\])*)*")
"""Dotted names of letters, digits and '_', with optional [n] indexes: nothing else can
reach a query, so no path can inject SQL."""
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=", "contains")
_INT64 = (-(2**63), 2**63 - 1)

Scalar = str | int | float | bool | None


def check_path(spec: ContainerSpec, path: Any) -> str:
    if not isinstance(path, str) or not FILTER_PATH.fullmatch(path):
        raise PermanentError(
            f"invalid document path {path!r} in container {spec.name}: use dotted names of"
            " letters, digits and '_', with optional [n] indexes",
            resource=spec.name,
        )
    return path


def check_scalar(spec: ContainerSpec, condition: Filter, value: Any) -> Scalar:
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return value
    raise PermanentError(
        f"filter {condition.path!r} {condition.op!r} in container {spec.name}: value {value!r}"
        " must be a string, a 64-bit integer, a float, a boolean or None",
        resource=spec.name,
    )


def in_values(spec: ContainerSpec, condition: Filter) -> list[Scalar]:
    """An `in` filter's values: a list (not a string or mapping) of at most
    `MAX_IN_VALUES` scalars."""
    values = condition.value
    if isinstance(values, str | bytes | Mapping) or not isinstance(
        values, list | tuple | set | frozenset
    ):
        raise PermanentError(
            f"filter {condition.path!r} 'in' in container {spec.name} needs a list of values",
            resource=spec.name,
        )
    if len(values) > MAX_IN_VALUES:
        raise PermanentError(
            f"filter {condition.path!r} 'in' in container {spec.name} has {len(values)} values,"
            f" over the limit of {MAX_IN_VALUES}",
            resource=spec.name,
        )
    return [check_scalar(spec, condition, value) for value in values]


def refuse_not_equals_none(spec: ContainerSpec, condition: Filter) -> NoReturn:
    """`!= None` matches nothing in Cosmos DB (a comparison across types is undefined)."""
    raise PermanentError(
        f"filter {condition.path!r} '!=' None in container {spec.name} would match nothing;"
        " use 'exists' or '==' None",
        resource=spec.name,
    )


def exists_wanted(spec: ContainerSpec, condition: Filter) -> bool:
    """An `exists` filter's value: True/None (defined) or False (not defined)."""
    if condition.value is None or condition.value is True:
        return True
    if condition.value is False:
        return False
    raise PermanentError(
        f"filter {condition.path!r} 'exists' in container {spec.name} takes True, False or"
        f" None, got {condition.value!r}",
        resource=spec.name,
    )


def check_comparison(spec: ContainerSpec, condition: Filter) -> None:
    if condition.op not in COMPARISONS:
        raise PermanentError(
            f"unknown filter operator {condition.op!r} on {condition.path!r} in container"
            f" {spec.name}",
            resource=spec.name,
        )


def check_limit(container: str, limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise PermanentError(
            f"limit must be an integer from 1 to {MAX_PAGE_SIZE}, got {limit!r}",
            resource=container,
        )
    return limit
