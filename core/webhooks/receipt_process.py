"""Webhook receipt in a process of its own, for the local SQLite stores.

On the local host one event loop serves every HTTP request. Receipt (verification, the
idempotency check, the event's message, the SQLite writes) cost that loop twice a health
request's CPU, and a writer thread took turns with it for the GIL. Here the host's loop
only pickles each delivery onto a Unix socket and answers what comes back; a receipt
process, started with the host's settings, runs the same `WebhookReceiver` on a loop of its
own, and its group commit (`LoopCommit`) writes on that loop. The Functions host does the
same in Azure: it takes the HTTP request and hands the invocation to a language worker.

Protocol: frames of a 4-byte big-endian length and a pickle. A delivery connection (one per
host event loop) sends lists of `(request id, delivery fields)`; the receipt process
answers with `(acknowledged frames, replies, counts, entities)`: `replies` are
`(request id, reply fields, error)` (error None, or the text of what the receiver raised),
`counts` the counter increments to apply to the host's metrics, `entities` the bus entities
written to (so the host wakes its own bus receivers at once). One frame is in flight per
connection: what arrives meanwhile goes out when the next answer acknowledges it, so the
batches grow with the load. A control connection sends `(kind, argument)` and waits for its
answer: `forget` (a registration changed through the tenant API, so the receipt process
must not use what it cached) and `flush` (health tallies to the store before the API shows
them).

The process's lifeline is its stdin (the host's settings come first, as JSON): when the
host goes away, however it ends, it finishes what it is doing, writes its health tallies
and exits. It ignores SIGINT, which a terminal sends to the whole process group, so Ctrl-C
stops the host and the host's exit stops it. It runs as SCHED_BATCH, so its wake-ups do not
preempt the host's loop. POSIX only: elsewhere the runtime receives in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, cast

from prometheus_client import Counter

from core import metrics
from core.config import Settings
from core.errors import TransientError
from core.ports import Clock, DocumentStore, SecretStore
from core.webhooks.receiver import (
    Outcome,
    WebhookDelivery,
    WebhookReceiver,
    WebhookReply,
    count_metric,
    unavailable_reply,
)
from core.webhooks.registrations import WebhookRegistrations

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
RESTART_INTERVAL_SECONDS = 5.0
"""A receipt process that exits is started again by the next delivery, at most once per
interval; in between, deliveries get 503 with Retry-After, and the provider retries."""
CONTROL_TIMEOUT_SECONDS = 30.0
ACKNOWLEDGE_WITHIN_SECONDS = 0.002
"""A frame whose deliveries all wait (a store read, a sync request) is acknowledged after
this, so the host's next frame does not wait for them."""
SOCKET_NAME = "receipt.sock"
FORWARDED_COUNTERS: tuple[Counter, ...] = (
    metrics.WEBHOOKS_RECEIVED,
    metrics.WEBHOOKS_REJECTED,
    metrics.WEBHOOK_EVENTS,
)


def supported() -> bool:
    """POSIX only: the process inherits its listening socket (`pass_fds`) and the loops
    connect with `create_unix_connection`, neither of which Windows has."""
    return os.name == "posix" and hasattr(socket, "AF_UNIX")


def _import_path() -> str:
    """The child imports `core` from where this process did, whatever its working directory."""
    root = str(Path(__file__).resolve().parents[2])
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join([root, inherited]) if inherited else root


def _frame(payload: Any) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _frames(buffer: bytearray) -> list[Any]:
    """Takes every complete frame off the front of `buffer`."""
    frames = []
    while len(buffer) >= _LENGTH.size:
        (length,) = _LENGTH.unpack_from(buffer)
        end = _LENGTH.size + length
        if len(buffer) < end:
            break
        # only this process's own host or receipt process can connect: the directory is 0700
        frames.append(pickle.loads(bytes(buffer[_LENGTH.size : end])))  # noqa: S301
        del buffer[:end]
    return frames


def _read_frame(connection: socket.socket) -> Any:
    buffer = bytearray()
    while True:
        data = connection.recv(1 << 16)
        if not data:
            raise ConnectionError("the webhook receipt process closed the connection")
        buffer += data
        frames = _frames(buffer)
        if frames:
            return frames[0]


# --------------------------------------------------------------------------------------
# The host
# --------------------------------------------------------------------------------------


