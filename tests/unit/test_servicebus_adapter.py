"""ServiceBusBus without a broker: real SDK message and batch types, fake senders and
receivers that raise the SDK's own exception classes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus import exceptions as sdk
from azure.servicebus._pyamqp.message import Header
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

from core.adapters.azure.servicebus_bus import ORIGINAL_MESSAGE_ID, ServiceBusBus, build
from core.adapters.local.folder_blobs import FolderBlobStore
from core.config import Settings
from core.errors import (
    AuthError,
    MessageLockLostError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from core.messaging.claim_check import CLAIM_CHECK_CONTAINER, CLAIM_CHECK_PROPERTY
from core.messaging.topology import TOPOLOGY
from core.ports import OutboundMessage, ReceivedMessage
from core.runtime import ConfigurationError
from tests.unit.bus_support import RECEIVE_ARGUMENTS_OUT_OF_BOUNDS

QUEUE = "integration_data_raw"
SUBSCRIPTION = "shard-events/subscriptions/entity-linking"
BATCH_BYTES = 4096
INLINE_LIMIT = 1024


# ------------------------------------------------------------------------ fakes


def received(
    message: ServiceBusMessage, receiver: Any, *, sequence: int, delivery_count: int = 1
) -> ServiceBusReceivedMessage:
    """What the broker would hand back for `message`: the same AMQP message plus the
    broker's annotations, as a real ServiceBusReceivedMessage."""
    amqp = PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message)
    now_ms = int(time.time() * 1000)
    annotations = dict(amqp.message_annotations or {})
    annotations.update(
        {
            b"x-opt-sequence-number": sequence,
            b"x-opt-enqueued-time": now_ms,
            b"x-opt-locked-until": now_ms + 60_000,
            b"x-opt-lock-token": uuid.uuid4().bytes_le,
        }
    )
    return ServiceBusReceivedMessage(
        amqp._replace(
            message_annotations=annotations, header=Header(delivery_count=delivery_count)
        ),
        receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
        receiver=receiver,
    )


@dataclass
class FakeSender:
    name: str
    batches: list[ServiceBusMessageBatch | ServiceBusMessage] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)

    def create_message_batch(self) -> ServiceBusMessageBatch:
        return ServiceBusMessageBatch(max_size_in_bytes=BATCH_BYTES)

    def send_messages(self, batch: ServiceBusMessageBatch | ServiceBusMessage) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.batches.append(batch)

    def sent(self) -> list[ServiceBusMessage]:
        messages: list[ServiceBusMessage] = []
        for batch in self.batches:
            messages.extend(
                batch._messages if isinstance(batch, ServiceBusMessageBatch) else [batch]
            )
        return messages

    def close(self) -> None:
        pass


@dataclass
class FakeReceiver:
    options: dict[str, Any]
    waiting: list[ServiceBusReceivedMessage] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    errors: dict[str, Exception] = field(default_factory=dict)

    def _call(self, name: str, message: Any = None) -> None:
        self.calls.append((name, message))
        error = self.errors.pop(name, None)
        if error is not None:
            raise error

    def receive_messages(self, max_message_count: int, max_wait_time: float) -> list[Any]:
        self._call("receive", (max_message_count, max_wait_time))
        taken, self.waiting = self.waiting[:max_message_count], self.waiting[max_message_count:]
        return taken

    def peek_messages(self, max_message_count: int, sequence_number: int) -> list[Any]:
        self._call("peek", (max_message_count, sequence_number))
        return self.waiting[:max_message_count]

    def complete_message(self, message: Any) -> None:
        self._call("complete", message)

    def abandon_message(self, message: Any) -> None:
        self._call("abandon", message)

    def dead_letter_message(self, message: Any, reason: str, error_description: str) -> None:
        self._call("dead_letter", (message, reason, error_description))

    def renew_message_lock(self, message: Any) -> datetime:
        self._call("renew", message)
        return datetime(2030, 1, 1, tzinfo=UTC)

    def close(self) -> None:
        pass


