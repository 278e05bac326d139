"""The group commit of webhook receipt: the events of concurrent deliveries are deduplicated
and written in shared operations (one idempotency read, one bus send per entity, one
idempotency write), and each delivery waits for the write that holds its work, so nothing
is acknowledged before its messages are durably enqueued.

Two writers share `write_batch`: `GroupCommit`, a thread of the receiving process (Service
Bus and Cosmos, whose calls wait on the network without holding the interpreter), and
`LoopCommit`, which writes on the event loop itself and serves the receipt process of the
local SQLite stores (`core.webhooks.receipt_process`), where nothing else waits on that loop
and a thread would take turns with it for the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from core import containers
from core.errors import PortError, TransientError
from core.ports import Bus, DocumentStore, OutboundMessage

log = logging.getLogger(__name__)

COMMIT_WRITER_IDLE_SECONDS = 10.0


class MessageDraft(Protocol):
    """A message the writer builds, so that the event loop does not."""

    def build(self) -> OutboundMessage: ...


@dataclass(slots=True)
class Publication:
    """One event to publish: its message or the draft the writer builds it from (None when
    the event only records its key, as a notification answered by a sync does) and its
    idempotency document (None when the provider gave no event id, and then the event is
    always published)."""

    entity: str | None
    message: OutboundMessage | MessageDraft | None
    key_document: dict[str, Any] | None


@dataclass(slots=True)
class PendingCommit:
    """One delivery's publications; the commit fills in what became of them."""

    publications: list[Publication]
    committed: bool = False
    error: Exception | None = None
    published: int = 0
    repeats: int = 0
    done: asyncio.Future[None] | None = None


class Committer(Protocol):
    async def commit(self, pending: PendingCommit) -> None:
        """Returns once `pending` is durably written (its `published` and `repeats` set);
        raises its error (a PortError when a store or the bus failed)."""

    def close(self) -> None: ...


def write_batch(bus: Bus, store: DocumentStore, batch: list[PendingCommit]) -> None:
    """Writes a batch and sets each delivery's `committed` or `error`; never raises. Within
    a batch the first copy of an event wins, so concurrent copies publish once. When the
    shared write fails, each delivery is written on its own, so one bad delivery cannot
    fail the rest."""
    try:
        _write_together(bus, store, batch)
        for pending in batch:
            pending.committed = True
    except Exception as error:
        if len(batch) == 1:
            batch[0].error = error
            return
        for pending in batch:
            try:
                _write_together(bus, store, [pending])
                pending.committed = True
            except Exception as own_error:
                pending.error = own_error


def _write_together(bus: Bus, store: DocumentStore, batch: list[PendingCommit]) -> None:
    """Keys are written after the messages; a failure to write them is logged, not raised:
    the messages are out, and a repeat is caught by the broker's duplicate detection
    (deterministic message ids) or by idempotent consumers."""
    wanted = {
        (document["key"], document["id"])
        for pending in batch
        for publication in pending.publications
        if (document := publication.key_document) is not None
    }
    found = store.get_many(containers.IDEMPOTENCY.name, list(wanted)) if wanted else {}
    seen = {key for key, _ in found}
    by_entity: dict[str, list[OutboundMessage]] = {}
    documents: list[dict[str, Any]] = []
    for pending in batch:
        pending.published = pending.repeats = 0
        for publication in pending.publications:
            document = publication.key_document
            if document is not None:
                if document["key"] in seen:
                    pending.repeats += 1
                    continue
                seen.add(document["key"])
                documents.append(document)
            message = publication.message
            if message is not None and publication.entity is not None:
                if not isinstance(message, OutboundMessage):
                    message = message.build()
                by_entity.setdefault(publication.entity, []).append(message)
                pending.published += 1
    for entity, messages in by_entity.items():
        bus.send(entity, messages)
    if not documents:
        return
    try:
        store.upsert_many(containers.IDEMPOTENCY.name, documents)
    except PortError:
        log.exception(
            "published webhook events but could not record %d idempotency keys", len(documents)
        )


class GroupCommit:
    """The writer thread. Callers are coroutines (the receipt runs on the event loop): the
    writer wakes each waiting loop once per batch. One writer thread takes everything
    queued, writes it, and takes what queued meanwhile: always the same thread, so its
    SQLite connections keep their page caches, and callers only wait. The writer ends after
    `COMMIT_WRITER_IDLE_SECONDS` without work and the next commit starts another.
    """

    def __init__(self, bus: Bus, store: DocumentStore) -> None:
        self._bus = bus
        self._store = store
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)
        self._queue: list[PendingCommit] = []
        self._writer: threading.Thread | None = None

    async def commit(self, pending: PendingCommit) -> None:
        pending.done = asyncio.get_running_loop().create_future()
        with self._lock:
            self._queue.append(pending)
            if self._writer is None:
                self._start_writer()
            else:
                self._queued.notify()
        await pending.done
        if pending.error is not None:
            raise pending.error

    def close(self) -> None:
        """The writer thread ends by itself once idle."""

    def _start_writer(self) -> None:
        """Called holding the lock."""
        self._writer = threading.Thread(target=self._drain, name="webhook-commit", daemon=True)
        self._writer.start()

    def _drain(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._queued.wait(COMMIT_WRITER_IDLE_SECONDS)
                        if not self._queue:
                            return
                    batch, self._queue = self._queue, []
                self._write(batch)
        finally:
            with self._lock:
                self._writer = None
                if self._queue:
                    self._start_writer()

    def _write(self, batch: list[PendingCommit]) -> None:
        try:
            write_batch(self._bus, self._store, batch)
        finally:
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for pending in batch:
                if not pending.committed and pending.error is None:
                    pending.error = TransientError("the shared webhook commit was interrupted")
                if pending.done is not None:
                    by_loop.setdefault(pending.done.get_loop(), []).append(pending.done)
            for loop, futures in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, futures)
                except RuntimeError:
                    log.warning("a webhook commit finished after its event loop closed")


def _settle(futures: Iterable[asyncio.Future[None]]) -> None:
    """On the waiters' loop; a waiter that went away (cancelled) is skipped."""
    for future in futures:
        if not future.done():
            future.set_result(None)


class LoopCommit:
    """Writes on the committing event loop: the commits of one loop iteration are one batch,
    written at the start of the next. Only for a loop that serves nothing but receipts (the
    receipt process's), since the write blocks it. `on_committed` gets the entities each
    batch sent to."""

    def __init__(
        self,
        bus: Bus,
        store: DocumentStore,
        *,
        on_committed: Callable[[Iterable[str]], None] | None = None,
    ) -> None:
        self._bus = bus
        self._store = store
        self._on_committed = on_committed
        self._batch: list[PendingCommit] = []

    async def commit(self, pending: PendingCommit) -> None:
        loop = asyncio.get_running_loop()
        pending.done = loop.create_future()
        self._batch.append(pending)
        if len(self._batch) == 1:
            loop.call_soon(self._write)
        await pending.done
        if pending.error is not None:
            raise pending.error

    def close(self) -> None:
        """Nothing runs between batches."""

    def _write(self) -> None:
        batch, self._batch = self._batch, []
        write_batch(self._bus, self._store, batch)
        entities = {
            publication.entity
            for pending in batch
            if pending.committed and pending.published
            for publication in pending.publications
            if publication.entity is not None and publication.message is not None
        }
        _settle(pending.done for pending in batch if pending.done is not None)
        if entities and self._on_committed is not None:
            self._on_committed(entities)
