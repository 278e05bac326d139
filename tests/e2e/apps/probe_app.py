"""A Functions app used only by the host tests: each trigger kind, with effects recorded
idempotently in DATA_DIR/effects.sqlite so a test can count them from outside."""

import json
import os
import sqlite3
import time
from pathlib import Path

import azure.functions as func

from core.models.events import decode_envelope
from functions import ops

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(ops.bp)

WORK_QUEUE = "test-work"
ENVELOPE_QUEUE = "test-envelopes"
FLAKY_QUEUE = "test-flaky"


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(Path(os.environ["DATA_DIR"]) / "effects.sqlite", timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS effects (kind TEXT, key TEXT, value TEXT, PRIMARY KEY (kind, key))"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS attempts (kind TEXT, key TEXT)")
    return conn


def _record(kind: str, key: str, value: str = "") -> None:
    with _db() as conn:
        conn.execute("INSERT INTO attempts VALUES (?, ?)", (kind, key))
        conn.execute("INSERT OR IGNORE INTO effects VALUES (?, ?, ?)", (kind, key, value))


@app.service_bus_queue_trigger(
    arg_name="msg", queue_name=WORK_QUEUE, connection="ServiceBusConnection"
)
def work(msg: func.ServiceBusMessage) -> None:
    time.sleep(float(os.environ.get("PROBE_WORK_SECONDS", "0.005")))
    _record("work", json.loads(msg.get_body())["n"])


@app.service_bus_queue_trigger(
    arg_name="msg", queue_name=ENVELOPE_QUEUE, connection="ServiceBusConnection"
)
def envelopes(msg: func.ServiceBusMessage) -> None:
    event = decode_envelope(msg.get_body())
    _record("envelope", event.id, event.correlation_id)


@app.service_bus_queue_trigger(
    arg_name="msg", queue_name=FLAKY_QUEUE, connection="ServiceBusConnection"
)
def flaky(msg: func.ServiceBusMessage) -> None:
    _record("flaky-attempt", f"{msg.message_id}-{msg.delivery_count}")
    raise RuntimeError(f"flaky failure on delivery {msg.delivery_count}")


@app.timer_trigger(schedule="*/1 * * * * *", arg_name="timer", run_on_startup=True)
def tick(timer: func.TimerRequest) -> None:
    _record("tick", str(time.time_ns()))


@app.blob_trigger(arg_name="blob", path="inbox/{name}", connection="AzureWebJobsStorage")
def inbox(blob: func.InputStream) -> None:
    _record("blob", blob.name or "", blob.read().decode())


@app.route(route="items/{id:int}/{part?}", methods=["GET", "POST"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(
            {
                "route": dict(req.route_params),
                "query": dict(req.params),
                "body": req.get_body().decode(),
            }
        ),
        mimetype="application/json",
    )