class FakeClient:
    def __init__(self) -> None:
        self.senders: dict[str, FakeSender] = {}
        self.receivers: dict[tuple[str, bool], FakeReceiver] = {}

    def sender(self, name: str) -> FakeSender:
        return self.senders.setdefault(name, FakeSender(name))

    def receiver(self, entity: str, dead_letter: bool = False) -> FakeReceiver:
        return self.receivers.setdefault((entity, dead_letter), FakeReceiver({}))

    def get_queue_sender(self, queue_name: str) -> FakeSender:
        return self.sender(queue_name)

    def get_topic_sender(self, topic_name: str) -> FakeSender:
        return self.sender(f"topic:{topic_name}")

    def get_queue_receiver(self, queue_name: str, **options: Any) -> FakeReceiver:
        receiver = self.receiver(queue_name, "sub_queue" in options)
        receiver.options = options
        return receiver

    def get_subscription_receiver(
        self, topic_name: str, subscription_name: str, **options: Any
    ) -> FakeReceiver:
        entity = f"{topic_name}/subscriptions/{subscription_name}"
        receiver = self.receiver(entity, "sub_queue" in options)
        receiver.options = options
        return receiver


class FakeAdmin:
    def __init__(self) -> None:
        self.error: Exception | None = None

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def get_queue_runtime_properties(self, queue_name: str) -> Any:
        self._check()
        return SimpleNamespace(
            active_message_count=3, scheduled_message_count=2, dead_letter_message_count=1
        )

    def get_subscription_runtime_properties(self, topic_name: str, subscription_name: str) -> Any:
        self._check()
        return SimpleNamespace(
            active_message_count=7, scheduled_message_count=0, dead_letter_message_count=4
        )

    def get_namespace_properties(self) -> Any:
        self._check()
        return SimpleNamespace(name="ns")


@pytest.fixture
def blobs(tmp_path: Path) -> Iterator[FolderBlobStore]:
    store = FolderBlobStore(tmp_path / "blobs")
    yield store
    store.close()


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def admin() -> FakeAdmin:
    return FakeAdmin()


@pytest.fixture
def bus(client: FakeClient, admin: FakeAdmin, blobs: FolderBlobStore) -> ServiceBusBus:
    return ServiceBusBus(
        client,  # type: ignore[arg-type]
        admin,
        blobs=lambda: blobs,
        inline_limit_bytes=INLINE_LIMIT,
    )


def outbound(n: int = 0, size: int = 10, **fields: Any) -> OutboundMessage:
    return OutboundMessage(body=b"b" * size, message_id=f"m{n}", **fields)


def deliver(client: FakeClient, entity: str, messages: list[ServiceBusMessage], **kw: Any) -> None:
    receiver = client.receiver(entity, kw.pop("dead_letter", False))
    for sequence, message in enumerate(messages, start=len(receiver.waiting) + 1):
        receiver.waiting.append(received(message, receiver, sequence=sequence, **kw))


# ------------------------------------------------------------------------ send


def test_send_sets_every_service_bus_field(bus: ServiceBusBus, client: FakeClient) -> None:
    when = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    bus.send(
        QUEUE,
        [
            OutboundMessage(
                body=b'{"id": 1}',
                message_id="idem-1",
                correlation_id="sync-1-2024",
                subject="integration.data.raw",
                content_type="application/json",
                application_properties={"eventType": "integration.data.raw", "tenantId": "t1"},
                scheduled_enqueue_time=when,
                time_to_live=timedelta(hours=24),
            )
        ],
    )

    [message] = client.sender(QUEUE).sent()
    assert b"".join(message.body) == b'{"id": 1}'
    assert message.message_id == "idem-1"
    assert message.correlation_id == "sync-1-2024"
    assert message.subject == "integration.data.raw"
    assert message.content_type == "application/json"
    assert message.application_properties == {
        "eventType": "integration.data.raw",
        "tenantId": "t1",
    }
    assert message.scheduled_enqueue_time_utc == when
    assert message.time_to_live == timedelta(hours=24)


def test_send_to_a_topic_uses_the_topic_sender(bus: ServiceBusBus, client: FakeClient) -> None:
    bus.send("shard-events", [outbound()])

    assert [m.message_id for m in client.sender("topic:shard-events").sent()] == ["m0"]


def test_send_fills_batches_up_to_the_size_limit_in_order(
    bus: ServiceBusBus, client: FakeClient
) -> None:
    messages = [outbound(n, size=900) for n in range(10)]

    bus.send(QUEUE, messages)

    sender = client.sender(QUEUE)
    assert len(sender.batches) > 1
    assert all(batch.size_in_bytes <= BATCH_BYTES for batch in sender.batches)
    assert [len(batch) for batch in sender.batches[:-1]] == [len(sender.batches[0])] * (
        len(sender.batches) - 1
    )
    assert [m.message_id for m in sender.sent()] == [f"m{n}" for n in range(10)]


