"""Webhook receipt throughput through the local host, beside `GET /api/health` in the same run.

Run from the repo root:
`python -m benchmarks.webhooks [--requests 3000] [--concurrency 16] [--rounds 3]`.

The host runs as a subprocess on a fresh data dir (LOG_LEVEL=WARNING), exactly as
`python -m core.local serve` runs it. A Slack registration is made through the tenant API,
then a bounded loopback load (a fixed number of requests over a fixed number of keep-alive
connections, each phase with a deadline) is sent to:

* `GET /api/health`: the HTTP stack alone (routing, the function call, the response);
* `POST /api/webhooks/slack/{integrationId}`: signed `event_callback` deliveries, each with
  its own event id, so every one is verified, checked against the idempotency container,
  enqueued on `integration_communications` and recorded before its 200.

Phases run health, then webhooks and health `--rounds` times (default 3); each round's ratio
is its webhooks/s over the mean of the health runs on either side, and the figure judged is
the median of the rounds (a 2-vCPU VM's speed drifts by a fifth between phases). Requests
are signed and encoded before the clock starts and sent by a bare asyncio protocol (see
`_Connection`), so the figures are the server's, not the client's. The
per-integration rate limit is raised for the run (WEBHOOK_RATE_PER_SECOND/BURST), since the
point is the receipt path's cost, not the limiter's refusals. After the run every webhook
must be on the queue (exit 1 otherwise). Target: >= 50 % of the health rate and >= 1,000
webhooks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.adapters.local.sqlite_bus import SqliteBus  # noqa: E402
from core.api.auth import LocalTokenVerifier, local_signing_key  # noqa: E402
from core.config import Settings  # noqa: E402
from core.messaging import topology  # noqa: E402

TENANT = "bench"
PHASE_DEADLINE_SECONDS = 120.0
TARGET_RATIO = 0.5
TARGET_RATE = 1000.0


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class PhaseResult:
    name: str
    requests: int
    failures: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    def line(self) -> str:
        return (
            f"{self.name:<9} {self.requests:>6} requests in {self.seconds:6.2f}s = "
            f"{self.rate:8.0f}/s   p50 {self.percentile(0.50):6.2f} ms   "
            f"p99 {self.percentile(0.99):6.2f} ms   non-2xx {self.failures}"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_host(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LOG_LEVEL": "WARNING",
        "WEBHOOK_RATE_PER_SECOND": "1000000",
        "WEBHOOK_RATE_BURST": "1000000",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("RUNTIME", None)
    log = log_path.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core.local",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"host exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"host not healthy within 60s; see {log_path}")


def _register_slack(base_url: str, data_dir: Path) -> tuple[str, str]:
    """(delivery path, signing secret) of a Slack registration made through the API."""
    key = local_signing_key(Settings(DATA_DIR=str(data_dir)))
    token = LocalTokenVerifier(key).issue(tenant_id=TENANT, roles=["tenant_admin"], subject="b")
    crm_dir = data_dir / "crm"
    crm_dir.mkdir(exist_ok=True)
    signing_secret = secrets.token_hex(16)
    with httpx.Client(
        base_url=f"{base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as api:
        created = api.post(
            "/integrations",
            json={"provider": "files", "name": "bench", "config": {"path": str(crm_dir)}},
        )
        created.raise_for_status()
        registered = api.post(
            f"/integrations/{created.json()['id']}/webhooks",
            json={"provider": "slack", "secret": signing_secret},
        )
        registered.raise_for_status()
    return registered.json()["url"], signing_secret


def _slack_deliveries(path: str, signing_secret: str, count: int, prefix: str) -> list[Request]:
    stamp = str(int(time.time()))
    requests = []
    for number in range(count):
        body = json.dumps(
            {
                "type": "event_callback",
                "team_id": "T0BENCH",
                "api_app_id": "A0BENCH",
                "event_id": f"Ev{prefix}{number:07d}",
                "event_time": int(stamp),
                "event": {
                    "type": "message",
                    "channel": "C0BENCH",
                    "user": "U0BENCH",
                    "text": f"benchmark message {number}",
                    "ts": f"{stamp}.{number:06d}",
                },
            }
        ).encode()
        digest = hmac.new(
            signing_secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": f"v0={digest}",
        }
        requests.append(Request("POST", path, headers, body))
    return requests


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending pre-encoded requests one at a time.

    A bare protocol rather than an HTTP client library: on two cores a general-purpose
    client spends about a millisecond of CPU per request (measured with httpx), as much as
    the server, so the load generator would be what is measured.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._waiter is None:
            return
        head = bytes(self._buffer[:end]).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self._buffer) < end + 4 + length:
            return
        del self._buffer[: end + 4 + length]
        self._waiter.set_result(int(head.split(" ", 2)[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection closed: {exc}"))

    async def send(self, raw: bytes) -> int:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _encode(request: Request, port: int) -> bytes:
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    lines.append(f"Content-Length: {len(request.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body


async def _run_phase(
    name: str, port: int, requests: Sequence[Request], concurrency: int
) -> PhaseResult:
    encoded = [_encode(request, port) for request in requests]
    latencies: list[float] = []
    failures = 0
    loop = asyncio.get_running_loop()
    connections = [
        (await loop.create_connection(_Connection, "127.0.0.1", port))[1]
        for _ in range(concurrency)
    ]
    position = 0

    async def worker(connection: _Connection) -> None:
        nonlocal failures, position
        while position < len(encoded):
            raw = encoded[position]
            position += 1
            started = time.perf_counter()
            status = await connection.send(raw)
            latencies.append(time.perf_counter() - started)
            if not 200 <= status < 300:
                failures += 1

    started = time.perf_counter()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(worker(connection) for connection in connections)),
            PHASE_DEADLINE_SECONDS,
        )
    finally:
        for connection in connections:
            connection.close()
    seconds = time.perf_counter() - started
    return PhaseResult(name, len(latencies), failures, seconds, latencies)


def _queued(data_dir: Path) -> int:
    bus = SqliteBus(data_dir / "bus.sqlite")
    try:
        return bus.depth(topology.INTEGRATION_COMMUNICATIONS).active
    finally:
        bus.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.webhooks")
    parser.add_argument("--requests", type=int, default=3000, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--warmup", type=int, default=300, help="requests per warm-up phase")
    parser.add_argument(
        "--rounds", type=int, default=3, help="webhook phases, each between two health phases"
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    data_dir = work / "data"
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    host = _start_host(data_dir, port, work / "host.log")
    try:
        path, signing_secret = _register_slack(base_url, data_dir)
        health = [Request("GET", "/api/health", {})] * args.requests
        warmup_hooks = _slack_deliveries(path, signing_secret, args.warmup, "W")
        rounds = [
            _slack_deliveries(path, signing_secret, args.requests, f"B{number}")
            for number in range(args.rounds)
        ]

        asyncio.run(_run_phase("warm-up", port, health[: args.warmup], args.concurrency))
        asyncio.run(_run_phase("warm-up", port, warmup_hooks, args.concurrency))
        phases = [asyncio.run(_run_phase("health", port, health, args.concurrency))]
        for hooks in rounds:
            phases.append(asyncio.run(_run_phase("webhooks", port, hooks, args.concurrency)))
            phases.append(asyncio.run(_run_phase("health", port, health, args.concurrency)))
        queued = _queued(data_dir)
    finally:
        host.send_signal(signal.SIGTERM)
        try:
            host.wait(60)
        except subprocess.TimeoutExpired:
            host.kill()
    shutil.rmtree(work, ignore_errors=True)

    print(
        f"loopback load: {args.requests} requests per phase over {args.concurrency} "
        f"keep-alive connections (asyncio), host with LOG_LEVEL=WARNING"
    )
    for result in phases:
        print(result.line())
    ratios = []
    for index in range(1, len(phases), 2):
        webhooks = phases[index]
        health_rate = statistics.mean([phases[index - 1].rate, phases[index + 1].rate])
        ratios.append(webhooks.rate / health_rate)
        print(
            f"round {index // 2 + 1}: webhooks/health = {webhooks.rate:.0f}/{health_rate:.0f}"
            f" = {ratios[-1]:.0%}"
        )
    ratio = statistics.median(ratios)
    rate = statistics.median(phase.rate for phase in phases[1::2])
    print(
        f"median of {len(ratios)} rounds: webhooks/health = {ratio:.0%} (target >= "
        f"{TARGET_RATIO:.0%}: {'met' if ratio >= TARGET_RATIO else 'missed'}); webhooks/s = "
        f"{rate:.0f} (target >= {TARGET_RATE:.0f}: {'met' if rate >= TARGET_RATE else 'missed'})"
    )
    expected = args.warmup + args.rounds * args.requests
    print(f"queued on {topology.INTEGRATION_COMMUNICATIONS}: {queued} of {expected} deliveries")
    return 0 if queued == expected else 1


if __name__ == "__main__":
    sys.exit(main())
