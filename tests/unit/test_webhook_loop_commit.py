"""`LoopCommit`, the receipt process's group commit: what one loop iteration's commits write
together, the drafts it builds, and that one bad delivery fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core import containers
from core.adapters.local.sqlite_bus import SqliteBus
from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.errors import PortError
from core.messaging import topology
from core.models.events import decode_envelope
from core.ports import OutboundMessage
from core.webhooks.commit import LoopCommit, PendingCommit, Publication
from core.webhooks.events import WebhookReceivedDraft, message_id_for, parse_webhook_received

QUEUE = topology.INTEGRATION_COMMUNICATIONS


def _keyed(key: str, entity: str = QUEUE) -> PendingCommit:
    message = OutboundMessage(
        body=b'{"n": 1}',
        message_id=f"id-{key}",
        correlation_id="corr-1",
        application_properties={"eventType": "integration.webhook.received", "tenantId": "t1"},
    )
    document = {"id": f"doc-{key}", "key": key, "tenantId": "t1"}
    return PendingCommit([Publication(entity, message, document)])


class Recorded:
    def __init__(self, tmp_path: Path) -> None:
        self.bus = SqliteBus(tmp_path / "bus.sqlite")
        self.store = SqliteDocumentStore(tmp_path / "store.sqlite")
        self.woken: list[set[str]] = []
        self.sends: list[int] = []
        send = self.bus.send

        def counted(entity: str, messages: list[OutboundMessage]) -> None:
            self.sends.append(len(messages))
            send(entity, messages)

        self.bus.send = counted  # type: ignore[method-assign]
        self.committer = LoopCommit(
            self.bus, self.store, on_committed=lambda e: self.woken.append(set(e))
        )

    def commit_all(self, batch: list[PendingCommit]) -> list[BaseException | None]:
        async def together() -> list[BaseException | None]:
            return await asyncio.gather(
                *(self.committer.commit(p) for p in batch), return_exceptions=True
            )

        return asyncio.run(together())


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[Recorded]:
    recorded = Recorded(tmp_path)
    yield recorded
    recorded.bus.close()
    recorded.store.close()


def test_one_iterations_commits_are_one_write_and_copies_land_once(recorded: Recorded) -> None:
    batch = [_keyed("k1"), _keyed("k2"), _keyed("k1")]

    assert recorded.commit_all(batch) == [None, None, None]
    again = _keyed("k2")
    assert recorded.commit_all([again]) == [None]

    assert [(p.published, p.repeats) for p in batch] == [(1, 0), (1, 0), (0, 1)]
    assert (again.published, again.repeats) == (0, 1)
    assert recorded.sends == [2]
    assert recorded.woken == [{QUEUE}]
    assert [m.message_id for m in recorded.bus.receive(QUEUE, max_messages=10)] == [
        "id-k1",
        "id-k2",
    ]
    found = recorded.store.get_many(
        containers.IDEMPOTENCY.name, [("k1", "doc-k1"), ("k2", "doc-k2")]
    )
    assert len(found) == 2


def test_a_delivery_that_cannot_be_written_fails_alone(recorded: Recorded) -> None:
    good, bad = _keyed("k1"), _keyed("k2", entity="nowhere")

    results = recorded.commit_all([good, bad])

    assert results[0] is None
    assert isinstance(results[1], PortError)
    assert "nowhere" in str(results[1])
    assert good.published == 1
    assert [m.message_id for m in recorded.bus.receive(QUEUE, max_messages=10)] == ["id-k1"]


def test_drafts_are_built_by_the_commit_and_one_that_cannot_be_built_fails_alone(
    recorded: Recorded,
) -> None:
    fields = {
        "integration_id": "int-1",
        "tenant_id": "t1",
        "registration_id": "reg-1",
        "provider": "slack",
        "event_id": "Ev1",
        "event_type": "message",
        "idempotency_key": "webhook:int-1:Ev1",
        "correlation_id": "corr-1",
        "received_at": datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
        "payload": {"text": "hello"},
    }
    moment = "2026-11-22T10:00:00+00:00"
    good = PendingCommit([Publication(QUEUE, WebhookReceivedDraft(fields, moment), None)])
    bad = PendingCommit(
        [Publication(QUEUE, WebhookReceivedDraft({**fields, "tenant_id": ""}, moment), None)]
    )

    results = recorded.commit_all([good, bad])

    assert results[0] is None
    assert results[1] is not None
    assert "tenant_id" in str(results[1])
    (message,) = recorded.bus.receive(QUEUE, max_messages=10)
    envelope = decode_envelope(message.body)
    assert envelope.time == fields["received_at"]
    assert parse_webhook_received(envelope).payload == {"text": "hello"}
    assert message.message_id == message_id_for("webhook:int-1:Ev1")