def test_a_body_over_the_inline_limit_goes_by_claim_check_and_comes_back(
    bus: ServiceBusBus, client: FakeClient, blobs: FolderBlobStore
) -> None:
    body = json.dumps({"rawData": "x" * 3000}).encode()

    bus.send(QUEUE, [OutboundMessage(body=body, message_id="big", application_properties={"a": 1})])

    [message] = client.sender(QUEUE).sent()
    sent_body = b"".join(message.body)
    assert len(sent_body) < INLINE_LIMIT
    marker = message.application_properties[CLAIM_CHECK_PROPERTY]
    assert marker.startswith(f"{CLAIM_CHECK_CONTAINER}/")
    assert blobs.get(CLAIM_CHECK_CONTAINER, marker.split("/", 1)[1]) == body

    deliver(client, QUEUE, [message])
    [got] = bus.receive(QUEUE)
    assert got.body == body
    assert got.application_properties["a"] == 1


def test_a_message_too_large_even_alone_is_permanent_and_nothing_is_sent(
    client: FakeClient, admin: FakeAdmin, blobs: FolderBlobStore
) -> None:
    bus = ServiceBusBus(
        client,  # type: ignore[arg-type]
        admin,
        blobs=lambda: blobs,
        inline_limit_bytes=10 * BATCH_BYTES,
    )

    with pytest.raises(PermanentError, match=f"'big'.*'{QUEUE}'"):
        bus.send(QUEUE, [outbound(1), OutboundMessage(body=b"x" * BATCH_BYTES, message_id="big")])
    assert client.sender(QUEUE).batches == []


def test_sending_to_a_subscription_is_refused_naming_the_topic(bus: ServiceBusBus) -> None:
    with pytest.raises(PermanentError, match="send to its topic 'shard-events'"):
        bus.send(SUBSCRIPTION, [outbound()])


def test_a_naive_schedule_time_is_refused(bus: ServiceBusBus) -> None:
    with pytest.raises(PermanentError, match="timezone-aware"):
        bus.send(QUEUE, [outbound(scheduled_enqueue_time=datetime(2030, 1, 1))])


# ------------------------------------------------------------------------ receive and settle


def test_receive_maps_the_sdk_message(bus: ServiceBusBus, client: FakeClient) -> None:
    deliver(
        client,
        SUBSCRIPTION,
        [
            ServiceBusMessage(
                b"hello",
                message_id="m1",
                correlation_id="c1",
                subject="shard.created",
                content_type="application/json",
                application_properties={"eventType": "shard.created", "attempt": 2},
                time_to_live=timedelta(hours=1),
            )
        ],
        delivery_count=3,
    )

    [message] = bus.receive(SUBSCRIPTION, max_messages=5, wait_seconds=2)

    receiver = client.receiver(SUBSCRIPTION)
    assert receiver.calls[0] == ("receive", (5, 2))
    assert receiver.options["receive_mode"] == ServiceBusReceiveMode.PEEK_LOCK
    assert message.entity == SUBSCRIPTION
    assert message.body == b"hello"
    assert (message.message_id, message.correlation_id, message.subject) == (
        "m1",
        "c1",
        "shard.created",
    )
    assert message.application_properties == {"eventType": "shard.created", "attempt": 2}
    assert message.delivery_count == 3
    assert message.sequence_number == 1
    assert message.lock_token
    assert message.locked_until > datetime.now(UTC)
    assert message.enqueued_time.tzinfo is not None


def test_receive_without_wait_polls_briefly(bus: ServiceBusBus, client: FakeClient) -> None:
    assert bus.receive(QUEUE) == []
    assert client.receiver(QUEUE).calls == [("receive", (1, 1.0))]


def test_receiving_from_a_topic_is_refused_naming_its_subscriptions(bus: ServiceBusBus) -> None:
    with pytest.raises(PermanentError, match="shard-events/subscriptions/entity-linking"):
        bus.receive("shard-events")


@pytest.mark.parametrize(
    ("settle", "call"),
    [
        (lambda bus, m: bus.complete(m), "complete"),
        (lambda bus, m: bus.abandon(m, error="boom"), "abandon"),
        (lambda bus, m: bus.dead_letter(m, reason="Poison", description="bad json"), "dead_letter"),
    ],
)
def test_settlement_goes_through_the_receiver_once(
    bus: ServiceBusBus, client: FakeClient, settle: Any, call: str
) -> None:
    deliver(client, QUEUE, [ServiceBusMessage(b"x", message_id="m1")])
    [message] = bus.receive(QUEUE)
    receiver = client.receiver(QUEUE)

    settle(bus, message)

    name, argument = receiver.calls[-1]
    assert name == call
    sdk_message = argument[0] if call == "dead_letter" else argument
    assert str(sdk_message.lock_token) == message.lock_token
    if call == "dead_letter":
        assert argument[1:] == ("Poison", "bad json")
    with pytest.raises(MessageLockLostError, match="not held"):
        settle(bus, message)


