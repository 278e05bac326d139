"""The rules every store applies to a document before writing it: Cosmos DB's own limits
(id characters and length, item size), the partition key field, `ttl`, strict JSON. Both
store adapters call these, so the embedded store refuses exactly what Cosmos refuses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from core.errors import PermanentError
from core.ports import ContainerSpec

MAX_DOCUMENT_BYTES = 2 * 1024 * 1024  # Cosmos DB's item size limit
MAX_ID_BYTES = 1023  # Cosmos DB's id length limit
INVALID_ID_CHARS = frozenset("/\\?#")  # characters Cosmos DB refuses in an id
ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # built once: hot path


def document_keys(spec: ContainerSpec, doc: Any) -> tuple[str, str, int | None]:
    """The document's id, partition key and `ttl` (None when absent), validated."""
    if not isinstance(doc, Mapping):
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
    """Strict JSON (no NaN, no unknown types) within the item size limit."""
    try:
        text = ENCODER.encode(body)
    except (TypeError, ValueError) as exc:
        raise PermanentError(
            f"document {doc_id!r} in container {spec.name} is not JSON: {exc}",
            resource=spec.name,
        ) from exc
    if len(text) > MAX_DOCUMENT_BYTES:
        raise PermanentError(
            f"document {doc_id!r} in container {spec.name} is {len(text)} bytes,"
            f" over the {MAX_DOCUMENT_BYTES}-byte limit",
            resource=spec.name,
        )
    return text
