"""Claim check against the folder blob store: offload, resolve, and every refusal."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.adapters.local.folder_blobs import FolderBlobStore
from core.errors import NotFoundError, PermanentError
from core.messaging.claim_check import (
    CLAIM_CHECK_CONTAINER,
    CLAIM_CHECK_PROPERTY,
    offload,
    reference_of,
    resolve,
)

LIMIT = 1024


@pytest.fixture
def blobs(tmp_path: Path) -> Iterator[FolderBlobStore]:
    store = FolderBlobStore(tmp_path / "blobs")
    yield store
    store.close()


def test_a_body_within_the_limit_passes_through(blobs: FolderBlobStore) -> None:
    body = b"x" * LIMIT

    sent, properties = offload(blobs, body, LIMIT)

    assert (sent, properties) == (body, {})
    assert list(blobs.list(CLAIM_CHECK_CONTAINER)) == []
    assert resolve(blobs, sent, properties) == body


def test_a_body_over_the_limit_goes_to_a_dated_blob_and_comes_back(
    blobs: FolderBlobStore,
) -> None:
    body = json.dumps({"rawData": "y" * 5000}).encode()

    sent, properties = offload(
        blobs, body, LIMIT, content_type="application/json", now=datetime(2024, 3, 9, tzinfo=UTC)
    )

    assert len(sent) < LIMIT
    reference = json.loads(sent)["claimCheck"]
    assert reference["container"] == CLAIM_CHECK_CONTAINER
    assert reference["name"].startswith("2024/03/09/")
    assert reference["size"] == len(body)
    assert reference["sha256"] == hashlib.sha256(body).hexdigest()
    assert properties == {CLAIM_CHECK_PROPERTY: f"{CLAIM_CHECK_CONTAINER}/{reference['name']}"}
    info = blobs.info(CLAIM_CHECK_CONTAINER, reference["name"])
    assert info is not None
    assert info.content_type == "application/json"
    assert blobs.get(CLAIM_CHECK_CONTAINER, reference["name"]) == body
    assert resolve(blobs, sent, {**properties, "eventType": "x"}) == body


def test_each_offload_gets_its_own_blob(blobs: FolderBlobStore) -> None:
    first = offload(blobs, b"a" * 2000, LIMIT)[1]
    second = offload(blobs, b"a" * 2000, LIMIT)[1]

    assert first != second
    assert len(list(blobs.list(CLAIM_CHECK_CONTAINER))) == 2


def test_a_missing_blob_is_not_found(blobs: FolderBlobStore) -> None:
    sent, properties = offload(blobs, b"z" * 2000, LIMIT)
    name = json.loads(sent)["claimCheck"]["name"]
    blobs.delete(CLAIM_CHECK_CONTAINER, name)

    with pytest.raises(NotFoundError, match=name):
        resolve(blobs, sent, properties)


def test_a_changed_blob_is_refused(blobs: FolderBlobStore) -> None:
    sent, properties = offload(blobs, b"z" * 2000, LIMIT)
    name = json.loads(sent)["claimCheck"]["name"]
    blobs.put(CLAIM_CHECK_CONTAINER, name, b"q" * 2000)

    with pytest.raises(PermanentError, match="does not match its reference"):
        resolve(blobs, sent, properties)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"claimCheck": {"container": "claim-checks"}}',
        b'{"claimCheck": {"container": "claim-checks", "name": "n", "size": 1, "sha256": "xyz"}}',
        b'{"other": 1}',
    ],
)
def test_a_marked_message_without_a_valid_reference_is_refused(
    blobs: FolderBlobStore, body: bytes
) -> None:
    with pytest.raises(PermanentError, match="claim check"):
        resolve(blobs, body, {CLAIM_CHECK_PROPERTY: "claim-checks/n"})


def test_the_property_must_name_the_referenced_blob(blobs: FolderBlobStore) -> None:
    sent, _ = offload(blobs, b"z" * 2000, LIMIT)

    with pytest.raises(PermanentError, match="does not match its reference body"):
        reference_of(sent, {CLAIM_CHECK_PROPERTY: "claim-checks/other"})
    assert reference_of(b"inline", {}) is None