def test_lock_lost_on_settle_is_the_ports_lock_lost_naming_the_entity(
    bus: ServiceBusBus, client: FakeClient
) -> None:
    deliver(client, QUEUE, [ServiceBusMessage(b"x", message_id="m1")])
    [message] = bus.receive(QUEUE)
    client.receiver(QUEUE).errors["complete"] = sdk.MessageLockLostError(message="lock expired")

    with pytest.raises(MessageLockLostError, match=QUEUE) as error:
        bus.complete(message)
    assert error.value.resource == QUEUE
    with pytest.raises(MessageLockLostError, match="not held"):
        bus.complete(message)


def test_a_transient_failure_on_settle_keeps_the_message_for_a_retry(
    bus: ServiceBusBus, client: FakeClient
) -> None:
    deliver(client, QUEUE, [ServiceBusMessage(b"x", message_id="m1")])
    [message] = bus.receive(QUEUE)
    client.receiver(QUEUE).errors["complete"] = sdk.OperationTimeoutError(message="timeout")

    with pytest.raises(TransientError, match=QUEUE):
        bus.complete(message)
    bus.complete(message)

    assert [name for name, _ in client.receiver(QUEUE).calls].count("complete") == 2


def test_renew_lock_updates_the_message(bus: ServiceBusBus, client: FakeClient) -> None:
    deliver(client, QUEUE, [ServiceBusMessage(b"x", message_id="m1")])
    [message] = bus.receive(QUEUE)

    until = bus.renew_lock(message)

    assert until == message.locked_until == datetime(2030, 1, 1, tzinfo=UTC)
    bus.complete(message)


def test_settling_a_message_this_bus_never_received_is_lock_lost(bus: ServiceBusBus) -> None:
    stranger = ReceivedMessage(
        entity=QUEUE,
        body=b"",
        message_id="x",
        sequence_number=1,
        delivery_count=1,
        enqueued_time=datetime.now(UTC),
        lock_token="unknown",
        locked_until=datetime.now(UTC),
    )
    with pytest.raises(MessageLockLostError):
        bus.complete(stranger)
    with pytest.raises(MessageLockLostError):
        bus.renew_lock(stranger)


# ------------------------------------------------------------------------ error mapping


SEND_ERRORS = [
    (sdk.ServiceBusServerBusyError(message="busy"), TransientError),
    (sdk.OperationTimeoutError(message="slow"), TransientError),
    (sdk.ServiceBusConnectionError(message="reset"), TransientError),
    (sdk.MessageSizeExceededError(message="too big"), PermanentError),
    (sdk.MessagingEntityNotFoundError(message="no such queue"), NotFoundError),
    (sdk.ServiceBusAuthenticationError(message="expired token"), AuthError),
    (sdk.ServiceBusAuthorizationError(message="no Send claim"), AuthError),
]


@pytest.mark.parametrize(
    ("raised", "expected"), SEND_ERRORS, ids=[type(e).__name__ for e, _ in SEND_ERRORS]
)
def test_sdk_errors_become_port_errors_naming_the_entity(
    bus: ServiceBusBus, client: FakeClient, raised: Exception, expected: type[Exception]
) -> None:
    client.sender(QUEUE).errors.append(raised)

    with pytest.raises(expected, match=QUEUE) as error:
        bus.send(QUEUE, [outbound()])
    assert type(error.value) is expected
    assert error.value.resource == QUEUE  # type: ignore[attr-defined]
    assert error.value.__cause__ is raised


def test_receive_errors_are_mapped_too(bus: ServiceBusBus, client: FakeClient) -> None:
    client.receiver(SUBSCRIPTION).errors["receive"] = sdk.MessagingEntityNotFoundError(
        message="gone"
    )

    with pytest.raises(NotFoundError, match=SUBSCRIPTION):
        bus.receive(SUBSCRIPTION)


