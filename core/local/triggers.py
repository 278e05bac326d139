"""Service Bus, timer and blob trigger drivers of the local host.

Settlement follows the Functions runtime: complete when the function returns, abandon
when it raises. A `PoisonMessageError` is dead-lettered at once with its reason (the
runtime would abandon until max delivery; the message can never succeed). On shutdown
nothing is completed that did not finish: in-flight messages past the grace period are
abandoned and their late results discarded.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest
from croniter import croniter

from core import metrics
from core.errors import MessageLockLostError, PoisonMessageError, PortError
from core.local.invoker import FunctionSpec, invoke
from core.messaging.topology import subscription_path
from core.ports import BlobEventSource, BlobInfo, BlobStore, Bus, OutboundMessage, ReceivedMessage

log = logging.getLogger("core.local.host")


def entity_of(spec: FunctionSpec) -> str:
    trigger = spec.trigger
    if trigger.get("queueName"):
        return str(trigger["queueName"])
    return subscription_path(str(trigger["topicName"]), str(trigger["subscriptionName"]))


def to_functions_message(message: ReceivedMessage) -> ServiceBusMessage:
    properties = dict(message.application_properties)
    return ServiceBusMessage(
        body=message.body,
        application_properties=properties,
        user_properties=properties,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_error_description=message.dead_letter_description,
        delivery_count=message.delivery_count,
        enqueued_time_utc=message.enqueued_time,
        expires_at_utc=message.expires_at,
        locked_until=message.locked_until,
        lock_token=message.lock_token,
        message_id=message.message_id,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time,
        sequence_number=message.sequence_number,
        subject=message.subject,
        label=message.subject,
    )


@dataclass(eq=False)
class _InFlight:
    messages: list[ReceivedMessage]
    started: float
    abandoned: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class ServiceBusDriver:
    """Runs `concurrency` receive loops for one Service Bus-triggered function."""

    def __init__(
        self,
        spec: FunctionSpec,
        bus: Bus,
        *,
        concurrency: int,
        max_lock_renewal: timedelta,
        stopping: threading.Event,
    ) -> None:
        self.spec = spec
        self.entity = entity_of(spec)
        self._bus = bus
        self._concurrency = concurrency
        self._max_lock_renewal = max_lock_renewal.total_seconds()
        self._stopping = stopping
        self._threads: list[threading.Thread] = []
        self._in_flight: set[_InFlight] = set()
        self._guard = threading.Lock()
        self._many = spec.trigger.get("cardinality") == "many"

    def start(self) -> None:
        for index in range(self._concurrency):
            thread = threading.Thread(
                target=self._loop, name=f"sb-{self.spec.name}-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                received = self._bus.receive(
                    self.entity, max_messages=32 if self._many else 1, wait_seconds=0.5
                )
            except PortError as exc:
                log.warning("receive from '%s' failed: %s", self.entity, exc)
                self._stopping.wait(1.0)
                continue
            if not received:
                continue
            if self._stopping.is_set():
                for message in received:
                    self._settle(self._bus.abandon, message, error="host shutting down")
                return
            self._run(received)

    def _run(self, received: list[ReceivedMessage]) -> None:
        flight = _InFlight(received, time.monotonic())
        with self._guard:
            self._in_flight.add(flight)
        try:
            argument = (
                [to_functions_message(m) for m in received]
                if self._many
                else to_functions_message(received[0])
            )
            error: BaseException | None = None
            try:
                invoke(self.spec, argument, correlation_id=received[0].correlation_id)
            except BaseException as exc:
                error = exc
            with flight.lock:
                if flight.abandoned:
                    log.warning(
                        "'%s' finished after shutdown abandoned its messages; not completing",
                        self.spec.name,
                    )
                    return
                for message in received:
                    self._settle_outcome(message, error)
        finally:
            with self._guard:
                self._in_flight.discard(flight)

    def _settle_outcome(self, message: ReceivedMessage, error: BaseException | None) -> None:
        if error is None:
            self._settle(self._bus.complete, message)
        elif isinstance(error, PoisonMessageError):
            metrics.MESSAGES_DEAD_LETTERED.labels(self.entity, error.reason).inc()
            log.error(
                "dead-lettering message %s from '%s': %s",
                message.message_id,
                self.entity,
                error,
            )
            self._settle(
                self._bus.dead_letter, message, reason=error.reason, description=error.description
            )
        else:
            self._settle(self._bus.abandon, message, error=f"{type(error).__name__}: {error}")

    def _settle(self, action: Callable[..., None], message: ReceivedMessage, **kwargs: str) -> None:
        try:
            action(message, **kwargs)
        except MessageLockLostError:
            log.warning(
                "lock lost on message %s from '%s' before %s; it will be redelivered",
                message.message_id,
                self.entity,
                getattr(action, "__name__", "settle"),
            )
        except PortError as exc:
            log.error(
                "settling message %s on '%s' failed: %s", message.message_id, self.entity, exc
            )

    def renew_locks(self) -> None:
        """Keep locks of long invocations alive up to maxAutoLockRenewalDuration."""
        now_mono = time.monotonic()
        with self._guard:
            flights = list(self._in_flight)
        for flight in flights:
            if now_mono - flight.started > self._max_lock_renewal:
                continue
            for message in flight.messages:
                remaining = (message.locked_until - datetime.now(UTC)).total_seconds()
                if remaining < 10:
                    try:
                        message.locked_until = self._bus.renew_lock(message)
                    except PortError as exc:
                        log.warning("lock renewal for %s failed: %s", message.message_id, exc)

    def join(self, deadline: float) -> None:
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def abandon_in_flight(self) -> int:
        with self._guard:
            flights = list(self._in_flight)
        count = 0
        for flight in flights:
            with flight.lock:
                if flight.abandoned:
                    continue
                flight.abandoned = True
                for message in flight.messages:
                    self._settle(self._bus.abandon, message, error="host stopped mid-invocation")
                    count += 1
        return count


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")


class TimerDriver:
    """NCRONTAB (6 fields, seconds first) or TimeSpan (`hh:mm:ss`) schedules."""

    def __init__(self, spec: FunctionSpec, stopping: threading.Event) -> None:
        self.spec = spec
        self._stopping = stopping
        self._schedule = str(spec.trigger["schedule"])
        self._thread = threading.Thread(target=self._loop, name=f"timer-{spec.name}", daemon=True)
        span = _TIMESPAN.match(self._schedule)
        self._interval: float | None = None
        if span:
            days, hours, minutes, seconds = (int(g or 0) for g in span.groups())
            self._interval = float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
        elif len(self._schedule.split()) != 6 or not croniter.is_valid(
            self._schedule, second_at_beginning=True
        ):
            raise ValueError(
                f"function '{spec.name}': schedule {self._schedule!r} is not a 6-field NCRONTAB "
                "expression (seconds first) or a hh:mm:ss TimeSpan"
            )

    def next_after(self, moment: datetime) -> datetime:
        if self._interval is not None:
            return moment + timedelta(seconds=self._interval)
        result: datetime = croniter(self._schedule, moment, second_at_beginning=True).get_next(
            datetime
        )
        return result

    def start(self) -> None:
        self._thread.start()

    def _fire(self, past_due: bool) -> None:
        try:
            invoke(self.spec, TimerRequest(past_due=past_due))
        except Exception:
            log.exception("timer function '%s' failed", self.spec.name)

    def _loop(self) -> None:
        if self.spec.trigger.get("runOnStartup"):
            self._fire(past_due=False)
        due = self.next_after(datetime.now(UTC))
        while not self._stopping.is_set():
            wait = (due - datetime.now(UTC)).total_seconds()
            if wait > 0 and self._stopping.wait(min(wait, 1.0)):
                return
            if wait > 0:
                continue
            self._fire(past_due=wait < -5)
            due = self.next_after(max(due, datetime.now(UTC)))

    def join(self, deadline: float) -> None:
        self._thread.join(max(0.0, deadline - time.monotonic()))


POISON_BLOB_QUEUE = "webjobs-blobtrigger-poison"
BLOB_MAX_ATTEMPTS = 5


class BlobDriver:
    """Polls the blob store's new-blob events; a cursor file makes restarts resume.

    Like the Functions blob trigger: 5 attempts per blob, then a poison message naming
    the function, blob and last error on the `webjobs-blobtrigger-poison` queue.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        blobs: BlobStore,
        bus: Bus,
        state_dir: Path,
        stopping: threading.Event,
    ) -> None:
        if not isinstance(blobs, BlobEventSource):
            raise TypeError(
                f"function '{spec.name}': the blob store does not publish new-blob events"
            )
        self.spec = spec
        self._events = blobs
        self._blobs = blobs
        self._bus = bus
        self._stopping = stopping
        container, _, pattern = str(spec.trigger["path"]).partition("/")
        self._container = container
        self._pattern = re.compile(
            re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>.+)", re.escape(pattern or "{name}"))
        )
        self._cursor_file = state_dir / f"blob-cursor-{spec.name}.json"
        self._thread = threading.Thread(target=self._loop, name=f"blob-{spec.name}", daemon=True)
        self._attempts: dict[tuple[str, str, str], int] = {}

    def _cursor(self) -> int:
        if self._cursor_file.exists():
            return int(json.loads(self._cursor_file.read_text())["sequence"])
        return 0

    def _save_cursor(self, sequence: int) -> None:
        temp = self._cursor_file.with_suffix(".tmp")
        temp.write_text(json.dumps({"sequence": sequence}))
        temp.replace(self._cursor_file)

    def start(self) -> None:
        self._cursor_file.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def _loop(self) -> None:
        cursor = self._cursor()
        while not self._stopping.is_set():
            batch = self._events.created_since(cursor, limit=50)
            if not batch:
                self._stopping.wait(0.5)
                continue
            for info in batch:
                if self._stopping.is_set():
                    return
                wanted = info.container == self._container and self._pattern.fullmatch(info.name)
                if wanted and not self._process(info):
                    break
                cursor = info.sequence
                self._save_cursor(cursor)

    def _process(self, info: BlobInfo) -> bool:
        """True when the blob is done with (succeeded or poisoned); False to retry."""
        key = (info.container, info.name, info.etag)
        try:
            data = self._blobs.get(info.container, info.name)
            stream = func.blob.InputStream(
                data=data,
                name=f"{info.container}/{info.name}",
                uri=f"local://{info.container}/{info.name}",
                length=len(data),
                metadata=dict(info.metadata),
            )
            invoke(self.spec, stream)
        except Exception as exc:
            attempts = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempts
            if attempts < BLOB_MAX_ATTEMPTS:
                self._stopping.wait(min(2.0**attempts / 4, 5.0))
                return False
            self._poison(info, exc)
        self._attempts.pop(key, None)
        return True

    def _poison(self, info: BlobInfo, error: Exception) -> None:
        body = {
            "FunctionId": self.spec.name,
            "BlobType": "BlockBlob",
            "ContainerName": info.container,
            "BlobName": info.name,
            "ETag": info.etag,
            "Error": f"{type(error).__name__}: {error}",
        }
        log.error(
            "blob %s/%s poisoned after %d attempts", info.container, info.name, BLOB_MAX_ATTEMPTS
        )
        self._bus.send(POISON_BLOB_QUEUE, [OutboundMessage(body=json.dumps(body).encode())])

    def join(self, deadline: float) -> None:
        self._thread.join(max(0.0, deadline - time.monotonic()))
