"""The SQLite bus against the Service Bus semantics the functions rely on.

Time-based behaviour runs on an injected clock, so no test sleeps for a lock or a TTL.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.adapters.local.sqlite_bus import (
    DUPLICATE_PURGE_INTERVAL_SECONDS,
    MAX_DELIVERY_COUNT_EXCEEDED,
    MAX_MESSAGE_BYTES,
    TTL_EXPIRED,
    SqliteBus,
)
from core.errors import ConflictError, MessageLockLostError, NotFoundError, PermanentError
from core.messaging.topology import (
    INTEGRATION_EVENTS_TOPIC,
    SHARD_EVENTS,
    SUB_ENTITY_LINKING,
    SUB_ML_AGGREGATION,
    SUB_SYNC_TRACKING,
    SUB_VECTORIZATION,
    SYNC_TASKS,
    EntitySettings,
    QueueSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    subscription_path,
)
from core.ports import OutboundMessage, ReceivedMessage
from tests.unit.bus_support import RECEIVE_ARGUMENTS_OUT_OF_BOUNDS

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK_SECONDS = 30.0
QUEUE = SYNC_TASKS
LINKING = subscription_path(SHARD_EVENTS, SUB_ENTITY_LINKING)
ML = subscription_path(SHARD_EVENTS, SUB_ML_AGGREGATION)
VECTORS = subscription_path(SHARD_EVENTS, SUB_VECTORIZATION)
TRACKING = subscription_path(INTEGRATION_EVENTS_TOPIC, SUB_SYNC_TRACKING)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bus(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteBus]:
    with SqliteBus(
        tmp_path / "bus.db", clock=clock, lock_duration=timedelta(seconds=LOCK_SECONDS)
    ) as instance:
        yield instance


def message(
    message_id: str | None = None, body: bytes = b"{}", **properties: str
) -> OutboundMessage:
    return OutboundMessage(body=body, message_id=message_id, application_properties=properties)


def receive_one(bus: SqliteBus, entity: str = QUEUE) -> ReceivedMessage:
    received = bus.receive(entity)
    assert len(received) == 1, f"expected one message in {entity}, got {received}"
    return received[0]


def dead_letter_count(bus: SqliteBus, entity: str = QUEUE) -> int:
    return bus.depth(entity).dead_letter


# --------------------------------------------------------------------------------------
# send, receive, settle
# --------------------------------------------------------------------------------------


def test_send_receive_complete_round_trip(bus: SqliteBus, clock: FakeClock) -> None:
    bus.send(
        QUEUE,
        [
            OutboundMessage(
                body=b'{"a": 1}',
                message_id="m-1",
                correlation_id="sync-1-2",
                subject="integration.data.raw",
                application_properties={"eventType": "integration.data.raw", "attempt": 2},
            )
        ],
    )

    received = receive_one(bus)

    assert received.body == b'{"a": 1}'
    assert received.message_id == "m-1"
    assert received.correlation_id == "sync-1-2"
    assert received.subject == "integration.data.raw"
    assert received.application_properties == {"eventType": "integration.data.raw", "attempt": 2}
    assert received.delivery_count == 1
    assert received.enqueued_time == clock.datetime()
    assert received.locked_until == clock.datetime() + timedelta(seconds=LOCK_SECONDS)
    assert received.expires_at == clock.datetime() + timedelta(hours=24)
    assert bus.receive(QUEUE) == []

    bus.complete(received)

    assert bus.depth(QUEUE).locked == 0
    with pytest.raises(MessageLockLostError, match="m-1"):
        bus.complete(received)


def test_equal_property_values_of_different_types_arrive_as_sent(bus: SqliteBus) -> None:
    """1, 1.0 and True are equal in Python, and 0.0 equals -0.0; each arrives as sent."""
    sent = [{"v": 1}, {"v": True}, {"v": 1.0}, {"v": 0.0}, {"v": -0.0}, {"v": "1"}, {"v": 1}]
    bus.send(
        QUEUE,
        [
            OutboundMessage(body=b"{}", message_id=f"m-{n}", application_properties=properties)
            for n, properties in enumerate(sent)
        ],
    )

    received = bus.receive(QUEUE, max_messages=len(sent))

    arrived = [message.application_properties["v"] for message in received]
    assert [(type(value), repr(value)) for value in arrived] == [
        (type(p["v"]), repr(p["v"])) for p in sent
    ]


def test_receive_returns_messages_in_send_order_with_distinct_lock_tokens(bus: SqliteBus) -> None:
    bus.send(QUEUE, [message(f"m-{i}") for i in range(5)])

    received = bus.receive(QUEUE, max_messages=10)

    assert [m.message_id for m in received] == [f"m-{i}" for i in range(5)]
    assert len({m.lock_token for m in received}) == 5
    assert [m.sequence_number for m in received] == sorted(m.sequence_number for m in received)


def test_message_id_defaults_to_a_new_id(bus: SqliteBus) -> None:
    bus.send(QUEUE, [message(), message()])

    ids = [m.message_id for m in bus.receive(QUEUE, max_messages=2)]

    assert len(set(ids)) == 2
    assert all(ids)


def test_lock_expiry_redelivers_with_a_higher_delivery_count(
    bus: SqliteBus, clock: FakeClock
) -> None:
    bus.send(QUEUE, [message("m-1")])
    first = receive_one(bus)
    clock.advance(LOCK_SECONDS - 1)
    assert bus.receive(QUEUE) == []

    clock.advance(2)
    second = receive_one(bus)

    assert second.message_id == "m-1"
    assert second.delivery_count == 2
    assert second.lock_token != first.lock_token
    with pytest.raises(MessageLockLostError):
        bus.complete(first)
    bus.complete(second)
    assert bus.depth(QUEUE).active == 0


def test_renew_lock_extends_the_lock(bus: SqliteBus, clock: FakeClock) -> None:
    bus.send(QUEUE, [message("m-1")])
    received = receive_one(bus)
    clock.advance(20)

    renewed = bus.renew_lock(received)

    assert renewed == clock.datetime() + timedelta(seconds=LOCK_SECONDS)
    assert received.locked_until == renewed
    clock.advance(20)
    assert bus.receive(QUEUE) == []
    bus.complete(received)


@pytest.mark.parametrize(
    "settle",
    [
        pytest.param(lambda bus, m: bus.complete(m), id="complete"),
        pytest.param(lambda bus, m: bus.abandon(m, error="boom"), id="abandon"),
        pytest.param(
            lambda bus, m: bus.dead_letter(m, reason="Bad", description="bad"), id="dead_letter"
        ),
        pytest.param(lambda bus, m: bus.renew_lock(m), id="renew_lock"),
    ],
)
def test_settling_after_the_lock_expired_raises_lock_lost(
    bus: SqliteBus, clock: FakeClock, settle: object
) -> None:
    bus.send(QUEUE, [message("m-1")])
    received = receive_one(bus)
    clock.advance(LOCK_SECONDS + 1)

    with pytest.raises(MessageLockLostError, match=QUEUE):
        settle(bus, received)  # type: ignore[operator]

    assert bus.depth(QUEUE).active == 1
    assert dead_letter_count(bus) == 0


def test_abandon_makes_the_message_available_again(bus: SqliteBus) -> None:
    bus.send(QUEUE, [message("m-1")])
    bus.abandon(receive_one(bus), error="transient")

    again = receive_one(bus)

    assert again.message_id == "m-1"
    assert again.delivery_count == 2


# --------------------------------------------------------------------------------------
# dead-lettering
# --------------------------------------------------------------------------------------


def test_abandon_at_max_delivery_count_dead_letters_with_the_last_error(bus: SqliteBus) -> None:
    bus.send(QUEUE, [message("m-1")])
    for attempt in range(1, 6):
        received = receive_one(bus)
        assert received.delivery_count == attempt
        bus.abandon(received, error=f"mapping failed on attempt {attempt}")

    assert bus.receive(QUEUE) == []
    [dead] = bus.peek_dead_letters(QUEUE)
    assert dead.message_id == "m-1"
    assert dead.dead_letter_reason == MAX_DELIVERY_COUNT_EXCEEDED
    assert dead.dead_letter_description is not None
    assert "5 delivery attempts" in dead.dead_letter_description
    assert "mapping failed on attempt 5" in dead.dead_letter_description
    assert dead.delivery_count == 5


def test_lock_expiry_past_max_delivery_count_dead_letters_with_the_recorded_error(
    bus: SqliteBus, clock: FakeClock
) -> None:
    bus.send(QUEUE, [message("m-1")])
    bus.abandon(receive_one(bus), error="store throttled")
    for _ in range(4):
        receive_one(bus)
        clock.advance(LOCK_SECONDS + 1)

    assert bus.receive(QUEUE) == []

    [dead] = bus.peek_dead_letters(QUEUE)
    assert dead.dead_letter_reason == MAX_DELIVERY_COUNT_EXCEEDED
    assert dead.dead_letter_description is not None
    assert "store throttled" in dead.dead_letter_description
    assert dead.delivery_count == 5
    assert bus.depth(QUEUE).active == 0


@pytest.mark.parametrize(
    ("max_messages", "delivered", "dead_lettered"),
    [(1, ["kept-1"], ["short"]), (5, ["kept-1", "kept-2"], ["short", "short-2"])],
)
def test_undeliverable_messages_neither_fill_nor_hide_a_batch(
    bus: SqliteBus,
    clock: FakeClock,
    max_messages: int,
    delivered: list[str],
    dead_lettered: list[str],
) -> None:
    short_lived = timedelta(seconds=5)
    bus.send(QUEUE, [OutboundMessage(b"{}", message_id="short", time_to_live=short_lived)])
    bus.send(QUEUE, [message("kept-1")])
    bus.send(QUEUE, [OutboundMessage(b"{}", message_id="short-2", time_to_live=short_lived)])
    bus.send(QUEUE, [message("kept-2")])
    clock.advance(10)

    received = bus.receive(QUEUE, max_messages=max_messages)

    assert [m.message_id for m in received] == delivered
    assert [m.message_id for m in bus.peek_dead_letters(QUEUE)] == dead_lettered


def test_explicit_dead_letter_records_reason_and_description(bus: SqliteBus) -> None:
    bus.send(QUEUE, [message("m-1", body=b"not json")])

    bus.dead_letter(receive_one(bus), reason="PoisonMessage", description="body is not JSON")

    [dead] = bus.peek_dead_letters(QUEUE)
    assert (dead.dead_letter_reason, dead.dead_letter_description) == (
        "PoisonMessage",
        "body is not JSON",
    )
    assert dead.body == b"not json"
    assert dead.lock_token == ""
    assert bus.receive(QUEUE) == []


def test_ttl_expiry_dead_letters_instead_of_delivering(bus: SqliteBus, clock: FakeClock) -> None:
    bus.send(QUEUE, [OutboundMessage(b"{}", message_id="m-1", time_to_live=timedelta(seconds=10))])
    clock.advance(11)

    assert bus.receive(QUEUE) == []

    [dead] = bus.peek_dead_letters(QUEUE)
    assert dead.message_id == "m-1"
    assert dead.dead_letter_reason == TTL_EXPIRED
    assert dead.delivery_count == 0


def test_entity_default_ttl_applies_and_caps_a_longer_message_ttl(
    bus: SqliteBus, clock: FakeClock
) -> None:
    bus.create_queue(QueueSpec("short-lived", EntitySettings(default_ttl=timedelta(minutes=1))))
    bus.send(
        "short-lived",
        [
            message("default"),
            OutboundMessage(b"{}", message_id="longer", time_to_live=timedelta(hours=1)),
        ],
    )
    clock.advance(61)

    assert bus.receive("short-lived", max_messages=5) == []
    assert {m.message_id for m in bus.peek_dead_letters("short-lived")} == {"default", "longer"}


def test_expired_message_is_discarded_when_dead_lettering_on_expiry_is_off(
    bus: SqliteBus, clock: FakeClock
) -> None:
    settings = EntitySettings(default_ttl=timedelta(seconds=5), dead_letter_on_expiry=False)
    bus.create_queue(QueueSpec("ephemeral", settings))
    bus.send("ephemeral", [message("m-1")])
    clock.advance(6)

    assert bus.receive("ephemeral") == []
    depth = bus.depth("ephemeral")
    assert (depth.active, depth.dead_letter) == (0, 0)


def test_replay_dead_letters_by_id_and_all(bus: SqliteBus, clock: FakeClock) -> None:
    bus.send(QUEUE, [message(f"m-{i}") for i in range(3)])
    for received in bus.receive(QUEUE, max_messages=3):
        bus.dead_letter(received, reason="Quarantined", description="failed")
    assert dead_letter_count(bus) == 3

    assert bus.replay_dead_letters(QUEUE, message_ids=["m-1", "unknown"]) == 1

    replayed = receive_one(bus)
    assert replayed.message_id == "m-1"
    assert replayed.delivery_count == 1
    assert replayed.enqueued_time == clock.datetime()
    assert [m.message_id for m in bus.peek_dead_letters(QUEUE)] == ["m-0", "m-2"]

    assert bus.replay_dead_letters(QUEUE) == 2
    assert dead_letter_count(bus) == 0
    assert {m.message_id for m in bus.receive(QUEUE, max_messages=5)} == {"m-0", "m-2"}
    assert bus.replay_dead_letters(QUEUE) == 0


def test_replayed_message_gets_its_time_to_live_again(bus: SqliteBus, clock: FakeClock) -> None:
    bus.send(QUEUE, [OutboundMessage(b"{}", message_id="m-1", time_to_live=timedelta(seconds=10))])
    clock.advance(11)
    bus.receive(QUEUE)

    bus.replay_dead_letters(QUEUE)

    replayed = receive_one(bus)
    assert replayed.expires_at == clock.datetime() + timedelta(seconds=10)


# --------------------------------------------------------------------------------------
# scheduling, depth, duplicates
# --------------------------------------------------------------------------------------


def test_scheduled_message_is_invisible_until_its_time(bus: SqliteBus, clock: FakeClock) -> None:
    at = clock.datetime() + timedelta(seconds=60)
    bus.send(QUEUE, [OutboundMessage(b"{}", message_id="later", scheduled_enqueue_time=at)])

    assert bus.receive(QUEUE) == []
    assert bus.depth(QUEUE).scheduled == 1
    clock.advance(59)
    assert bus.receive(QUEUE) == []

    clock.advance(1)
    received = receive_one(bus)
    assert received.message_id == "later"
    assert received.scheduled_enqueue_time == at
    assert received.enqueued_time == at


def test_depth_counts_each_state(bus: SqliteBus, clock: FakeClock) -> None:
    later = clock.datetime() + timedelta(minutes=5)
    bus.send(
        QUEUE,
        [
            *(message(f"active-{i}") for i in range(4)),
            OutboundMessage(b"{}", message_id="scheduled", scheduled_enqueue_time=later),
        ],
    )
    locked = bus.receive(QUEUE, max_messages=2)
    bus.dead_letter(locked[1], reason="Bad", description="bad")

    depth = bus.depth(QUEUE)

    assert (depth.entity, depth.active, depth.scheduled, depth.locked, depth.dead_letter) == (
        QUEUE,
        2,
        1,
        1,
        1,
    )
    clock.advance(LOCK_SECONDS + 1)
    assert bus.depth(QUEUE).active == 3


def test_duplicate_message_id_is_discarded_within_the_window(
    bus: SqliteBus, clock: FakeClock
) -> None:
    bus.send(QUEUE, [message("dup", body=b"first"), message("dup", body=b"same batch")])
    clock.advance(60)
    bus.send(QUEUE, [message("dup", body=b"later")])
    bus.send("integration_data_raw", [message("dup", body=b"other queue")])

    assert [m.body for m in bus.receive(QUEUE, max_messages=5)] == [b"first"]
    assert receive_one(bus, "integration_data_raw").body == b"other queue"


def test_duplicate_message_id_is_accepted_after_the_window(
    bus: SqliteBus, clock: FakeClock
) -> None:
    bus.send(QUEUE, [message("dup", body=b"first")])
    bus.complete(receive_one(bus))
    clock.advance(timedelta(minutes=10).total_seconds() + 1)

    bus.send(QUEUE, [message("dup", body=b"second")])

    assert receive_one(bus).body == b"second"


def test_duplicate_detection_on_a_topic_covers_every_subscription(bus: SqliteBus) -> None:
    event = {"eventType": "shard.created", "shardTypeName": "Email"}

    bus.send(SHARD_EVENTS, [message("e-1", **event)])
    bus.send(SHARD_EVENTS, [message("e-1", **event)])

    assert bus.depth(LINKING).active == 1
    assert bus.depth(VECTORS).active == 1


def test_expired_duplicate_records_are_purged_periodically(
    tmp_path: Path, bus: SqliteBus, clock: FakeClock
) -> None:
    bus.send(QUEUE, [message(f"m-{i}") for i in range(10)])
    clock.advance(timedelta(minutes=10).total_seconds() + DUPLICATE_PURGE_INTERVAL_SECONDS)

    bus.send(QUEUE, [message("fresh")])

    with sqlite3.connect(tmp_path / "bus.db") as conn:
        rows = conn.execute("SELECT message_id FROM bus_duplicates").fetchall()
    assert rows == [("fresh",)]


# --------------------------------------------------------------------------------------
# topics and subscriptions
# --------------------------------------------------------------------------------------


def test_topic_fans_out_to_every_matching_subscription(bus: SqliteBus) -> None:
    bus.send(
        SHARD_EVENTS,
        [
            message("email", eventType="shard.created", shardTypeName="Email"),
            message("opportunity", eventType="shard.updated", shardTypeName="Opportunity"),
            message("contact", eventType="shard.created", shardTypeName="Contact"),
            message("deleted", eventType="shard.deleted", shardTypeName="Email"),
            message("email-2", eventType="shard.created", shardTypeName="Email"),
            message("opportunity-2", eventType="shard.updated", shardTypeName="Opportunity"),
        ],
    )

    def ids(entity: str) -> list[str]:
        return [m.message_id for m in bus.receive(entity, max_messages=10)]

    assert ids(LINKING) == ["email", "email-2"]
    assert ids(VECTORS) == ["email", "email-2"]
    assert ids(ML) == ["opportunity", "opportunity-2"]
    assert ids(TRACKING) == []


def test_each_subscription_settles_its_own_copy(bus: SqliteBus) -> None:
    bus.send(SHARD_EVENTS, [message("e-1", eventType="shard.created", shardTypeName="Meeting")])
    linking = receive_one(bus, LINKING)
    vectors = receive_one(bus, VECTORS)

    bus.complete(linking)
    bus.abandon(vectors, error="embedder down")

    assert bus.depth(LINKING).active == 0
    assert receive_one(bus, VECTORS).delivery_count == 2


def test_topic_without_subscriptions_accepts_and_drops_messages(bus: SqliteBus) -> None:
    bus.create_topic(TopicSpec("nobody-listens", ()))

    bus.send("nobody-listens", [message("lost-1")])

    assert bus.receive(ML, max_messages=5) == []
    assert not any(e.startswith("nobody-listens") for e in bus.entities())


def test_subscription_without_filter_accepts_everything(bus: SqliteBus) -> None:
    bus.create_topic(TopicSpec("audit", (SubscriptionSpec("all"), SubscriptionSpec("none-set"))))

    bus.send("audit", [message("a-1"), message("a-2", anything="x")])

    assert len(bus.receive("audit/subscriptions/all", max_messages=5)) == 2
    assert len(bus.receive("audit/subscriptions/none-set", max_messages=5)) == 2


# --------------------------------------------------------------------------------------
# errors and validation
# --------------------------------------------------------------------------------------


def test_unknown_entities_raise_not_found_naming_them(bus: SqliteBus) -> None:
    with pytest.raises(NotFoundError, match="no-such-queue") as error:
        bus.send("no-such-queue", [message()])
    assert error.value.resource == "no-such-queue"
    with pytest.raises(NotFoundError, match="no-such-queue"):
        bus.receive("no-such-queue")
    with pytest.raises(NotFoundError, match="no-such-queue"):
        bus.depth("no-such-queue")
    with pytest.raises(NotFoundError, match="shard-events/subscriptions/missing"):
        bus.peek_dead_letters("shard-events/subscriptions/missing")


def test_receiving_from_a_topic_or_sending_to_a_subscription_is_refused(bus: SqliteBus) -> None:
    with pytest.raises(PermanentError, match="is a topic") as receive_error:
        bus.receive(SHARD_EVENTS)
    assert not isinstance(receive_error.value, NotFoundError)
    assert LINKING in str(receive_error.value)

    with pytest.raises(PermanentError, match=f"send to its topic '{SHARD_EVENTS}'"):
        bus.send(LINKING, [message()])


@pytest.mark.parametrize(
    ("outbound", "field"),
    [
        (OutboundMessage(body="text"), "body"),  # type: ignore[arg-type]
        (OutboundMessage(b"{}", message_id=""), "message_id"),
        (OutboundMessage(b"{}", scheduled_enqueue_time=datetime(2030, 1, 1)), "scheduled"),
        (OutboundMessage(b"{}", time_to_live=timedelta(0)), "time_to_live"),
        (OutboundMessage(b"x" * (MAX_MESSAGE_BYTES + 1)), "limit"),
    ],
)
def test_invalid_messages_are_rejected_and_nothing_is_sent(
    bus: SqliteBus, outbound: OutboundMessage, field: str
) -> None:
    with pytest.raises(PermanentError, match=field):
        bus.send(QUEUE, [message("valid"), outbound])

    assert bus.depth(QUEUE).active == 0


def test_invalid_receive_arguments_are_rejected(bus: SqliteBus) -> None:
    with pytest.raises(PermanentError, match="max_messages"):
        bus.receive(QUEUE, max_messages=0)
    with pytest.raises(PermanentError, match="wait_seconds"):
        bus.receive(QUEUE, wait_seconds=-1)


def test_entity_name_clash_between_kinds_is_a_conflict(bus: SqliteBus) -> None:
    with pytest.raises(ConflictError, match=SHARD_EVENTS):
        bus.create_queue(QueueSpec(SHARD_EVENTS))
    with pytest.raises(PermanentError, match="max_delivery_count"):
        bus.create_queue(QueueSpec("broken", EntitySettings(max_delivery_count=0)))
    assert "broken" not in bus.entities()


def test_entities_lists_queues_and_subscriptions(bus: SqliteBus) -> None:
    entities = bus.entities()

    assert QUEUE in entities
    assert LINKING in entities
    assert SHARD_EVENTS not in entities
    bus.ping()


def test_closed_bus_refuses_work(tmp_path: Path) -> None:
    bus = SqliteBus(tmp_path / "bus.db")
    bus.close()

    with pytest.raises(PermanentError, match="closed"):
        bus.send(QUEUE, [message()])


# --------------------------------------------------------------------------------------
# waiting and concurrency
# --------------------------------------------------------------------------------------


def test_waiting_receive_wakes_as_soon_as_a_message_is_sent(bus: SqliteBus) -> None:
    sent_at: list[float] = []

    def send() -> None:
        bus.send(QUEUE, [message("wake")])
        sent_at.append(time.monotonic())

    # Sent between two polls (at 0.3 s and 0.5 s): only a wake-up, not polling, is prompt.
    sender = threading.Timer(0.35, send)
    sender.start()

    received = bus.receive(QUEUE, wait_seconds=10)

    woke_at = time.monotonic()
    sender.join()
    assert [m.message_id for m in received] == ["wake"]
    assert woke_at - sent_at[0] < 0.1


def test_waiting_receive_returns_empty_when_the_wait_elapses(bus: SqliteBus) -> None:
    started = time.monotonic()

    assert bus.receive(QUEUE, wait_seconds=0.15) == []

    assert 0.14 <= time.monotonic() - started < 1.5


def test_concurrent_receivers_never_get_the_same_message(tmp_path: Path) -> None:
    total = 500
    completed: Counter[str] = Counter()
    completed_lock = threading.Lock()
    errors: list[BaseException] = []
    with SqliteBus(tmp_path / "bus.db") as bus:
        bus.send(QUEUE, [message(f"m-{i}") for i in range(total)])

        def consume() -> None:
            try:
                while batch := bus.receive(QUEUE, max_messages=3):
                    for received in batch:
                        bus.complete(received)
                        with completed_lock:
                            completed[received.message_id] += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=consume) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert set(completed) == {f"m-{i}" for i in range(total)}
        assert set(completed.values()) == {1}
        assert bus.depth(QUEUE).active == 0


def test_second_instance_on_the_same_file_sees_messages_and_new_entities(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "bus.db"
    with SqliteBus(path, clock=clock) as first, SqliteBus(path, clock=clock) as second:
        first.create_queue(QueueSpec("created-later"))
        first.create_topic(TopicSpec("news", (SubscriptionSpec("a"),)))

        second.send("created-later", [message("m-1")])
        assert "created-later" in second.entities()
        assert receive_one(first, "created-later").message_id == "m-1"

        second.send("news", [message("n-1")])
        first.create_topic(TopicSpec("news", (SubscriptionSpec("a"), SubscriptionSpec("b"))))
        second.send("news", [message("n-2")])
        assert [m.message_id for m in first.receive("news/subscriptions/b", max_messages=5)] == [
            "n-2"
        ]
        assert len(first.receive("news/subscriptions/a", max_messages=5)) == 2


def test_another_process_sends_to_a_queue_it_creates(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from core.adapters.local.sqlite_bus import SqliteBus
        from core.messaging.topology import QueueSpec
        from core.ports import OutboundMessage

        with SqliteBus(Path({str(path)!r})) as bus:
            bus.create_queue(QueueSpec("from-child"))
            bus.send("from-child", [OutboundMessage(b"hello", message_id="child-1")])
        """
    )
    with SqliteBus(path) as parent:
        subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, check=True, timeout=60)

        received = parent.receive("from-child", wait_seconds=5)

        assert [(m.message_id, m.body) for m in received] == [("child-1", b"hello")]


