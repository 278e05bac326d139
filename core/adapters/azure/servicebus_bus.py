"""`Bus` on Azure Service Bus (azure-servicebus, AMQP).

* Messages follow ARCHITECTURE.md: `message_id` (the idempotency key, for duplicate
  detection), `correlation_id`, `subject` (the event type), `content_type`, application
  properties (`eventType`, `tenantId`, `shardTypeName`, ...), `scheduled_enqueue_time_utc`
  and `time_to_live`.
* A body over `inline_limit_bytes` goes by claim check (`core/messaging/claim_check.py`):
  sending stores it as a blob and sends the reference; receiving resolves it again, so
  the port's callers always see the original body.
* `send` packs messages into `ServiceBusMessageBatch`es within the entity's size limit,
  all before the first is sent: a single message too big for an empty batch is a
  PermanentError naming the entity, and nothing is sent. Several batches are not atomic:
  a failure part-way leaves the earlier ones sent, and duplicate detection by message id
  makes the retry safe.
* Settlement goes through the receiver that received the message: received SDK messages
  are kept by lock token until settled, so `complete`/`abandon`/... work through the port.
  A lock token this bus does not hold (settled already, or received elsewhere) is a
  MessageLockLostError.
* Dead letters are read and replayed through the `$deadletterqueue` sub-queue. A replay
  sends a copy with a new message id (`<original>:replay:<sequence number>`, so duplicate detection
  cannot drop it; `originalMessageId` keeps the old one) and then completes the dead
  letter. Service Bus cannot send to one subscription: a subscription's dead letters are
  replayed to its topic, where every matching subscription gets them again (consumers
  are idempotent by design).
* `depth` reads runtime properties with the administration client. Service Bus does not
  report how many messages are locked (they count as active), so `locked` is 0.
* SDK errors become core errors naming the entity: busy/timeouts/connection ->
  TransientError, lock lost -> MessageLockLostError, too large -> PermanentError, entity
  missing -> NotFoundError, authentication/authorisation -> AuthError.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import (
    MessageLockLostError as SdkMessageLockLostError,
)
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityDisabledError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusServerBusyError,
)

from core.config import Settings
from core.errors import (
    AuthError,
    MessageLockLostError,
    NotFoundError,
    PermanentError,
    PortError,
    TransientError,
)
from core.messaging import claim_check
from core.messaging.bus_rules import check_receive
from core.messaging.topology import TOPOLOGY, Topology
from core.ports import BlobStore, EntityDepth, OutboundMessage, ReceivedMessage

logger = logging.getLogger(__name__)

SUBSCRIPTIONS = "/subscriptions/"
NO_WAIT_POLL_SECONDS = 1.0
"""A receive with `wait_seconds=0` still needs a round trip to the broker: it waits this
long for messages that are already there."""
REPLAY_BATCH = 50
ORIGINAL_MESSAGE_ID = "originalMessageId"
_NO_LOCK = datetime.min.replace(tzinfo=UTC)


class AdministrationClient(Protocol):
    """What this adapter uses of `ServiceBusAdministrationClient`."""

    def get_queue_runtime_properties(self, queue_name: str) -> Any: ...

    def get_subscription_runtime_properties(
        self, topic_name: str, subscription_name: str
    ) -> Any: ...

    def get_namespace_properties(self) -> Any: ...


# -------------------------------------------------------------------------------------
# clients (one per process)
# -------------------------------------------------------------------------------------

_clients: dict[tuple[str, str], tuple[ServiceBusClient, AdministrationClient]] = {}
_clients_lock = threading.Lock()


def shared_clients(
    *, namespace: str | None = None, connection_string: str | None = None
) -> tuple[ServiceBusClient, AdministrationClient]:
    """The process's Service Bus clients: from a connection string, or from the fully
    qualified namespace with DefaultAzureCredential."""
    from azure.servicebus.management import ServiceBusAdministrationClient

    if connection_string:
        cache_key = ("connection_string", connection_string)
    elif namespace:
        cache_key = ("namespace", namespace)
    else:
        raise PermanentError("a Service Bus client needs a namespace or a connection string")
    with _clients_lock:
        clients = _clients.get(cache_key)
        if clients is None:
            if connection_string:
                clients = (
                    ServiceBusClient.from_connection_string(connection_string),
                    ServiceBusAdministrationClient.from_connection_string(connection_string),
                )
            else:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
                clients = (
                    ServiceBusClient(namespace or "", credential),
                    ServiceBusAdministrationClient(namespace or "", credential),
                )
            _clients[cache_key] = clients
        return clients


def build(settings: Settings) -> ServiceBusBus:
    """The composition root's factory (`BUS=servicebus`). Claim checks use the runtime's
    blob store."""
    from core.runtime import ConfigurationError, get_runtime

    if not (settings.servicebus_connection_string or settings.servicebus_namespace):
        raise ConfigurationError(
            "BUS=servicebus needs ServiceBusConnection__fullyQualifiedNamespace (identity)"
            " or SERVICEBUS_CONNECTION_STRING"
        )
    client, admin = shared_clients(
        namespace=settings.servicebus_namespace,
        connection_string=settings.servicebus_connection_string,
    )
    return ServiceBusBus(
        client,
        admin,
        blobs=lambda: get_runtime().blobs,
        inline_limit_bytes=settings.message_inline_limit_bytes,
    )


# -------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------


def translate(exc: Exception, entity: str) -> PortError:
    """An SDK exception as the port error it means, naming the entity."""
    name = type(exc).__name__
    if isinstance(exc, SdkMessageLockLostError):
        return MessageLockLostError(
            f"Service Bus {entity}: the message lock was lost or the message was settled",
            resource=entity,
        )
    if isinstance(exc, MessageSizeExceededError):
        return PermanentError(f"Service Bus {entity}: message too large ({exc})", resource=entity)
    if isinstance(exc, MessagingEntityNotFoundError | ResourceNotFoundError):
        return NotFoundError(f"Service Bus entity '{entity}' does not exist", resource=entity)
    if isinstance(
        exc,
        ServiceBusAuthenticationError | ServiceBusAuthorizationError | ClientAuthenticationError,
    ):
        return AuthError(
            f"Service Bus {entity}: credentials missing, expired or not allowed ({name})",
            resource=entity,
        )
    if isinstance(exc, ServiceBusServerBusyError):
        return TransientError(
            f"Service Bus {entity}: server busy", resource=entity, retry_after=10.0
        )
    if isinstance(exc, OperationTimeoutError | ServiceBusConnectionError):
        return TransientError(f"Service Bus {entity}: {name}", resource=entity)
    if isinstance(exc, MessagingEntityDisabledError):
        return PermanentError(f"Service Bus entity '{entity}' is disabled", resource=entity)
    return TransientError(f"Service Bus {entity}: {name}", resource=entity)


@contextmanager
def bus_errors(entity: str) -> Iterator[None]:
    try:
        yield
    except PortError:
        raise
    except (ServiceBusError, ClientAuthenticationError, ResourceNotFoundError) as exc:
        raise translate(exc, entity) from exc


# -------------------------------------------------------------------------------------
# the bus
# -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entity:
    name: str
    topic: str | None = None
    subscription: str | None = None

    @property
    def send_target(self) -> str:
        return self.topic or self.name


def parse_entity(entity: str) -> _Entity:
    """`queue`, `topic` or `topic/subscriptions/subscription`."""
    if not isinstance(entity, str) or not entity.strip():
        raise PermanentError(f"invalid Service Bus entity name {entity!r}", resource=str(entity))
    if SUBSCRIPTIONS in entity:
        topic, _, subscription = entity.partition(SUBSCRIPTIONS)
        if not topic or not subscription or "/" in subscription:
            raise PermanentError(
                f"invalid subscription path {entity!r}: use <topic>/subscriptions/<name>",
                resource=entity,
            )
        return _Entity(entity, topic, subscription)
    return _Entity(entity)


@dataclass
class _Held:
    """A received SDK message and the receiver that must settle it."""

    receiver: Any
    message: ServiceBusReceivedMessage


class ServiceBusBus:
    """The `Bus` port on one Service Bus namespace (see the module docstring)."""

    def __init__(
        self,
        client: ServiceBusClient,
        admin: AdministrationClient,
        *,
        blobs: Callable[[], BlobStore],
        inline_limit_bytes: int,
        topology: Topology = TOPOLOGY,
    ) -> None:
        self._client = client
        self._admin = admin
        self._blobs = blobs
        self._inline_limit = inline_limit_bytes
        self._topology = topology
        self._topics = {topic.name for topic in topology.topics}
        self._lock = threading.Lock()
        self._senders: dict[str, Any] = {}
        self._receivers: dict[tuple[str, bool], Any] = {}
        self._entity_locks: dict[str, threading.Lock] = {}
        self._held: dict[str, _Held] = {}

    def __repr__(self) -> str:
        return "ServiceBusBus()"

    def close(self) -> None:
        with self._lock:
            handlers = [*self._senders.values(), *self._receivers.values()]
            self._senders.clear()
            self._receivers.clear()
            self._held.clear()
        for handler in handlers:
            handler.close()

    # ---------------------------------------------------------------- handlers

    def _entity_lock(self, key: str) -> threading.Lock:
        """SDK senders and receivers are not thread-safe: one caller at a time each."""
        with self._lock:
            return self._entity_locks.setdefault(key, threading.Lock())

    def _sender(self, target: str) -> Any:
        with self._lock:
            sender = self._senders.get(target)
            if sender is None:
                if target in self._topics:
                    sender = self._client.get_topic_sender(topic_name=target)
                else:
                    sender = self._client.get_queue_sender(queue_name=target)
                self._senders[target] = sender
            return sender

    def _receiver(self, entity: _Entity, *, dead_letter: bool = False) -> Any:
        key = (entity.name, dead_letter)
        with self._lock:
            receiver = self._receivers.get(key)
            if receiver is None:
                options: dict[str, Any] = {
                    "receive_mode": ServiceBusReceiveMode.PEEK_LOCK,
                    "prefetch_count": 0,
                }
                if dead_letter:
                    options["sub_queue"] = ServiceBusSubQueue.DEAD_LETTER
                if entity.topic is not None:
                    receiver = self._client.get_subscription_receiver(
                        topic_name=entity.topic,
                        subscription_name=str(entity.subscription),
                        **options,
                    )
                else:
                    receiver = self._client.get_queue_receiver(queue_name=entity.name, **options)
                self._receivers[key] = receiver
            return receiver

    # ---------------------------------------------------------------- send

    def send(self, entity: str, messages: Sequence[OutboundMessage]) -> None:
        target = parse_entity(entity)
        if target.topic is not None:
            raise PermanentError(
                f"'{entity}' is a subscription: send to its topic '{target.topic}'",
                resource=entity,
            )
        if not messages:
            return
        prepared = [self._to_sdk(entity, message) for message in messages]
        sender = self._sender(entity)
        with self._entity_lock(f"send:{entity}"), bus_errors(entity):
            batches = list(self._batches(entity, sender, prepared))
            for batch in batches:
                sender.send_messages(batch)

    def _to_sdk(self, entity: str, message: OutboundMessage) -> ServiceBusMessage:
        if not isinstance(message.body, bytes | bytearray | memoryview):
            raise PermanentError(
                f"message body for '{entity}' must be bytes, got {type(message.body).__name__}",
                resource=entity,
            )
        body, marker = claim_check.offload(
            self._blobs(),
            bytes(message.body),
            self._inline_limit,
            content_type=message.content_type,
        )
        scheduled = message.scheduled_enqueue_time
        if scheduled is not None and scheduled.tzinfo is None:
            raise PermanentError(
                f"scheduled_enqueue_time for '{entity}' must be timezone-aware, got {scheduled}",
                resource=entity,
            )
        return ServiceBusMessage(
            body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            subject=message.subject,
            content_type=message.content_type,
            application_properties=_amqp_properties({**message.application_properties, **marker}),
            scheduled_enqueue_time_utc=scheduled,
            time_to_live=message.time_to_live,
        )

    @staticmethod
    def _batches(
        entity: str, sender: Any, messages: list[ServiceBusMessage]
    ) -> Iterator[ServiceBusMessageBatch]:
        """Fill each batch up to the entity's size limit, in order."""
        batch = sender.create_message_batch()
        for message in messages:
            try:
                batch.add_message(message)
                continue
            except MessageSizeExceededError as exc:
                if len(batch) == 0:
                    raise PermanentError(
                        f"message {message.message_id!r} for '{entity}' is larger than the"
                        f" entity's {batch.max_size_in_bytes}-byte limit even alone",
                        resource=entity,
                    ) from exc
            yield batch
            batch = sender.create_message_batch()
            try:
                batch.add_message(message)
            except MessageSizeExceededError as exc:
                raise PermanentError(
                    f"message {message.message_id!r} for '{entity}' is larger than the"
                    f" entity's {batch.max_size_in_bytes}-byte limit even alone",
                    resource=entity,
                ) from exc
        if len(batch):
            yield batch

    # ---------------------------------------------------------------- receive

    def receive(
        self, entity: str, *, max_messages: int = 1, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        check_receive(entity, max_messages, wait_seconds)
        source = self._receivable(entity)
        receiver = self._receiver(source)
        with self._entity_lock(f"receive:{entity}"), bus_errors(entity):
            received = receiver.receive_messages(
                max_message_count=max_messages,
                max_wait_time=wait_seconds or NO_WAIT_POLL_SECONDS,
            )
        messages = []
        for sdk_message in received:
            mapped = self._from_sdk(entity, sdk_message)
            with self._lock:
                self._held[mapped.lock_token] = _Held(receiver, sdk_message)
            messages.append(mapped)
        return messages

    def _receivable(self, entity: str) -> _Entity:
        source = parse_entity(entity)
        if source.topic is None and entity in self._topics:
            subscriptions = [
                name for name in self.entities() if name.startswith(entity + SUBSCRIPTIONS)
            ]
            raise PermanentError(
                f"'{entity}' is a topic: receive from one of its subscriptions"
                f" ({', '.join(subscriptions) or 'none defined'})",
                resource=entity,
            )
        return source

    def _from_sdk(
        self, entity: str, message: ServiceBusReceivedMessage, *, peeked: bool = False
    ) -> ReceivedMessage:
        properties = _decode_properties(message.application_properties or {})
        raw_body = b"".join(message.body)
        body = claim_check.resolve(self._blobs(), raw_body, properties)
        return ReceivedMessage(
            entity=entity,
            body=body,
            message_id=str(message.message_id),
            sequence_number=int(message.sequence_number or 0),
            delivery_count=int(message.delivery_count or 0),
            enqueued_time=_utc(message.enqueued_time_utc) or _NO_LOCK,
            lock_token="" if peeked else str(message.lock_token),
            locked_until=_NO_LOCK if peeked else (_utc(message.locked_until_utc) or _NO_LOCK),
            correlation_id=message.correlation_id,
            subject=message.subject,
            content_type=message.content_type,
            application_properties=properties,
            expires_at=_utc(message.expires_at_utc),
            scheduled_enqueue_time=_utc(message.scheduled_enqueue_time_utc),
            dead_letter_reason=message.dead_letter_reason,
            dead_letter_description=message.dead_letter_error_description,
        )

    # ---------------------------------------------------------------- settlement

    def _take(self, message: ReceivedMessage, *, keep: bool = False) -> _Held:
        with self._lock:
            held = (
                self._held.get(message.lock_token)
                if keep
                else self._held.pop(message.lock_token, None)
            )
        if held is None:
            raise MessageLockLostError(
                f"message {message.message_id} from '{message.entity}' is not held by this bus"
                " (settled already, or received by another one)",
                resource=message.entity,
            )
        return held

    def _settle(self, message: ReceivedMessage, action: Callable[[Any, Any], Any]) -> Any:
        held = self._take(message)
        try:
            with bus_errors(message.entity):
                return action(held.receiver, held.message)
        except TransientError:
            with self._lock:
                self._held[message.lock_token] = held
            raise

    def complete(self, message: ReceivedMessage) -> None:
        self._settle(message, lambda receiver, sdk: receiver.complete_message(sdk))

    def abandon(self, message: ReceivedMessage, *, error: str | None = None) -> None:
        """Release the lock. Service Bus records no error on abandon: it is logged here,
        and after the maximum delivery count the broker dead-letters the message."""
        if error:
            logger.warning(
                "bus: abandoning message %s from %s: %s", message.message_id, message.entity, error
            )
        self._settle(message, lambda receiver, sdk: receiver.abandon_message(sdk))

    def dead_letter(self, message: ReceivedMessage, *, reason: str, description: str) -> None:
        self._settle(
            message,
            lambda receiver, sdk: receiver.dead_letter_message(
                sdk, reason=reason, error_description=description
            ),
        )

    def renew_lock(self, message: ReceivedMessage) -> datetime:
        held = self._take(message, keep=True)
        try:
            with bus_errors(message.entity):
                locked_until = held.receiver.renew_message_lock(held.message)
        except MessageLockLostError:
            with self._lock:
                self._held.pop(message.lock_token, None)
            raise
        message.locked_until = _utc(locked_until) or _NO_LOCK
        return message.locked_until

    # ---------------------------------------------------------------- dead letters

    def peek_dead_letters(self, entity: str, *, max_messages: int = 100) -> list[ReceivedMessage]:
        """Dead letters, oldest first, without locking them (`lock_token` is empty)."""
        check_receive(entity, max_messages)
        source = self._receivable(entity)
        receiver = self._receiver(source, dead_letter=True)
        with self._entity_lock(f"dlq:{entity}"), bus_errors(f"{entity}/$deadletterqueue"):
            # From the first sequence number: 0 would continue after this receiver's last peek.
            peeked = receiver.peek_messages(max_message_count=max_messages, sequence_number=1)
        return [self._from_sdk(entity, message, peeked=True) for message in peeked]

    def replay_dead_letters(self, entity: str, *, message_ids: Sequence[str] | None = None) -> int:
        source = self._receivable(entity)
        if message_ids is not None and not message_ids:
            return 0
        wanted = None if message_ids is None else set(message_ids)
        receiver = self._receiver(source, dead_letter=True)
        sender = self._sender(source.send_target)
        moved = 0
        skipped: list[ServiceBusReceivedMessage] = []
        with self._entity_lock(f"dlq:{entity}"), bus_errors(f"{entity}/$deadletterqueue"):
            try:
                while True:
                    batch = receiver.receive_messages(
                        max_message_count=REPLAY_BATCH, max_wait_time=NO_WAIT_POLL_SECONDS
                    )
                    if not batch:
                        break
                    for dead in batch:
                        if wanted is not None and dead.message_id not in wanted:
                            skipped.append(dead)
                            continue
                        sender.send_messages(self._replay_copy(dead))
                        receiver.complete_message(dead)
                        moved += 1
            finally:
                for dead in skipped:
                    receiver.abandon_message(dead)
        return moved

    @staticmethod
    def _replay_copy(dead: ServiceBusReceivedMessage) -> ServiceBusMessage:
        properties = _decode_properties(dead.application_properties or {})
        properties.setdefault(ORIGINAL_MESSAGE_ID, str(dead.message_id))
        original = str(properties[ORIGINAL_MESSAGE_ID])[:100]  # message ids: 128 chars at most
        return ServiceBusMessage(
            b"".join(dead.body),
            message_id=f"{original}:replay:{dead.sequence_number}",
            correlation_id=dead.correlation_id,
            subject=dead.subject,
            content_type=dead.content_type,
            application_properties=_amqp_properties(properties),
        )

    # ---------------------------------------------------------------- depth, health

    def depth(self, entity: str) -> EntityDepth:
        source = self._receivable(entity)
        with bus_errors(entity):
            if source.topic is not None:
                properties = self._admin.get_subscription_runtime_properties(
                    source.topic, source.subscription or ""
                )
            else:
                properties = self._admin.get_queue_runtime_properties(entity)
        return EntityDepth(
            entity=entity,
            active=int(properties.active_message_count or 0),
            scheduled=int(getattr(properties, "scheduled_message_count", 0) or 0),
            locked=0,
            dead_letter=int(properties.dead_letter_message_count or 0),
        )

    def entities(self) -> list[str]:
        return self._topology.receivable_entities()

    def ping(self) -> None:
        with bus_errors("namespace"):
            self._admin.get_namespace_properties()


def _amqp_properties(properties: Mapping[str, Any]) -> dict[str | bytes, Any]:
    """The SDK types keys as `str | bytes`; ours are always `str`."""
    return cast(dict[str | bytes, Any], dict(properties))


def _decode_properties(properties: Mapping[Any, Any]) -> dict[str, Any]:
    """AMQP hands keys (and string values) back as bytes."""
    decoded: dict[str, Any] = {}
    for key, value in properties.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        decoded[name] = value.decode() if isinstance(value, bytes) else value
    return decoded


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
