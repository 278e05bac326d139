"""SQLite bus throughput against raw SQLite on the same machine, in one run.

Baseline: insert and delete rows of the same size as a bus message, each statement its
own transaction, with the bus's pragmas (WAL, synchronous=NORMAL) — the least work any
durable queue on SQLite must do per message. Then the bus: messages pre-sent in batches,
drained by 1 and by 4 consumer threads with peek-lock receive + complete. The target is
at least 30 % of the raw rate.

Run from the repository root: `python -m benchmarks.bus_throughput` or
`python benchmarks/bus_throughput.py`.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.adapters.local.sqlite_bus import SqliteBus
from core.messaging.topology import QueueSpec, Topology
from core.ports import OutboundMessage

QUEUE = "bench"
TARGET_RATIO = 0.30
PROPERTIES = {"eventType": "integration.data.raw", "tenantId": "tenant-bench"}


@dataclass(frozen=True, slots=True)
class BusRun:
    send_seconds: float
    consume_seconds: float


def raw_seconds(path: Path, messages: int, body: bytes) -> float:
    """Insert then delete `messages` rows, one autocommit transaction per statement."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE raw_messages (seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL, "
        "properties TEXT, body BLOB NOT NULL)"
    )
    properties = '{"eventType":"integration.data.raw","tenantId":"tenant-bench"}'
    ids = [uuid.uuid4().hex for _ in range(messages)]
    started = time.perf_counter()
    sequence_numbers = [
        conn.execute(
            "INSERT INTO raw_messages (message_id, properties, body) VALUES (?, ?, ?)",
            (message_id, properties, body),
        ).lastrowid
        for message_id in ids
    ]
    for seq in sequence_numbers:
        conn.execute("DELETE FROM raw_messages WHERE seq = ?", (seq,))
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def bus_run(
    path: Path, messages: int, body: bytes, batch: int, consumers: int, max_messages: int
) -> BusRun:
    topology = Topology(queues=(QueueSpec(QUEUE),), topics=())
    with SqliteBus(path, topology) as bus:
        outbound = [
            OutboundMessage(
                body=body, message_id=uuid.uuid4().hex, application_properties=PROPERTIES
            )
            for _ in range(messages)
        ]
        started = time.perf_counter()
        for start in range(0, messages, batch):
            bus.send(QUEUE, outbound[start : start + batch])
        send_seconds = time.perf_counter() - started

        completed = [0] * consumers
        failures: list[BaseException] = []

        def consume(index: int) -> None:
            try:
                while received := bus.receive(QUEUE, max_messages=max_messages):
                    for message in received:
                        bus.complete(message)
                    completed[index] += len(received)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        consume_seconds = time.perf_counter() - started
        if failures:
            raise failures[0]
        if sum(completed) != messages or bus.depth(QUEUE).active:
            raise RuntimeError(f"drained {sum(completed)} of {messages} messages")
    return BusRun(send_seconds, consume_seconds)


SCENARIOS = ((1, 1), (4, 1), (4, 10))
"""(consumer threads, max_messages per receive)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--body-bytes", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=100, help="messages per send call")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; the best of each is kept"
    )
    args = parser.parse_args()
    body = b"x" * args.body_bytes

    raw_best = float("inf")
    best: dict[tuple[int, int], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bus-bench-") as folder:
        root = Path(folder)
        for round_number in range(args.rounds):
            raw = raw_seconds(root / f"raw-{round_number}.db", args.messages, body)
            raw_best = min(raw_best, raw)
            for consumers, max_messages in SCENARIOS:
                path = root / f"bus-{round_number}-{consumers}-{max_messages}.db"
                run = bus_run(path, args.messages, body, args.batch, consumers, max_messages)
                consume, total = best.get((consumers, max_messages), (float("inf"),) * 2)
                best[consumers, max_messages] = (
                    min(consume, run.consume_seconds),
                    min(total, run.send_seconds + run.consume_seconds),
                )

    raw_rate = args.messages / raw_best
    print(
        f"SQLite {sqlite3.sqlite_version}, {args.messages} messages of {args.body_bytes} B body, "
        f"sent in batches of {args.batch}; best of {args.rounds} interleaved rounds"
    )
    print(f"{'scenario':<58}{'msgs/s':>10}{'vs raw':>8}")
    print(f"{'raw SQLite: insert + delete, one transaction each':<58}{raw_rate:>10,.0f}{1:>8.2f}")
    worst = float("inf")
    for (consumers, max_messages), (consume, total) in best.items():
        plural = "s" if consumers > 1 else ""
        label = f"bus: {consumers} consumer{plural}, receive {max_messages}/call"
        for phase, seconds in (("receive+complete", consume), ("total incl. send", total)):
            rate = args.messages / seconds
            worst = min(worst, rate / raw_rate)
            print(f"{label + ', ' + phase:<58}{rate:>10,.0f}{rate / raw_rate:>8.2f}")
    verdict = "met" if worst >= TARGET_RATIO else "NOT met"
    print(f"target >= {TARGET_RATIO:.0%} of raw: {verdict} (lowest ratio {worst:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
