"""The webhook group commit in a writer process: what it writes, how a failure reaches the
delivery, and that the writer never outlives or outruns its host."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core import containers
from core.adapters.local.sqlite_bus import SqliteBus
from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.config import Settings
from core.errors import TransientError
from core.messaging import topology
from core.models.events import decode_envelope
from core.ports import OutboundMessage
from core.runtime import Runtime
from core.webhooks import commit_process
from core.webhooks.commit import GroupCommit, PendingCommit, Publication
from core.webhooks.commit_process import ProcessGroupCommit
from core.webhooks.events import WebhookReceivedDraft, message_id_for, parse_webhook_received

QUEUE = topology.INTEGRATION_COMMUNICATIONS


def _keyed(key: str, entity: str = QUEUE) -> PendingCommit:
    message = OutboundMessage(
        body=b'{"n": 1}',
        message_id=f"id-{key}",
        correlation_id="corr-1",
        application_properties={"eventType": "integration.webhook.received", "tenantId": "t1"},
    )
    document = {"id": f"doc-{key}", "key": key, "tenantId": "t1"}
    return PendingCommit([Publication(entity, message, document)])


async def _commit_all(committer: ProcessGroupCommit, batch: list[PendingCommit]) -> list:
    return await asyncio.gather(*(committer.commit(p) for p in batch), return_exceptions=True)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(DATA_DIR=str(tmp_path))


@pytest.fixture
def committer(settings: Settings):
    woken: list[set[str]] = []
    committer = ProcessGroupCommit(settings, on_committed=lambda e: woken.append(set(e)))
    committer.woken = woken  # type: ignore[attr-defined]
    yield committer
    committer.close()


def test_concurrent_commits_land_once_and_wake_local_receivers(
    committer: ProcessGroupCommit, tmp_path: Path
) -> None:
    batch = [_keyed("k1"), _keyed("k2"), _keyed("k1")]
    assert asyncio.run(_commit_all(committer, batch)) == [None, None, None]
    again = _keyed("k2")
    asyncio.run(committer.commit(again))

    assert [(p.published, p.repeats) for p in batch] == [(1, 0), (1, 0), (0, 1)]
    assert (again.published, again.repeats) == (0, 1)
    with SqliteBus(tmp_path / "bus.sqlite") as bus:
        assert [m.message_id for m in bus.receive(QUEUE, max_messages=10)] == ["id-k1", "id-k2"]
    store = SqliteDocumentStore(tmp_path / "store.sqlite")
    try:
        found = store.get_many(containers.IDEMPOTENCY.name, [("k1", "doc-k1"), ("k2", "doc-k2")])
    finally:
        store.close()
    assert len(found) == 2
    assert set().union(*committer.woken) == {QUEUE}  # type: ignore[attr-defined]


def test_commits_from_several_event_loops_share_the_writer(
    committer: ProcessGroupCommit, tmp_path: Path
) -> None:
    outcomes: dict[str, object] = {}

    def commit(key: str) -> None:
        pending = _keyed(key)
        asyncio.run(committer.commit(pending))
        outcomes[key] = (pending.published, pending.repeats)

    threads = [threading.Thread(target=commit, args=(f"k{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert outcomes == {f"k{n}": (1, 0) for n in range(4)}
    with SqliteBus(tmp_path / "bus.sqlite") as bus:
        assert bus.depth(QUEUE).active == 4


def test_a_delivery_the_writer_cannot_write_fails_alone_as_transient(
    committer: ProcessGroupCommit, tmp_path: Path
) -> None:
    good, bad = _keyed("k1"), _keyed("k2", entity="nowhere")
    results = asyncio.run(_commit_all(committer, [good, bad]))

    assert results[0] is None
    assert good.published == 1
    assert isinstance(results[1], TransientError)
    assert "nowhere" in str(results[1])
    with SqliteBus(tmp_path / "bus.sqlite") as bus:
        assert [m.message_id for m in bus.receive(QUEUE, max_messages=10)] == ["id-k1"]


def test_the_writer_builds_drafted_messages_and_a_draft_it_cannot_build_fails_alone(
    committer: ProcessGroupCommit, tmp_path: Path
) -> None:
    fields = {
        "integration_id": "int-1",
        "tenant_id": "t1",
        "registration_id": "reg-1",
        "provider": "slack",
        "event_id": "Ev1",
        "event_type": "message",
        "idempotency_key": "webhook:int-1:Ev1",
        "correlation_id": "corr-1",
        "received_at": datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
        "payload": {"text": "hello"},
    }
    moment = "2026-11-22T10:00:00+00:00"
    good = PendingCommit([Publication(QUEUE, WebhookReceivedDraft(fields, moment), None)])
    bad = PendingCommit(
        [Publication(QUEUE, WebhookReceivedDraft({**fields, "tenant_id": ""}, moment), None)]
    )

    results = asyncio.run(_commit_all(committer, [good, bad]))

    assert results[0] is None
    assert isinstance(results[1], RuntimeError)
    assert "tenant_id" in str(results[1])
    with SqliteBus(tmp_path / "bus.sqlite") as bus:
        (message,) = bus.receive(QUEUE, max_messages=10)
    envelope = decode_envelope(message.body)
    assert envelope.time == fields["received_at"]
    assert parse_webhook_received(envelope).payload == {"text": "hello"}
    assert message.message_id == message_id_for("webhook:int-1:Ev1")


def test_a_writer_that_dies_fails_its_commits_and_the_next_one_starts_another(
    committer: ProcessGroupCommit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> list:
        await committer.commit(_keyed("k1"))
        process = committer._process
        assert process is not None
        process.kill()
        process.wait(30)
        with pytest.raises(TransientError, match="went away"):
            await committer.commit(_keyed("k2"))
        with pytest.raises(TransientError, match="restarts shortly"):
            await committer.commit(_keyed("k2"))
        monkeypatch.setattr(commit_process, "RESTART_INTERVAL_SECONDS", 0.0)
        await committer.commit(_keyed("k3"))
        assert committer._process is not process
        return [process.returncode]

    assert asyncio.run(scenario()) == [-signal.SIGKILL]
    with SqliteBus(tmp_path / "bus.sqlite") as bus:
        received = bus.receive(QUEUE, max_messages=10)
    assert [m.message_id for m in received] == ["id-k1", "id-k3"]


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="no SCHED_BATCH on this platform")
def test_the_writer_runs_as_a_batch_process(committer: ProcessGroupCommit) -> None:
    asyncio.run(committer.commit(_keyed("k1")))
    assert committer._process is not None

    assert os.sched_getscheduler(committer._process.pid) == os.SCHED_BATCH


def test_close_ends_the_writer_and_removes_its_socket(committer: ProcessGroupCommit) -> None:
    asyncio.run(committer.commit(_keyed("k1")))
    process, directory = committer._process, committer._directory
    assert process is not None
    assert directory is not None
    assert directory.exists()

    committer.close()

    assert process.returncode == 0
    assert not directory.exists()


def test_the_writer_exits_and_cleans_up_when_its_host_is_killed(tmp_path: Path) -> None:
    host = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import asyncio, time
                from core.config import Settings
                from core.webhooks.commit_process import ProcessGroupCommit
                from tests.unit.test_webhook_commit_process import _keyed
                committer = ProcessGroupCommit(Settings(DATA_DIR={str(tmp_path)!r}))
                asyncio.run(committer.commit(_keyed("k1")))
                print(committer._process.pid, committer._directory, flush=True)
                time.sleep(600)
                """
            ),
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        pid, directory = host.stdout.readline().split()
        writer_pid = int(pid)
        host.kill()
        host.wait(30)
        deadline = time.monotonic() + 30
        while _alive(writer_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(writer_pid)
        assert not Path(directory).exists()
    finally:
        host.kill()


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, already exited and waiting for its parent, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_the_runtime_writes_webhooks_from_a_process_on_the_sqlite_bus(tmp_path: Path) -> None:
    local = Runtime(Settings(DATA_DIR=str(tmp_path)))
    threaded = Runtime(Settings(DATA_DIR=str(tmp_path), WEBHOOK_COMMIT_PROCESS=False))
    try:
        assert isinstance(local.webhook_receiver._committer, ProcessGroupCommit)
        assert isinstance(threaded.webhook_receiver._committer, GroupCommit)
    finally:
        local.close()
        threaded.close()
