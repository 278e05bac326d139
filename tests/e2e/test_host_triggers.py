import json
import time

import httpx
import pytest

from core.adapters.local.folder_blobs import FolderBlobStore
from core.adapters.local.sqlite_bus import SqliteBus
from core.messaging.topology import QueueSpec
from core.models.events import EventEnvelope
from core.ports import OutboundMessage
from tests.e2e.apps import probe_app
from tests.e2e.conftest import HostProcess, attempts, effects, wait_for

pytestmark = pytest.mark.e2e

PROBE = "tests.e2e.apps.probe_app:app"


def _bus(data_dir) -> SqliteBus:
    data_dir.mkdir(parents=True, exist_ok=True)
    bus = SqliteBus(data_dir / "bus.sqlite")
    for name in (probe_app.WORK_QUEUE, probe_app.ENVELOPE_QUEUE, probe_app.FLAKY_QUEUE):
        if name not in bus.entities():
            bus.create_queue(QueueSpec(name))
    return bus


@pytest.fixture
def probe(start_host, tmp_path):
    data_dir = tmp_path / "data"
    bus = _bus(data_dir)
    host = start_host(PROBE, data_dir=data_dir)
    yield host, bus
    bus.close()


def test_http_route_templates(probe):
    host, _ = probe
    response = httpx.post(f"{host.url}/api/items/42/detail?x=1", content=b"hello")
    assert response.json() == {
        "route": {"id": "42", "part": "detail"},
        "query": {"x": "1"},
        "body": "hello",
    }
    assert httpx.get(f"{host.url}/api/items/42").json()["route"] == {"id": "42"}
    assert httpx.get(f"{host.url}/api/items/abc").status_code == 404


def test_malformed_messages_are_dead_lettered_at_once_with_the_reason(probe):
    host, bus = probe
    good = EventEnvelope(type="test.event", source="t", tenantId="t1", correlationId="corr-1")
    future = json.loads(good.to_json_bytes()) | {"id": "future", "schemaVersion": "2.0"}
    bus.send(
        probe_app.ENVELOPE_QUEUE,
        [
            OutboundMessage(body=b"not json at all", message_id="m-not-json"),
            OutboundMessage(body=b'{"type": "x"}', message_id="m-no-envelope"),
            OutboundMessage(body=json.dumps(future).encode(), message_id="m-future"),
            good.to_message(),
        ],
    )
    wait_for(lambda: effects(host.data_dir, "envelope"))
    assert effects(host.data_dir, "envelope") == {good.id: "corr-1"}
    dead = {
        m.message_id: m
        for m in wait_for(
            lambda: (
                len(bus.peek_dead_letters(probe_app.ENVELOPE_QUEUE)) == 3
                and bus.peek_dead_letters(probe_app.ENVELOPE_QUEUE)
            )
        )
    }
    assert dead["m-not-json"].dead_letter_reason == "InvalidJson"
    assert dead["m-no-envelope"].dead_letter_reason == "InvalidEnvelope"
    assert "tenantId" in (dead["m-no-envelope"].dead_letter_description or "")
    assert dead["m-future"].dead_letter_reason == "UnsupportedSchemaVersion"
    assert all(m.delivery_count == 1 for m in dead.values())
    assert "dead-lettering message m-not-json" in host.logs()


def test_a_failing_function_is_retried_to_max_delivery_then_dead_lettered(probe):
    host, bus = probe
    bus.send(probe_app.FLAKY_QUEUE, [OutboundMessage(body=b"{}", message_id="flaky-1")])
    dead = wait_for(lambda: bus.peek_dead_letters(probe_app.FLAKY_QUEUE), timeout=60)
    assert dead[0].dead_letter_reason == "MaxDeliveryCountExceeded"
    assert "flaky failure on delivery 5" in (dead[0].dead_letter_description or "")
    assert attempts(host.data_dir, "flaky-attempt") == 5
    assert bus.depth(probe_app.FLAKY_QUEUE).active == 0


def test_timer_runs_on_startup_and_on_schedule(probe):
    host, _ = probe
    wait_for(lambda: len(effects(host.data_dir, "tick")) >= 3, timeout=15)


def test_blob_trigger_fires_once_per_new_blob_and_resumes_after_restart(probe, start_host):
    host, _ = probe
    blobs = FolderBlobStore(host.data_dir / "blobs")
    blobs.put("inbox", "a.txt", b"alpha")
    blobs.put("other", "b.txt", b"ignored")
    wait_for(lambda: effects(host.data_dir, "blob").get("inbox/a.txt") == "alpha")
    host.terminate()
    blobs.put("inbox", "c.txt", b"gamma")
    again = start_host(PROBE, data_dir=host.data_dir)
    wait_for(lambda: "inbox/c.txt" in effects(again.data_dir, "blob"))
    time.sleep(1)
    assert set(effects(again.data_dir, "blob")) == {"inbox/a.txt", "inbox/c.txt"}
    assert attempts(again.data_dir, "blob") == 2


def test_host_refuses_to_start_when_a_trigger_entity_is_missing(tmp_path):
    host = HostProcess(tmp_path / "empty", PROBE)
    with pytest.raises(RuntimeError) as caught:
        host.start(timeout=30)
    assert "test-work" in str(caught.value)