class _Channel(asyncio.Protocol):
    """One event loop's delivery connection to the receipt process."""

    def __init__(self, on_committed: Callable[[Iterable[str]], None] | None) -> None:
        self._on_committed = on_committed
        self._transport: asyncio.WriteTransport | None = None
        self._buffer = bytearray()
        self._waiting: dict[int, asyncio.Future[WebhookReply]] = {}
        self._outbox: list[tuple[int, tuple[Any, ...]]] = []
        self._next_id = 0
        self._in_flight = 0
        self._flush_scheduled = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.WriteTransport, transport)

    def submit(self, delivery: WebhookDelivery) -> asyncio.Future[WebhookReply]:
        loop = asyncio.get_running_loop()
        self._next_id += 1
        reply = self._waiting[self._next_id] = loop.create_future()
        self._outbox.append(
            (
                self._next_id,
                (
                    delivery.scheme,
                    delivery.integration_id,
                    delivery.method,
                    delivery.url,
                    headers if type(headers := delivery.headers) is dict else dict(headers),
                    delivery.body,
                ),
            )
        )
        if not self._in_flight and not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return reply

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        if not outbox:
            return
        if self.lost or self._transport is None:
            self._fail([request_id for request_id, _ in outbox])
            return
        self._in_flight += 1
        self._transport.write(_frame(outbox))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        entities: set[str] = set()
        for acknowledged, replies, counts, written in _frames(self._buffer):
            self._in_flight -= acknowledged
            for (counter, provider, outcome), amount in counts.items():
                count_metric(FORWARDED_COUNTERS[counter], provider, outcome, amount)
            entities.update(written)
            for request_id, fields, error in replies:
                future = self._waiting.pop(request_id, None)
                if future is None or future.done():
                    continue
                if error is None:
                    future.set_result(WebhookReply(*fields))
                else:
                    future.set_exception(RuntimeError(f"webhook receipt failed: {error}"))
        if not self._in_flight:
            self._flush()
        if entities and self._on_committed is not None:
            self._on_committed(entities)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail([*self._waiting])

    def _fail(self, request_ids: list[int]) -> None:
        for request_id in request_ids:
            future = self._waiting.pop(request_id, None)
            if future is not None and not future.done():
                future.set_exception(TransientError("the webhook receipt process went away"))


