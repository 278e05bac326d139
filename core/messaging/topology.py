"""The message topology of ARCHITECTURE.md: every queue, topic and subscription with its
settings. The local bus is built from it, the Bicep declares the same names, and tests
cross-check both against the functions' trigger bindings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

HOUR = timedelta(hours=1)

# Queues
SYNC_TASKS = "sync-tasks"
INTEGRATION_DATA_RAW = "integration_data_raw"
INTEGRATION_DOCUMENTS = "integration_documents"
INTEGRATION_COMMUNICATIONS = "integration_communications"
INTEGRATION_MEETINGS = "integration_meetings"
INTEGRATION_EVENTS_QUEUE = "integration_events"
SHARD_ML_AGGREGATION = "shard_ml_aggregation"

# Topics and subscriptions
SHARD_EVENTS = "shard-events"
INTEGRATION_EVENTS_TOPIC = "integration-events"
SUB_ENTITY_LINKING = "entity-linking"
SUB_ML_AGGREGATION = "ml-aggregation"
SUB_VECTORIZATION = "vectorization"
SUB_SYNC_TRACKING = "sync-tracking"

SERVICE_BUS_CONNECTION = "ServiceBusConnection"


def subscription_path(topic: str, subscription: str) -> str:
    return f"{topic}/subscriptions/{subscription}"


@dataclass(frozen=True, slots=True)
class EntitySettings:
    """Service Bus settings shared by queues and subscriptions."""

    default_ttl: timedelta = 24 * HOUR
    max_delivery_count: int = 5
    dead_letter_on_expiry: bool = True
    lock_duration: timedelta = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    settings: EntitySettings = field(default_factory=EntitySettings)
    duplicate_detection_window: timedelta = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """`filter`: every listed application property must have one of the listed values
    (an AND of IN-lists; empty = accept all). Rendered to a SQL filter for Service Bus."""

    name: str
    filter: dict[str, tuple[str, ...]] = field(default_factory=dict)
    settings: EntitySettings = field(default_factory=EntitySettings)

    def matches(self, properties: dict[str, object]) -> bool:
        return all(properties.get(key) in allowed for key, allowed in self.filter.items())

    def sql_filter(self) -> str:
        if not self.filter:
            return "1=1"
        clauses = []
        for key, allowed in self.filter.items():
            values = ", ".join("'" + value.replace("'", "''") + "'" for value in allowed)
            clauses.append(f"{key} IN ({values})")
        return " AND ".join(clauses)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    subscriptions: tuple[SubscriptionSpec, ...]
    duplicate_detection_window: timedelta = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Topology:
    queues: tuple[QueueSpec, ...]
    topics: tuple[TopicSpec, ...]

    def receivable_entities(self) -> list[str]:
        names = [q.name for q in self.queues]
        for topic in self.topics:
            names.extend(subscription_path(topic.name, s.name) for s in topic.subscriptions)
        return names


_LINKABLE = ("Document", "Email", "Message", "Meeting")
_SHARD_EVENT_TYPES = ("shard.created", "shard.updated")

TOPOLOGY = Topology(
    queues=(
        QueueSpec(SYNC_TASKS),
        QueueSpec(INTEGRATION_DATA_RAW),
        QueueSpec(INTEGRATION_DOCUMENTS, EntitySettings(default_ttl=48 * HOUR)),
        QueueSpec(INTEGRATION_COMMUNICATIONS),
        QueueSpec(INTEGRATION_MEETINGS, EntitySettings(default_ttl=72 * HOUR)),
        QueueSpec(INTEGRATION_EVENTS_QUEUE),
        QueueSpec(SHARD_ML_AGGREGATION),
    ),
    topics=(
        TopicSpec(
            SHARD_EVENTS,
            (
                SubscriptionSpec(
                    SUB_ENTITY_LINKING,
                    {"eventType": _SHARD_EVENT_TYPES, "shardTypeName": _LINKABLE},
                ),
                SubscriptionSpec(
                    SUB_ML_AGGREGATION,
                    {"eventType": _SHARD_EVENT_TYPES, "shardTypeName": ("Opportunity",)},
                ),
                SubscriptionSpec(
                    SUB_VECTORIZATION,
                    {"eventType": _SHARD_EVENT_TYPES, "shardTypeName": _LINKABLE},
                ),
            ),
        ),
        TopicSpec(
            INTEGRATION_EVENTS_TOPIC,
            (
                SubscriptionSpec(
                    SUB_SYNC_TRACKING,
                    {
                        "eventType": (
                            "integration.data.mapped",
                            "integration.data.mapping.failed",
                        )
                    },
                ),
            ),
        ),
    ),
)
