"""Service Bus trigger messages in, core consumer messages out."""

from __future__ import annotations

import azure.functions as func

from core.messaging.consumer import InboundMessage


def inbound(msg: func.ServiceBusMessage) -> InboundMessage:
    return InboundMessage(
        body=msg.get_body(),
        message_id=msg.message_id or "",
        correlation_id=msg.correlation_id,
        subject=getattr(msg, "subject", None) or getattr(msg, "label", None),
        content_type=msg.content_type,
        delivery_count=msg.delivery_count or 1,
        application_properties=dict(msg.application_properties or {}),
    )