class ReceiptProcess:
    """Receives webhooks through a receipt process started with this process's settings.

    The tenant API's registration changes are made here, on the same store, and each one
    makes the receipt process forget what it cached about the pair before the API answers;
    if it cannot be told, it is stopped (a new one starts with nothing cached).
    `on_committed` gets the entities a delivery was published to, on the receiving loop, so
    that bus receivers in this process wake at once instead of at their next poll.
    """

    def __init__(
        self,
        settings: Settings,
        store: DocumentStore,
        secrets: SecretStore,
        clock: Clock,
        *,
        on_committed: Callable[[Iterable[str]], None] | None = None,
    ) -> None:
        self.registrations = WebhookRegistrations(store, secrets, clock, on_change=self._forget)
        self._settings_json = settings.model_dump_json(by_alias=True)
        self._on_committed = on_committed
        self._lock = threading.Lock()
        self._control_lock = threading.Lock()
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: Path | None = None
        self._started_at = float("-inf")
        self._channels: dict[asyncio.AbstractEventLoop, asyncio.Future[_Channel]] = {}

    # -- deliveries --------------------------------------------------------------------------

    async def receive(self, delivery: WebhookDelivery) -> WebhookReply:
        try:
            channel = await self._channel()
            return await channel.submit(delivery)
        except TransientError as exc:
            log.warning(
                "%s webhook for integration %s not taken: %s",
                delivery.scheme,
                delivery.integration_id,
                exc,
            )
            count_metric(metrics.WEBHOOKS_RECEIVED, delivery.scheme, Outcome.UNAVAILABLE)
            return unavailable_reply()

    async def _channel(self) -> _Channel:
        """This loop's connection: the open one, the one being made, or a new one."""
        loop = asyncio.get_running_loop()
        connected = self._channels.get(loop)
        if connected is not None and connected.done():
            if connected.exception() is None and not connected.result().lost:
                return connected.result()
        elif connected is not None:
            return await asyncio.shield(connected)
        connected = self._channels[loop] = loop.create_future()
        self._forget_closed_loops()
        try:
            channel = await self._connect(loop)
        except BaseException as exc:
            connected.set_exception(
                exc
                if isinstance(exc, Exception)
                else TransientError("connecting to the webhook receipt process was cancelled")
            )
            connected.exception()  # retrieved here: a later delivery tries again
            raise
        connected.set_result(channel)
        return channel

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Channel:
        try:
            path = await asyncio.to_thread(self.start)
            _, channel = await loop.create_unix_connection(
                lambda: _Channel(self._on_committed), str(path)
            )
        except OSError as exc:
            raise TransientError(f"cannot reach the webhook receipt process: {exc}") from exc
        return channel

    def _forget_closed_loops(self) -> None:
        for loop in [loop for loop in self._channels if loop.is_closed()]:
            del self._channels[loop]

    # -- control -----------------------------------------------------------------------------

    def flush_health(self, tenant_id: str | None = None) -> None:
        """The receipt process writes its pending health tallies (one tenant's, or all)."""
        try:
            self._call("flush", tenant_id)
        except TransientError:
            log.warning("could not ask the webhook receipt process for its health tallies")
            raise

    def _forget(self, integration_id: str, scheme: str) -> None:
        try:
            self._call("forget", (integration_id, scheme))
        except TransientError:
            log.warning(
                "the webhook receipt process could not be told that the %s registration of "
                "integration %s changed; stopping it, so that nothing it cached is used",
                scheme,
                integration_id,
            )
            with self._lock:
                self._stop()

    def _call(self, kind: str, argument: Any) -> None:
        """One control request, answered before this returns; nothing to do when no
        receipt process runs (it would start with nothing cached and nothing tallied)."""
        with self._control_lock:
            with self._lock:
                path = self._running_socket()
                if path is None:
                    return
            try:
                if self._control is None:
                    self._control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    self._control.settimeout(CONTROL_TIMEOUT_SECONDS)
                    self._control.connect(str(path))
                self._control.sendall(_frame((kind, argument)))
                error = _read_frame(self._control)
            except OSError as exc:
                self._close_control()
                raise TransientError(f"webhook receipt process: {kind} failed: {exc}") from exc
        if error is not None:
            raise RuntimeError(f"webhook receipt process: {kind} failed: {error}")

    def _close_control(self) -> None:
        control, self._control = self._control, None
        if control is not None:
            control.close()

    # -- the process -------------------------------------------------------------------------

    def start(self) -> Path:
        """The receipt process's socket, starting the process if it is not running."""
        with self._lock:
            running = self._running_socket()
            if running is not None:
                return running
            if time.monotonic() - self._started_at < RESTART_INTERVAL_SECONDS:
                raise TransientError("the webhook receipt process exited; it restarts shortly")
            if self._process is not None:
                log.warning(
                    "the webhook receipt process exited with %s; starting another",
                    self._process.returncode,
                )
            self._stop()
            self._started_at = time.monotonic()
            self._directory = Path(tempfile.mkdtemp(prefix="webhook-receipt-"))
            path = self._directory / SOCKET_NAME
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listener.bind(str(path))
                listener.listen(64)
                self._process = subprocess.Popen(  # noqa: S603 - this module, this interpreter
                    [sys.executable, "-m", __name__, str(listener.fileno())],
                    stdin=subprocess.PIPE,
                    pass_fds=(listener.fileno(),),
                    env={**os.environ, "PYTHONPATH": _import_path()},
                )
            finally:
                listener.close()
            assert self._process.stdin is not None
            self._process.stdin.write(self._settings_json.encode() + b"\n")
            self._process.stdin.flush()
            return path

    def _running_socket(self) -> Path | None:
        """The socket of a receipt process that runs; called holding `_lock`."""
        if self._process is None or self._process.poll() is not None:
            return None
        assert self._directory is not None
        return self._directory / SOCKET_NAME

    def close(self) -> None:
        """Ends the receipt process once it has answered what it holds."""
        with self._control_lock, self._lock:
            for connected in self._channels.values():
                if connected.done() and connected.exception() is None:
                    connected.result().lost = True
            self._channels.clear()
            self._stop()

    def _stop(self) -> None:
        """Called holding `_lock`."""
        self._close_control()
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


# --------------------------------------------------------------------------------------
# The receipt process
# --------------------------------------------------------------------------------------


class ForwardedCounts:
    """The receiver's counts, kept for the host's counters until the next answer."""

    def __init__(self) -> None:
        self._pending: dict[tuple[int, str, str], int] = {}
        self._index = {counter: index for index, counter in enumerate(FORWARDED_COUNTERS)}

    def __call__(self, counter: Counter, provider: str, outcome: str, amount: int = 1) -> None:
        key = (self._index[counter], provider, str(outcome))
        self._pending[key] = self._pending.get(key, 0) + amount

    def take(self) -> dict[tuple[int, str, str], int]:
        taken, self._pending = self._pending, {}
        return taken


class _Receipts:
    """What every connection of the receipt process shares."""

    def __init__(
        self, receiver: WebhookReceiver, counts: ForwardedCounts, written: set[str]
    ) -> None:
        self.receiver = receiver
        self.counts = counts
        self.written = written
        self.tasks: set[asyncio.Task[None]] = set()

    def take_written(self) -> list[str]:
        """Emptied in place: the commit keeps adding to this set."""
        written = list(self.written)
        self.written.clear()
        return written

    def control(self, kind: str, argument: Any) -> str | None:
        try:
            if kind == "forget":
                self.receiver.directory.forget(*argument)
            elif kind == "flush":
                self.receiver.flush_health(argument)
            else:
                return f"unknown request {kind!r}"
        except Exception as exc:
            log.exception("webhook receipt process: %s failed", kind)
            return f"{type(exc).__name__}: {exc}"
        return None


