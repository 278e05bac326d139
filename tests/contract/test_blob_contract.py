"""BlobStore / BlobEventSource contract: what the domain and the blob trigger rely on."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from core.adapters.local.folder_blobs import FolderBlobStore
from core.errors import NotFoundError, PermanentError
from core.ports import BlobEventSource, BlobStore
from tests.contract.conftest import Backend, ManualClock


@pytest.fixture
def container(run_id: str) -> str:
    return f"c-{run_id}"


def test_put_then_get_and_info(blobs: BlobStore, container: str) -> None:
    put = blobs.put(
        container,
        "docs/2024/report.pdf",
        b"%PDF-1.7 data",
        content_type="application/pdf",
        metadata={"tenantId": "t1", "source_system": "drive"},
    )

    assert blobs.get(container, "docs/2024/report.pdf") == b"%PDF-1.7 data"
    info = blobs.info(container, "docs/2024/report.pdf")
    assert info == put
    assert info is not None
    assert (info.container, info.name, info.size) == (container, "docs/2024/report.pdf", 13)
    assert info.content_type == "application/pdf"
    assert info.metadata == {"tenantId": "t1", "source_system": "drive"}
    assert info.etag
    assert info.created_at.tzinfo is not None


def test_put_replaces_content_metadata_and_etag(blobs: BlobStore, container: str) -> None:
    first = blobs.put(container, "a.txt", b"one", metadata={"v": "1"})
    second = blobs.put(container, "a.txt", b"second", metadata={"w": "2"})

    assert blobs.get(container, "a.txt") == b"second"
    info = blobs.info(container, "a.txt")
    assert info is not None
    assert info.size == 6
    assert info.metadata == {"w": "2"}
    assert second.etag != first.etag
    assert info.etag == second.etag


def test_empty_blob(blobs: BlobStore, container: str) -> None:
    blobs.put(container, "empty", b"")

    assert blobs.get(container, "empty") == b""
    info = blobs.info(container, "empty")
    assert info is not None
    assert info.size == 0


def test_missing_blob_is_not_found_naming_it(blobs: BlobStore, container: str) -> None:
    with pytest.raises(NotFoundError) as error:
        blobs.get(container, "nope/missing.bin")
    assert f"{container}/nope/missing.bin" in str(error.value)
    assert blobs.info(container, "nope/missing.bin") is None

    blobs.put(container, "dir/present", b"x")
    with pytest.raises(NotFoundError):
        blobs.get(container, "dir")


def test_delete(blobs: BlobStore, container: str) -> None:
    blobs.put(container, "a/b.txt", b"x")

    assert blobs.delete(container, "a/b.txt") is True
    assert blobs.info(container, "a/b.txt") is None
    with pytest.raises(NotFoundError):
        blobs.get(container, "a/b.txt")
    assert blobs.delete(container, "a/b.txt") is False


def test_list_by_prefix_in_name_order(blobs: BlobStore, container: str, run_id: str) -> None:
    for name in ["in/b.json", "in/a.json", "in/sub/c.json", "out/a.json", "inbox.json"]:
        blobs.put(container, name, name.encode())
    blobs.put(f"o-{run_id}", "in/a.json", b"other container")

    def names(prefix: str) -> list[str]:
        return [info.name for info in blobs.list(container, prefix=prefix)]

    assert names("in/") == ["in/a.json", "in/b.json", "in/sub/c.json"]
    assert names("in") == ["in/a.json", "in/b.json", "in/sub/c.json", "inbox.json"]
    assert names("") == ["in/a.json", "in/b.json", "in/sub/c.json", "inbox.json", "out/a.json"]
    assert names("IN/") == []
    assert names("zzz") == []
    listed = next(iter(blobs.list(container, prefix="out/")))
    assert (listed.size, listed.container) == (len(b"out/a.json"), container)


@pytest.mark.parametrize(
    "name",
    ["", "../escape", "a/../../b", "/etc/passwd", "a//b", "a/./b", "a/", ".", "a\\b", "a\x00b"],
)
def test_bad_blob_names_are_refused(blobs: BlobStore, container: str, name: str) -> None:
    with pytest.raises(PermanentError):
        blobs.put(container, name, b"x")
    with pytest.raises(PermanentError):
        blobs.get(container, name)
    with pytest.raises(PermanentError):
        blobs.delete(container, name)


@pytest.mark.parametrize(
    "bad_container",
    ["ab", "x" * 64, "Upper", "under_score", "-lead", "trail-", "dou--ble", "has/slash", ".."],
)
def test_bad_container_names_are_refused_naming_them(blobs: BlobStore, bad_container: str) -> None:
    with pytest.raises(PermanentError, match="container"):
        blobs.put(bad_container, "a.txt", b"x")
    with pytest.raises(PermanentError, match="container"):
        blobs.get(bad_container, "a.txt")
    with pytest.raises(PermanentError, match="container"):
        list(blobs.list(bad_container))


@pytest.mark.parametrize("metadata", [{"bad-key": "v"}, {"1st": "v"}, {"k": "naïve"}, {"k": 5}])
def test_bad_metadata_is_refused_naming_the_key(
    blobs: BlobStore, container: str, metadata: dict[str, str]
) -> None:
    with pytest.raises(PermanentError, match=next(iter(metadata))):
        blobs.put(container, "a.txt", b"x", metadata=metadata)
    assert blobs.info(container, "a.txt") is None


def test_download_url_points_at_the_content(blobs: BlobStore, container: str) -> None:
    blobs.put(container, "media/call.wav", b"RIFF....")

    url = blobs.download_url(container, "media/call.wav", expires_in=timedelta(minutes=5))

    assert url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        assert Path(url2pathname(parsed.path)).read_bytes() == b"RIFF...."


def test_created_since_lists_new_and_overwritten_blobs_in_order(
    blob_backend: Backend[BlobStore], container: str
) -> None:
    blobs = blob_backend.adapter
    if not isinstance(blobs, BlobEventSource):
        pytest.skip("this blob store has no event source")
    start = max((info.sequence for info in blobs.created_since(0, limit=1000)), default=0)
    blobs.put(container, "one", b"1")
    blobs.put(container, "two", b"2")
    blobs.put(container, "three", b"3")
    blobs.put(container, "one", b"1 again")
    blobs.delete(container, "two")

    events = blobs.created_since(start)

    assert [info.name for info in events] == ["three", "one"]
    sequences = [info.sequence for info in events]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == 2
    assert blobs.created_since(sequences[0]) == events[1:]
    assert [info.name for info in blobs.created_since(start, limit=1)] == ["three"]


def test_created_since_survives_a_new_instance(
    blob_backend: Backend[BlobStore], container: str
) -> None:
    blobs = blob_backend.adapter
    if not isinstance(blobs, BlobEventSource):
        pytest.skip("this blob store has no event source")
    first = blobs.put(container, "before-restart", b"x")

    reopened = blob_backend.reopen()
    assert isinstance(reopened, BlobEventSource)
    later = reopened.put(container, "after-restart", b"y")

    assert later.sequence > first.sequence
    assert [info.name for info in reopened.created_since(first.sequence - 1)] == [
        "before-restart",
        "after-restart",
    ]
    assert reopened.get(container, "before-restart") == b"x"


def test_concurrent_puts_get_distinct_sequences(
    blob_backend: Backend[BlobStore], container: str
) -> None:
    clients = [blob_backend.adapter, blob_backend.reopen()]
    infos = []
    lock = threading.Lock()

    def put_many(client: BlobStore, worker: int) -> None:
        for n in range(20):
            info = client.put(container, f"w{worker}/{n}", f"{worker}-{n}".encode())
            with lock:
                infos.append(info)

    threads = [
        threading.Thread(target=put_many, args=(client, i)) for i, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(infos) == 40
    assert len({info.sequence for info in infos}) == 40
    assert len(list(blob_backend.adapter.list(container))) == 40
    assert blob_backend.adapter.get(container, "w1/7") == b"1-7"


def test_ping(blobs: BlobStore) -> None:
    blobs.ping()


# ------------------------------------------------------------------------ folder adapter only


def test_folder_blobs_are_plain_files_and_urls_are_file_urls(tmp_path: Path) -> None:
    clock = ManualClock()
    blobs = FolderBlobStore(tmp_path, clock=clock)

    info = blobs.put("docs", "a/b.txt", b"hello")

    assert (tmp_path / "docs" / "a" / "b.txt").read_bytes() == b"hello"
    assert [p.name for p in (tmp_path / "docs" / "a").iterdir()] == ["b.txt"]
    assert info.created_at.timestamp() == clock.now
    assert info.content_type == "application/octet-stream"
    url = blobs.download_url("docs", "a/b.txt", expires_in=timedelta(hours=1))
    assert url == (tmp_path / "docs" / "a" / "b.txt").resolve().as_uri()
    with pytest.raises(NotFoundError):
        blobs.download_url("docs", "a/missing", expires_in=timedelta(hours=1))
    blobs.close()


def test_folder_a_name_cannot_be_both_a_blob_and_a_folder(tmp_path: Path) -> None:
    blobs = FolderBlobStore(tmp_path)
    blobs.put("docs", "a", b"file")
    blobs.put("docs", "b/c", b"nested")

    with pytest.raises(PermanentError, match="docs/a/x"):
        blobs.put("docs", "a/x", b"under a file")
    with pytest.raises(PermanentError, match="docs/b"):
        blobs.put("docs", "b", b"over a folder")

    assert blobs.get("docs", "a") == b"file"
    assert blobs.get("docs", "b/c") == b"nested"
    assert [info.name for info in blobs.list("docs")] == ["a", "b/c"]
    assert not list((tmp_path / "docs").rglob("*.tmp"))
    blobs.close()
