"""Claim check: a message body over the inline limit travels through blob storage.

`offload` writes the body to the `claim-checks` container and returns a small reference
body plus the application properties that mark the message; `resolve` turns a received
message back into its original body, checking size and SHA-256 so a blob overwritten or
truncated in between is refused rather than processed. Messages under the limit pass
through unchanged, so consumers can call `resolve` on every message.

Reference body (JSON): `{"claimCheck": {"container", "name", "size", "sha256"}}`, and the
application property `claimCheck` = `"<container>/<name>"`. Blob names start with the
UTC date (`YYYY/MM/DD/`) so a lifecycle rule can delete old ones.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import PermanentError
from core.ports import BlobStore

CLAIM_CHECK_CONTAINER = "claim-checks"
CLAIM_CHECK_PROPERTY = "claimCheck"
REFERENCE_CONTENT_TYPE = "application/vnd.claim-check+json"


class ClaimCheckReference(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    container: str = Field(min_length=1)
    name: str = Field(min_length=1)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _ReferenceBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    claim_check: ClaimCheckReference = Field(alias="claimCheck")


def offload(
    blobs: BlobStore,
    body: bytes,
    limit: int,
    *,
    content_type: str | None = None,
    now: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """(`body`, {}) when it fits in `limit` bytes; otherwise the body is stored as a blob
    and the result is (reference body, {"claimCheck": "<container>/<name>"})."""
    if len(body) <= limit:
        return body, {}
    day = (now or datetime.now(UTC)).strftime("%Y/%m/%d")
    reference = ClaimCheckReference(
        container=CLAIM_CHECK_CONTAINER,
        name=f"{day}/{uuid.uuid4().hex}",
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    blobs.put(
        reference.container,
        reference.name,
        body,
        content_type=content_type,
        metadata={"sha256": reference.sha256},
    )
    reference_body = _ReferenceBody(claim_check=reference).model_dump_json(by_alias=True)
    return reference_body.encode(), {
        CLAIM_CHECK_PROPERTY: f"{reference.container}/{reference.name}"
    }


def reference_of(body: bytes, properties: Mapping[str, Any]) -> ClaimCheckReference | None:
    """The claim check a message carries, or None for an inline message."""
    marker = properties.get(CLAIM_CHECK_PROPERTY)
    if marker is None:
        return None
    try:
        reference = _ReferenceBody.model_validate(json.loads(body)).claim_check
    except (ValueError, ValidationError) as exc:
        raise PermanentError(
            f"message marked with claim check {marker!r} has no valid reference body: {exc}",
            resource=str(marker),
        ) from exc
    if marker != f"{reference.container}/{reference.name}":
        raise PermanentError(
            f"claim check property {marker!r} does not match its reference body"
            f" ({reference.container}/{reference.name})",
            resource=str(marker),
        )
    return reference


def resolve(blobs: BlobStore, body: bytes, properties: Mapping[str, Any]) -> bytes:
    """The original body of a received message (its own body when it is inline).
    NotFoundError if the blob is gone; PermanentError if it no longer matches."""
    reference = reference_of(body, properties)
    if reference is None:
        return body
    data = blobs.get(reference.container, reference.name)
    resource = f"{reference.container}/{reference.name}"
    if len(data) != reference.size or hashlib.sha256(data).hexdigest() != reference.sha256:
        raise PermanentError(
            f"claim-check blob {resource} does not match its reference"
            f" ({len(data)} bytes, expected {reference.size} with SHA-256 {reference.sha256})",
            resource=resource,
        )
    return data
