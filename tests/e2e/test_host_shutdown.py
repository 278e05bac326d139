"""SIGTERM mid-stream loses nothing and applies every message's effect exactly once."""

import json

import pytest

from core.adapters.local.sqlite_bus import SqliteBus
from core.messaging.topology import QueueSpec
from core.ports import OutboundMessage
from tests.e2e.apps import probe_app
from tests.e2e.conftest import attempts, effects, wait_for

pytestmark = pytest.mark.e2e

TOTAL = 1000


def test_sigterm_mid_way_then_restart_processes_every_message_once(start_host, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    bus = SqliteBus(data_dir / "bus.sqlite")
    for name in (probe_app.WORK_QUEUE, probe_app.ENVELOPE_QUEUE, probe_app.FLAKY_QUEUE):
        bus.create_queue(QueueSpec(name))
    env = {
        "PROBE_WORK_SECONDS": "0.01",
        "LOCAL_CONCURRENCY": "4",
        "LOCAL_SHUTDOWN_GRACE_SECONDS": "5",
    }
    host = start_host(probe_app.__name__ + ":app", env=env, data_dir=data_dir)
    bus.send(
        probe_app.WORK_QUEUE,
        [
            OutboundMessage(body=json.dumps({"n": str(n)}).encode(), message_id=f"work-{n}")
            for n in range(TOTAL)
        ],
    )
    wait_for(lambda: len(effects(data_dir, "work")) >= TOTAL // 4)
    assert host.terminate() == 0
    done_before_restart = len(effects(data_dir, "work"))
    assert done_before_restart < TOTAL, (
        "the host finished everything before SIGTERM; the test proves nothing"
    )
    assert "local host stopped" in host.logs()

    start_host(probe_app.__name__ + ":app", env=env, data_dir=data_dir)
    wait_for(lambda: len(effects(data_dir, "work")) == TOTAL, timeout=120)
    wait_for(
        lambda: bus.depth(probe_app.WORK_QUEUE).active + bus.depth(probe_app.WORK_QUEUE).locked == 0
    )

    assert set(effects(data_dir, "work")) == {str(n) for n in range(TOTAL)}
    assert attempts(data_dir, "work") >= TOTAL
    assert bus.peek_dead_letters(probe_app.WORK_QUEUE) == []
    bus.close()
