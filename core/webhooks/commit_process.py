"""The webhook group commit in a process of its own, for the local SQLite stores.

A writer thread and the event loop take turns for the GIL: every SQLite statement releases
it and then waits to get it back from the loop, so on the local host a delivery cost about
twice the CPU it used. Here the receiving process only pickles each delivery's
publications onto a Unix socket, on the event loop, and the writer process runs
`write_batch` on the same store and bus files with an interpreter of its own.

Protocol: frames of a 4-byte big-endian length and a pickle. The host sends a list of
`(request id, [(entity, message, key document), ...])`; the writer answers each frame it
wrote with a list of `(request id, published, repeats, error)`, where `error` is None or
`(port error?, text)`. Everything that arrived while a batch was being written is the next
batch, so the batches grow with the load.

The writer's lifeline is its stdin (the host's settings come first, as JSON): when the
host goes away, however it ends, the writer finishes its batch and exits. It ignores
SIGINT, which a terminal sends to the whole process group, so Ctrl-C stops the host and the
host's exit stops it. Unix sockets only: where there are none, the runtime keeps the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import selectors
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

from core.config import Settings
from core.errors import PortError, TransientError
from core.webhooks.commit import PendingCommit, Publication, write_batch

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
RESTART_INTERVAL_SECONDS = 5.0
"""A writer that exits is started again by the next commit, at most once per interval; in
between, commits fail as transient (503 with Retry-After, and the provider retries)."""
SOCKET_NAME = "commit.sock"


def supported() -> bool:
    return hasattr(socket, "AF_UNIX")


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
        # only this process's own writer or host can connect: the socket's directory is 0700
        frames.append(pickle.loads(bytes(buffer[_LENGTH.size : end])))  # noqa: S301
        del buffer[:end]
    return frames


# --------------------------------------------------------------------------------------
# The receiving process
# --------------------------------------------------------------------------------------


class _Channel(asyncio.Protocol):
    """One event loop's connection to the writer. One frame is in flight at a time: what is
    committed while the writer writes goes out as the next frame when its answer arrives.
    Each frame wakes the writer and each answer the loop, and on a small VM a wake-up costs
    more than the pickling of a whole frame."""

    def __init__(self, on_committed: Callable[[Iterable[str]], None] | None) -> None:
        self._on_committed = on_committed
        self._transport: asyncio.WriteTransport | None = None
        self._buffer = bytearray()
        self._waiting: dict[int, PendingCommit] = {}
        self._outbox: list[tuple[int, list[tuple[Any, Any, Any]]]] = []
        self._next_id = 0
        self._unanswered = 0
        self._flush_scheduled = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.WriteTransport, transport)

    def submit(self, pending: PendingCommit) -> None:
        self._next_id += 1
        self._waiting[self._next_id] = pending
        self._outbox.append(
            (
                self._next_id,
                [(p.entity, p.message, p.key_document) for p in pending.publications],
            )
        )
        if not self._unanswered and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        if not outbox:
            return
        if self.lost or self._transport is None:
            self._fail([request_id for request_id, _ in outbox])
            return
        self._unanswered += len(outbox)
        self._transport.write(_frame(outbox))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        entities: set[str] = set()
        for results in _frames(self._buffer):
            self._unanswered -= len(results)
            for request_id, published, repeats, error in results:
                pending = self._waiting.pop(request_id, None)
                if pending is None:
                    continue
                pending.published, pending.repeats = published, repeats
                if error is None:
                    pending.committed = True
                    entities.update(p.entity for p in pending.publications if p.entity)
                else:
                    is_port_error, text = error
                    pending.error = TransientError(text) if is_port_error else RuntimeError(text)
                _settle(pending)
        if not self._unanswered:
            self._flush()
        if entities and self._on_committed is not None:
            self._on_committed(entities)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail([*self._waiting])

    def _fail(self, request_ids: list[int]) -> None:
        for request_id in request_ids:
            pending = self._waiting.pop(request_id, None)
            if pending is not None:
                pending.error = TransientError("the webhook commit process went away")
                _settle(pending)


def _settle(pending: PendingCommit) -> None:
    if pending.done is not None and not pending.done.done():
        pending.done.set_result(None)


class ProcessGroupCommit:
    """Commits through a writer process started with the settings this process runs on.

    `on_committed` gets the entities a commit sent to, on the committing loop, so that
    receivers in this process wake at once instead of at their next poll.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_committed: Callable[[Iterable[str]], None] | None = None,
    ) -> None:
        self._settings_json = settings.model_dump_json(by_alias=True)
        self._on_committed = on_committed
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: Path | None = None
        self._started_at = float("-inf")
        self._channels: dict[asyncio.AbstractEventLoop, asyncio.Future[_Channel]] = {}

    async def commit(self, pending: PendingCommit) -> None:
        loop = asyncio.get_running_loop()
        connected = self._channels.get(loop)
        if (
            connected is not None
            and connected.done()
            and connected.exception() is None
            and not connected.result().lost
        ):
            channel = connected.result()
        else:
            channel = await self._channel(loop, connected)
        pending.done = loop.create_future()
        channel.submit(pending)
        await pending.done
        if pending.error is not None:
            raise pending.error

    async def _channel(
        self, loop: asyncio.AbstractEventLoop, connected: asyncio.Future[_Channel] | None
    ) -> _Channel:
        """This loop's connection: the one being made, or a new one (one at a time)."""
        if connected is not None and not connected.done():
            return await asyncio.shield(connected)
        connected = self._channels[loop] = loop.create_future()
        self._forget_closed_loops()
        try:
            channel = await self._connect(loop)
        except BaseException as exc:
            connected.set_exception(
                exc
                if isinstance(exc, Exception)
                else TransientError("connecting to the webhook commit process was cancelled")
            )
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
            raise TransientError(f"cannot reach the webhook commit process: {exc}") from exc
        return channel

    def _forget_closed_loops(self) -> None:
        for loop in [loop for loop in self._channels if loop.is_closed()]:
            del self._channels[loop]

    def start(self) -> Path:
        """The writer's socket, starting the writer if it is not running."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                assert self._directory is not None
                return self._directory / SOCKET_NAME
            if time.monotonic() - self._started_at < RESTART_INTERVAL_SECONDS:
                raise TransientError("the webhook commit process exited; it restarts shortly")
            if self._process is not None:
                log.warning(
                    "the webhook commit process exited with %s; starting another",
                    self._process.returncode,
                )
            self._stop()
            self._started_at = time.monotonic()
            self._directory = Path(tempfile.mkdtemp(prefix="webhook-commit-"))
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

    def close(self) -> None:
        """Ends the writer once its current batch is written."""
        with self._lock:
            for connected in self._channels.values():
                if connected.done() and connected.exception() is None:
                    connected.result().lost = True
            self._channels.clear()
            self._stop()

    def _stop(self) -> None:
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
# The writer process
# --------------------------------------------------------------------------------------


def _answer(batch: list[tuple[socket.socket, int, PendingCommit]]) -> dict[socket.socket, list]:
    replies: dict[socket.socket, list[tuple[int, int, int, tuple[bool, str] | None]]] = {}
    for connection, request_id, pending in batch:
        error = None
        if not pending.committed:
            failure = pending.error or TransientError("the webhook commit was interrupted")
            error = (isinstance(failure, PortError), str(failure))
        replies.setdefault(connection, []).append(
            (request_id, pending.published, pending.repeats, error)
        )
    return replies


def serve(listener: socket.socket, lifeline: IO[bytes], writer: Callable[[list], None]) -> None:
    """Writes what the connections send until the lifeline closes."""
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(lifeline, selectors.EVENT_READ)
    buffers: dict[socket.socket, bytearray] = {}
    while True:
        batch: list[tuple[socket.socket, int, PendingCommit]] = []
        for key, _ in selector.select():
            source = key.fileobj
            if source is lifeline:
                if not os.read(lifeline.fileno(), 4096):
                    return
            elif source is listener:
                connection, _ = listener.accept()
                selector.register(connection, selectors.EVENT_READ)
                buffers[connection] = bytearray()
            else:
                assert isinstance(source, socket.socket)
                data = source.recv(1 << 20)
                if not data:
                    selector.unregister(source)
                    source.close()
                    del buffers[source]
                    continue
                buffer = buffers[source]
                buffer += data
                for requests in _frames(buffer):
                    for request_id, publications in requests:
                        pending = PendingCommit([Publication(*p) for p in publications])
                        batch.append((source, request_id, pending))
        if not batch:
            continue
        writer([pending for _, _, pending in batch])
        for connection, results in _answer(batch).items():
            try:
                connection.sendall(_frame(results))
            except OSError:
                log.warning("a webhook commit answer could not be sent: the receiver went away")


def _run_as_batch() -> None:
    """SCHED_BATCH: a writer that wakes does not preempt the event loop that woke it (it
    runs on the next free CPU, or at the tick), so the frame that wakes it costs the loop no
    context switch. Where the policy does not exist, the writer runs as any process does."""
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

    settings = Settings(**json.loads(settings_line))
    configure_logging(settings.log_level)
    runtime = Runtime(settings)
    bus, store = runtime.bus, runtime.store
    try:
        serve(listener, lifeline, lambda batch: write_batch(bus, store, batch))
    finally:
        for resource in (bus, store):
            close = getattr(resource, "close", None)
            if close is not None:
                close()
        shutil.rmtree(socket_directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