class _Connection(asyncio.Protocol):
    """One host connection: deliveries in and answers out, or control requests."""

    def __init__(self, receipts: _Receipts) -> None:
        self._receipts = receipts
        self._transport: asyncio.WriteTransport | None = None
        self._buffer = bytearray()
        self._replies: list[tuple[int, tuple[Any, ...] | None, str | None]] = []
        self._unacknowledged = 0
        self._answer_scheduled = False
        self._backstop: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.WriteTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._backstop is not None:
            self._backstop.cancel()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        loop = asyncio.get_running_loop()
        receiver = self._receipts.receiver
        for frame in _frames(self._buffer):
            if isinstance(frame, tuple):
                error = self._receipts.control(*frame)
                if self._transport is not None:
                    self._transport.write(_frame(error))
                continue
            self._unacknowledged += 1
            for request_id, fields in frame:
                task = loop.create_task(self._deliver(receiver, request_id, fields))
                self._receipts.tasks.add(task)
                task.add_done_callback(self._receipts.tasks.discard)
            if not self._answer_scheduled and self._backstop is None:
                self._backstop = loop.call_later(ACKNOWLEDGE_WITHIN_SECONDS, self._send_answer)

    async def _deliver(
        self, receiver: WebhookReceiver, request_id: int, fields: tuple[Any, ...]
    ) -> None:
        try:
            reply = await receiver.receive(WebhookDelivery(*fields))
        except Exception as exc:
            log.exception("webhook receipt failed")
            self._replies.append((request_id, None, f"{type(exc).__name__}: {exc}"))
        else:
            answer = (reply.status, reply.body, reply.content_type, reply.headers)
            self._replies.append((request_id, answer, None))
        if not self._answer_scheduled:
            self._answer_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_answer)

    def _send_answer(self) -> None:
        """Everything answered since the last answer, which acknowledges every frame
        received since then."""
        self._answer_scheduled = False
        if self._backstop is not None:
            self._backstop.cancel()
            self._backstop = None
        if self._transport is None or not (self._replies or self._unacknowledged):
            return
        replies, self._replies = self._replies, []
        acknowledged, self._unacknowledged = self._unacknowledged, 0
        counts, written = self._receipts.counts.take(), self._receipts.take_written()
        self._transport.write(_frame((acknowledged, replies, counts, written)))


async def _serve(listener: socket.socket, lifeline: IO[bytes], receipts: _Receipts) -> None:
    """Receives what the connections send until the lifeline closes, then lets the
    deliveries it holds finish."""
    loop = asyncio.get_running_loop()
    ended = loop.create_future()

    def on_lifeline() -> None:
        if not os.read(lifeline.fileno(), 4096) and not ended.done():
            loop.remove_reader(lifeline.fileno())
            ended.set_result(None)

    loop.add_reader(lifeline.fileno(), on_lifeline)
    server = await loop.create_unix_server(lambda: _Connection(receipts), sock=listener)
    await ended
    server.close()
    if receipts.tasks:
        await asyncio.wait(receipts.tasks, timeout=CONTROL_TIMEOUT_SECONDS)


def _run_as_batch() -> None:
    """SCHED_BATCH: a receipt process that wakes does not preempt the event loop that woke
    it (it runs on the next free CPU, or at the tick), so the frame that wakes it costs the
    loop no context switch. Where the policy does not exist, it runs as any process does."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _run_as_batch()
    listener = socket.socket(fileno=int(argv[0]))
    socket_directory = Path(listener.getsockname()).parent
    lifeline = sys.stdin.buffer
    settings_line = lifeline.readline()
    from core.logging import configure_logging
    from core.runtime import Runtime
    from core.webhooks.commit import LoopCommit

    settings = Settings(**json.loads(settings_line))
    configure_logging(settings.log_level)
    runtime = Runtime(settings)
    counts = ForwardedCounts()
    written: set[str] = set()
    receiver = runtime.build_webhook_receiver(
        LoopCommit(runtime.bus, runtime.store, on_committed=written.update), count=counts
    )
    receipts = _Receipts(receiver, counts, written)
    try:
        _event_loop_runner()(_serve(listener, lifeline, receipts))
    finally:
        try:
            receiver.flush_health()
        finally:
            for resource in (runtime.bus, runtime.store):
                close = getattr(resource, "close", None)
                if close is not None:
                    close()
            shutil.rmtree(socket_directory, ignore_errors=True)
    return 0


def _event_loop_runner() -> Callable[[Any], Any]:
    """uvloop where the local host has it (it comes with uvicorn[standard]), as uvicorn
    uses it for the host's own loop; asyncio's loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return cast(Callable[[Any], Any], uvloop.run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