def test_consumers_in_several_processes_never_get_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    total = 400
    consumer = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from core.adapters.local.sqlite_bus import SqliteBus

        completed = []
        with SqliteBus(Path({str(path)!r})) as bus:
            while batch := bus.receive({QUEUE!r}, max_messages=2, wait_seconds=0.5):
                for received in batch:
                    bus.complete(received)
                    completed.append(received.message_id)
        print(json.dumps(completed))
        """
    )
    with SqliteBus(path) as bus:
        consumers = [
            subprocess.Popen(
                [sys.executable, "-c", consumer], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        for start in range(0, total, 50):
            bus.send(QUEUE, [message(f"m-{i}") for i in range(start, start + 50)])
        outputs = [process.communicate(timeout=60)[0] for process in consumers]

        assert [process.returncode for process in consumers] == [0, 0]
        completed = Counter(message_id for output in outputs for message_id in json.loads(output))
        assert set(completed) == {f"m-{i}" for i in range(total)}
        assert set(completed.values()) == {1}
        assert bus.depth(QUEUE).active == 0


def test_topology_is_persisted_for_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    custom = Topology(queues=(QueueSpec("only-queue"),), topics=())
    with SqliteBus(path, custom) as bus:
        bus.send("only-queue", [message("kept")])

    with SqliteBus(path, custom) as reopened:
        assert reopened.entities() == ["only-queue"]
        assert receive_one(reopened, "only-queue").message_id == "kept"


def test_sent_messages_reach_the_database_file_without_a_checkpoint_on_commit(
    bus: SqliteBus, tmp_path: Path
) -> None:
    """Commits only append to the WAL (the automatic checkpoint is a 40 MB backstop); the
    background checkpointer copies them into the main file, where a reader of the file
    alone (no WAL) finds them."""
    database = tmp_path / "bus.db"
    before = database.stat().st_size
    bus.send(QUEUE, [message(f"m{number}", body=b"x" * 2000) for number in range(50)])
    deadline = time.monotonic() + 5
    while database.stat().st_size <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert database.stat().st_size > before + 50 * 2000
    assert bus.depth(QUEUE).active == 50


@pytest.mark.parametrize(("call", "named"), RECEIVE_ARGUMENTS_OUT_OF_BOUNDS)
def test_receive_arguments_out_of_bounds_are_refused_naming_them(
    bus: SqliteBus, call: Any, named: str
) -> None:
    with pytest.raises(PermanentError, match=named):
        call(bus, QUEUE)
