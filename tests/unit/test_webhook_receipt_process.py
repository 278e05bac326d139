"""Webhook receipt in a process of its own: deliveries through it, registration changes and
health through the host, metrics in the host, and that the process never outlives or
outruns its host."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.adapters.local.sqlite_bus import SqliteBus
from core.config import Settings
from core.integrations.repository import IntegrationConfigCache, IntegrationRepository
from core.integrations.service import IntegrationService
from core.messaging import topology
from core.metrics import REGISTRY
from core.models.events import decode_envelope
from core.runtime import Runtime
from core.webhooks import receipt_process
from core.webhooks.events import message_id_for, parse_webhook_received
from core.webhooks.receipt_process import ReceiptProcess
from core.webhooks.receiver import WebhookDelivery, WebhookReceiver, WebhookReply

QUEUE = topology.INTEGRATION_COMMUNICATIONS
TENANT = "tenant-rp"
SECRET = "receipt-process-test-signing-secret"


@dataclass
class Setup:
    runtime: Runtime
    receipts: ReceiptProcess
    integration_id: str
    registration_id: str
    woken: list[set[str]]

    def delivery(self, event_id: str, *, tamper: bool = False) -> WebhookDelivery:
        body = json.dumps(
            {
                "type": "event_callback",
                "team_id": "T1",
                "event_id": event_id,
                "event": {"type": "message", "text": f"hello {event_id}"},
            }
        ).encode()
        stamp = str(int(time.time()))
        digest = hmac.new(
            SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256
        ).hexdigest()
        return WebhookDelivery(
            scheme="slack",
            integration_id=self.integration_id,
            method="POST",
            url=f"http://127.0.0.1/api/webhooks/slack/{self.integration_id}",
            headers={
                "content-type": "application/json",
                "x-slack-request-timestamp": stamp,
                "x-slack-signature": f"v0={digest}",
            },
            body=body + b" " if tamper else body,
        )

    def receive(self, *deliveries: WebhookDelivery) -> list[WebhookReply]:
        async def all_of() -> list[WebhookReply]:
            return list(await asyncio.gather(*(self.receipts.receive(d) for d in deliveries)))

        return asyncio.run(all_of())

    def health(self) -> dict[str, object]:
        (registration,) = self.receipts.registrations.list(TENANT, self.integration_id)
        return registration.health.model_dump(by_alias=True)

    def queued(self) -> list[str]:
        with SqliteBus(Path(self.runtime.settings.data_dir) / "bus.sqlite") as bus:
            return [m.message_id for m in bus.receive(QUEUE, max_messages=50)]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    (tmp_path / "crm").mkdir()
    runtime = Runtime(Settings(DATA_DIR=str(tmp_path / "data")))
    integrations = IntegrationService(
        runtime.store,
        runtime.clock,
        IntegrationConfigCache(IntegrationRepository(runtime.store)),
        validation_mode="lenient",
    )
    integration_id = integrations.create(
        TENANT, {"provider": "files", "name": "CRM", "config": {"path": str(tmp_path / "crm")}}
    ).id
    woken: list[set[str]] = []
    receipts = ReceiptProcess(
        runtime.settings,
        runtime.store,
        runtime.secrets,
        runtime.clock,
        on_committed=lambda entities: woken.append(set(entities)),
    )
    registration, _ = receipts.registrations.create(
        TENANT, integration_id, {"provider": "slack", "secret": SECRET}
    )
    yield Setup(runtime, receipts, integration_id, registration.id, woken)
    receipts.close()


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_total", labels) or 0.0


def test_deliveries_are_verified_deduplicated_and_published_by_the_receipt_process(
    setup: Setup,
) -> None:
    before = {
        outcome: _counter("webhooks_received", provider="slack", outcome=outcome)
        for outcome in ("accepted", "duplicate", "rejected")
    }

    replies = setup.receive(
        setup.delivery("Ev1"), setup.delivery("Ev2"), setup.delivery("Ev1", tamper=True)
    )
    (repeat,) = setup.receive(setup.delivery("Ev1"))

    assert [reply.status for reply in replies] == [200, 200, 401]
    assert b"failed" in replies[2].body
    assert repeat.status == 200
    key = f"webhook:{setup.integration_id}:Ev1"
    queued = setup.queued()
    assert sorted(queued) == sorted(
        [message_id_for(key), message_id_for(f"webhook:{setup.integration_id}:Ev2")]
    )
    assert {QUEUE} in setup.woken
    # the receipt process's counts reach this process's metrics
    after = {
        outcome: _counter("webhooks_received", provider="slack", outcome=outcome)
        for outcome in ("accepted", "duplicate", "rejected")
    }
    assert {k: after[k] - before[k] for k in after} == {
        "accepted": 2,
        "duplicate": 1,
        "rejected": 1,
    }
    # health tallied in the receipt process, written when the API asks
    setup.receipts.flush_health(TENANT)
    health = setup.health()
    assert (health["receivedCount"], health["failureCount"]) == (3, 1)
    assert health["lastFailureReason"] == "signature"


def test_the_message_is_the_one_an_in_process_receiver_publishes(setup: Setup) -> None:
    (reply,) = setup.receive(setup.delivery("Ev9"))

    assert reply.status == 200
    with SqliteBus(Path(setup.runtime.settings.data_dir) / "bus.sqlite") as bus:
        (message,) = bus.receive(QUEUE, max_messages=10)
    event = parse_webhook_received(decode_envelope(message.body))
    assert (event.tenant_id, event.event_id, event.provider) == (TENANT, "Ev9", "slack")
    assert event.payload["event"] == {"type": "message", "text": "hello Ev9"}


def test_a_receiver_failure_in_the_receipt_process_fails_that_delivery_alone(
    setup: Setup,
) -> None:
    good = setup.delivery("Ev1")
    broken = dataclasses.replace(setup.delivery("Ev2"), body="not bytes")  # type: ignore[arg-type]

    async def both() -> list[WebhookReply | BaseException]:
        return await asyncio.gather(
            setup.receipts.receive(good), setup.receipts.receive(broken), return_exceptions=True
        )

    reply, failure = asyncio.run(both())

    assert isinstance(reply, WebhookReply)
    assert reply.status == 200
    assert isinstance(failure, RuntimeError)
    assert "webhook receipt failed: TypeError" in str(failure)
    assert len(setup.queued()) == 1


def test_deliveries_from_several_event_loops_share_one_receipt_process(setup: Setup) -> None:
    statuses: dict[int, int] = {}

    def deliver(number: int) -> None:
        (reply,) = setup.receive(setup.delivery(f"Ev{number}"))
        statuses[number] = reply.status

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert statuses == dict.fromkeys(range(4), 200)
    assert len(setup.queued()) == 4


def test_a_registration_deleted_through_the_api_stops_working_at_once(setup: Setup) -> None:
    (first,) = setup.receive(setup.delivery("Ev1"))  # now cached by the receipt process

    setup.receipts.registrations.delete(TENANT, setup.integration_id, setup.registration_id)
    (after,) = setup.receive(setup.delivery("Ev2"))

    assert (first.status, after.status) == (200, 401)
    assert len(setup.queued()) == 1


def test_a_receipt_process_that_cannot_be_told_of_a_change_is_stopped(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.receive(setup.delivery("Ev1"))
    process = setup.receipts._process
    assert process is not None

    def unreachable(kind: str, argument: object) -> None:
        raise receipt_process.TransientError("no answer")

    monkeypatch.setattr(setup.receipts, "_call", unreachable)
    setup.receipts.registrations.delete(TENANT, setup.integration_id, setup.registration_id)

    assert process.returncode == 0
    assert setup.receipts._process is None


def test_a_receipt_process_that_dies_answers_503_and_the_next_delivery_starts_another(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(receipt_process, "RESTART_INTERVAL_SECONDS", 3600.0)  # however slow CI is
    setup.receive(setup.delivery("Ev1"))
    process = setup.receipts._process
    assert process is not None

    async def in_flight_when_it_dies() -> WebhookReply:
        os.kill(process.pid, signal.SIGSTOP)
        delivery = asyncio.ensure_future(setup.receipts.receive(setup.delivery("Ev2")))
        await asyncio.sleep(0.2)
        process.kill()
        return await delivery

    went_away = asyncio.run(in_flight_when_it_dies())
    process.wait(30)
    (too_soon,) = setup.receive(setup.delivery("Ev2"))
    monkeypatch.setattr(receipt_process, "RESTART_INTERVAL_SECONDS", 0.0)
    (restarted,) = setup.receive(setup.delivery("Ev2"))

    assert (went_away.status, too_soon.status, restarted.status) == (503, 503, 200)
    assert went_away.headers["Retry-After"] == "5"
    assert setup.receipts._process is not process
    assert len(setup.queued()) == 2


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="no SCHED_BATCH on this platform")
def test_the_receipt_process_runs_as_a_batch_process(setup: Setup) -> None:
    setup.receive(setup.delivery("Ev1"))
    assert setup.receipts._process is not None

    assert os.sched_getscheduler(setup.receipts._process.pid) == os.SCHED_BATCH


def test_close_ends_the_receipt_process_writes_its_health_and_removes_its_socket(
    setup: Setup,
) -> None:
    setup.receive(setup.delivery("Ev1"))
    process, directory = setup.receipts._process, setup.receipts._directory
    assert process is not None
    assert directory is not None
    assert directory.exists()

    setup.receipts.close()

    assert process.returncode == 0
    assert not directory.exists()
    assert setup.health()["receivedCount"] == 1


def test_the_receipt_process_exits_and_cleans_up_when_its_host_is_killed(
    setup: Setup,
) -> None:
    host = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import asyncio
                import time
                from core.config import Settings
                from core.runtime import Runtime
                from core.webhooks.receiver import WebhookDelivery
                runtime = Runtime(Settings(DATA_DIR={str(setup.runtime.settings.data_dir)!r}))
                receipts = runtime.webhook_receiver
                reply = asyncio.run(receipts.receive(WebhookDelivery(
                    "slack", {setup.integration_id!r}, "POST", "http://x", {{}}, b"{{}}"
                )))
                assert reply.status == 401, reply
                print("ready", receipts._process.pid, receipts._directory, flush=True)
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
        # the receipt process logs to the same stdout
        line = next(line for line in host.stdout if line.startswith("ready "))
        _, pid, directory = line.split()
        receipt_pid = int(pid)
        host.kill()
        host.wait(30)
        deadline = time.monotonic() + 30
        while _alive(receipt_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(receipt_pid)
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


def test_the_runtime_receives_in_a_process_on_the_sqlite_bus_only_when_set(
    tmp_path: Path,
) -> None:
    local = Runtime(Settings(DATA_DIR=str(tmp_path)))
    in_process = Runtime(Settings(DATA_DIR=str(tmp_path), WEBHOOK_RECEIPT_PROCESS=False))
    try:
        assert isinstance(local.webhook_receiver, ReceiptProcess)
        assert isinstance(in_process.webhook_receiver, WebhookReceiver)
    finally:
        local.close()
        in_process.close()


def test_where_the_platform_has_no_unix_sockets_the_runtime_receives_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(receipt_process.socket, "AF_UNIX")
    runtime = Runtime(Settings(DATA_DIR=str(tmp_path)))
    try:
        assert not receipt_process.supported()
        assert isinstance(runtime.webhook_receiver, WebhookReceiver)
    finally:
        runtime.close()