def test_server_busy_suggests_when_to_retry(bus: ServiceBusBus, client: FakeClient) -> None:
    client.sender(QUEUE).errors.append(sdk.ServiceBusServerBusyError(message="busy"))

    with pytest.raises(TransientError) as error:
        bus.send(QUEUE, [outbound()])
    assert error.value.retry_after == 10.0


# ------------------------------------------------------------------------ dead letters


def test_peek_dead_letters_reads_the_dead_letter_sub_queue_without_locks(
    bus: ServiceBusBus, client: FakeClient
) -> None:
    deliver(client, QUEUE, [ServiceBusMessage(b"x", message_id="d1")], dead_letter=True)

    [dead] = bus.peek_dead_letters(QUEUE, max_messages=10)

    receiver = client.receiver(QUEUE, dead_letter=True)
    assert receiver.options["sub_queue"] == ServiceBusSubQueue.DEAD_LETTER
    assert receiver.calls == [("peek", (10, 1))]
    assert (dead.message_id, dead.lock_token) == ("d1", "")


@pytest.mark.parametrize(
    ("entity", "target"), [(QUEUE, QUEUE), (SUBSCRIPTION, "topic:shard-events")]
)
def test_replay_resends_the_chosen_dead_letters_and_releases_the_rest(
    bus: ServiceBusBus, client: FakeClient, entity: str, target: str
) -> None:
    deliver(
        client,
        entity,
        [
            ServiceBusMessage(b"one", message_id="d1", application_properties={"eventType": "e"}),
            ServiceBusMessage(b"two", message_id="d2"),
            ServiceBusMessage(b"three", message_id="d3"),
        ],
        dead_letter=True,
    )

    moved = bus.replay_dead_letters(entity, message_ids=["d1", "d3"])

    assert moved == 2
    sent = client.sender(target).sent()
    assert [b"".join(m.body) for m in sent] == [b"one", b"three"]
    assert [m.application_properties[ORIGINAL_MESSAGE_ID] for m in sent] == ["d1", "d3"]
    assert sent[0].application_properties["eventType"] == "e"
    assert all(m.message_id not in ("d1", "d3") for m in sent)
    calls = client.receiver(entity, dead_letter=True).calls
    completed = [str(m.message_id) for name, m in calls if name == "complete"]
    abandoned = [str(m.message_id) for name, m in calls if name == "abandon"]
    assert (completed, abandoned) == (["d1", "d3"], ["d2"])


def test_replay_of_nothing_moves_nothing(bus: ServiceBusBus, client: FakeClient) -> None:
    assert bus.replay_dead_letters(QUEUE, message_ids=[]) == 0
    assert bus.replay_dead_letters(QUEUE) == 0


# ------------------------------------------------------------------------ depth and set-up


def test_depth_reads_runtime_properties(bus: ServiceBusBus, admin: FakeAdmin) -> None:
    queue = bus.depth(QUEUE)
    subscription = bus.depth(SUBSCRIPTION)

    assert (queue.active, queue.scheduled, queue.locked, queue.dead_letter) == (3, 2, 0, 1)
    assert (subscription.active, subscription.dead_letter) == (7, 4)
    admin.error = sdk.ServiceBusAuthorizationError(message="needs Manage")
    with pytest.raises(AuthError, match=QUEUE):
        bus.depth(QUEUE)


def test_entities_are_the_topologys_and_ping_uses_the_admin_client(
    bus: ServiceBusBus, admin: FakeAdmin
) -> None:
    assert bus.entities() == TOPOLOGY.receivable_entities()
    bus.ping()
    admin.error = sdk.ServiceBusConnectionError(message="down")
    with pytest.raises(TransientError, match="namespace"):
        bus.ping()


def test_build_needs_a_namespace_or_a_connection_string() -> None:
    with pytest.raises(ConfigurationError, match="SERVICEBUS_CONNECTION_STRING"):
        build(Settings(BUS="servicebus"))

    bus = build(
        Settings(
            BUS="servicebus",
            SERVICEBUS_CONNECTION_STRING=(
                "Endpoint=sb://example.servicebus.windows.net/;"
                "SharedAccessKeyName=send;SharedAccessKey=not-a-real-key"
            ),
        )
    )
    assert isinstance(bus, ServiceBusBus)


@pytest.mark.parametrize(("call", "named"), RECEIVE_ARGUMENTS_OUT_OF_BOUNDS)
def test_receive_arguments_out_of_bounds_are_refused_naming_them(
    bus: ServiceBusBus, call: Any, named: str
) -> None:
    with pytest.raises(PermanentError, match=named):
        call(bus, QUEUE)
