"""The CRM data flow: sync scheduling, sync tasks, raw record mapping, sync tracking,
sync timeouts."""

from __future__ import annotations

import logging

import azure.functions as func

from core import metrics
from core.errors import PoisonMessageError
from core.messaging import topology
from core.messaging.consumer import consume
from core.models.events import EventEnvelope, decode_envelope
from core.runtime import get_runtime
from core.sync.executions import parse_task
from core.sync.tracking import track
from functions.bus_support import inbound

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=topology.SYNC_TASKS, connection=topology.SERVICE_BUS_CONNECTION
)
def sync_worker(msg: func.ServiceBusMessage) -> None:
    runtime = get_runtime()
    worker = runtime.sync_worker
    consume(
        inbound(msg),
        entity=topology.SYNC_TASKS,
        bus=runtime.bus,
        handler=lambda envelope, attempt: worker.run(parse_task(envelope)),
        give_up=lambda envelope, error, attempts: worker.give_up(parse_task(envelope), error),
    )


@bp.service_bus_queue_trigger(
    arg_name="msg",
    queue_name=topology.INTEGRATION_DATA_RAW,
    connection=topology.SERVICE_BUS_CONNECTION,
)
def crm_mapping(msg: func.ServiceBusMessage) -> None:
    runtime = get_runtime()
    processor = runtime.crm_processor
    consume(
        inbound(msg),
        entity=topology.INTEGRATION_DATA_RAW,
        bus=runtime.bus,
        blobs=runtime.blobs,
        handler=lambda envelope, attempt: processor.process(envelope, attempt=attempt),
        give_up=processor.quarantine_message,
    )


@bp.service_bus_topic_trigger(
    arg_name="msgs",
    topic_name=topology.INTEGRATION_EVENTS_TOPIC,
    subscription_name=topology.SUB_SYNC_TRACKING,
    connection=topology.SERVICE_BUS_CONNECTION,
    cardinality=func.Cardinality.MANY,
)
def sync_tracking(msgs: list[func.ServiceBusMessage]) -> None:
    envelopes: list[EventEnvelope] = []
    for msg in msgs:
        try:
            envelopes.append(decode_envelope(msg.get_body()))
        except PoisonMessageError as exc:
            metrics.MESSAGES_DEAD_LETTERED.labels(topology.SUB_SYNC_TRACKING, exc.reason).inc()
            log.error(
                "ignoring malformed tracking event %s: %s (counters are recounted from "
                "progress documents, so no count is lost)",
                msg.message_id,
                exc,
            )
    track(get_runtime().executions, envelopes)


@bp.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=False)
def sync_timeouts(timer: func.TimerRequest) -> None:
    get_runtime().executions.time_out_stale()


@bp.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=False)
def sync_scheduler(timer: func.TimerRequest) -> None:
    get_runtime().sync_scheduler.run()
