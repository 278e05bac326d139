"""Salesforce workflow outbound messages (SOAP 1.1).

https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_wsdl.htm :
a `notifications` element carries OrganizationId, ActionId, SessionId, EnterpriseUrl,
PartnerUrl and up to 100 `Notification` elements, each an Id and an sObject whose xsi:type
names the object; the listener answers `notificationsResponse` with Ack true, or Salesforce
retries for 24 hours. Outbound messages carry no signature: the sending organization's id,
checked against the registration's secret, is what ties a message to a tenant (Salesforce also
offers its client certificate for mutual TLS, which is the hosting layer's business).

The body is parsed with defusedxml, which refuses DTDs, entity expansion and external
references. SessionId is a live API session of the sending user and never reaches an event.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from core.webhooks.schemes.base import (
    Accepted,
    DeliveryRejectedError,
    RejectReason,
    WebhookEvent,
    WebhookRequest,
    WebhookResponse,
    WebhookScheme,
    WebhookVerdict,
    require_media_type,
    require_secret,
)

SOAP_ENVELOPE_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XML_CONTENT_TYPES = ("text/xml", "application/xml")

ACK_ENVELOPE = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>"
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack>"
    b"</notificationsResponse>"
    b"</soapenv:Body>"
    b"</soapenv:Envelope>"
)
ACK_RESPONSE = WebhookResponse(200, "text/xml; charset=utf-8", ACK_ENVELOPE)

_CASE_SENSITIVE_ID_LENGTH = 15


def _tag(namespace: str, local_name: str) -> str:
    return f"{{{namespace}}}{local_name}"


def _local_name(element: Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def same_organization(registered: str, received: str) -> bool:
    """Salesforce ids come in 15-character (case-sensitive) and 18-character (15 plus a
    checksum) forms; the registration may hold either, so the first 15 decide. Both ids are
    validated as ASCII alphanumerics before they get here."""
    return hmac.compare_digest(
        registered[:_CASE_SENSITIVE_ID_LENGTH].encode(),
        received[:_CASE_SENSITIVE_ID_LENGTH].encode(),
    )


def _is_salesforce_id(value: str) -> bool:
    return len(value) in (15, 18) and value.isascii() and value.isalnum()


@dataclass(frozen=True, slots=True)
class SalesforceOutboundMessageScheme(WebhookScheme):
    name: ClassVar[str] = "salesforce"

    def _verify(self, request: WebhookRequest, secret: str | None, now: datetime) -> WebhookVerdict:
        require_media_type(request, *XML_CONTENT_TYPES)
        registered = require_secret(secret).strip()
        if not _is_salesforce_id(registered):
            raise DeliveryRejectedError(
                RejectReason.SECRET_NOT_CONFIGURED,
                "the registered organization id is not a 15- or 18-character Salesforce id",
            )
        notifications = _notifications_element(request.body)
        organization_id = _child_text(notifications, "OrganizationId")
        if not _is_salesforce_id(organization_id):
            raise DeliveryRejectedError(
                RejectReason.INVALID_BODY, "OrganizationId is not a 15- or 18-character id"
            )
        if not same_organization(registered, organization_id):
            raise DeliveryRejectedError(
                RejectReason.ORGANIZATION_MISMATCH, "OrganizationId is not the registered one"
            )
        action_id = _child_text(notifications, "ActionId")
        elements = notifications.findall(_tag(OUTBOUND_NS, "Notification"))
        if not elements:
            raise DeliveryRejectedError(
                RejectReason.INVALID_BODY, "notifications has no Notification"
            )
        events = tuple(
            _event(element, organization_id, action_id, index)
            for index, element in enumerate(elements)
        )
        return Accepted(self.name, events, ACK_RESPONSE)


def _notifications_element(body: bytes) -> Element:
    try:
        envelope = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException) as error:
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, f"body is not acceptable XML: {type(error).__name__}"
        ) from error
    if envelope.tag != _tag(SOAP_ENVELOPE_NS, "Envelope"):
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, "root element is not a SOAP Envelope"
        )
    notifications = envelope.find(
        f"{_tag(SOAP_ENVELOPE_NS, 'Body')}/{_tag(OUTBOUND_NS, 'notifications')}"
    )
    if notifications is None:
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, "SOAP Body has no outbound-messaging notifications element"
        )
    return notifications


def _child_text(parent: Element, local_name: str) -> str:
    child = parent.find(_tag(OUTBOUND_NS, local_name))
    text = (child.text or "").strip() if child is not None else ""
    if not text:
        raise DeliveryRejectedError(RejectReason.INVALID_BODY, f"{local_name} is missing or empty")
    return text


def _event(notification: Element, organization_id: str, action_id: str, index: int) -> WebhookEvent:
    notification_id = (notification.findtext(_tag(OUTBOUND_NS, "Id")) or "").strip()
    record = notification.find(_tag(OUTBOUND_NS, "sObject"))
    if not notification_id or record is None:
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, f"Notification[{index}] lacks its Id or sObject"
        )
    declared_type = record.get(_tag(XSI_NS, "type"), "")
    sobject_type = declared_type.rsplit(":", 1)[-1]
    if not sobject_type:
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, f"Notification[{index}].sObject has no xsi:type"
        )
    fields: dict[str, Any] = {
        _local_name(field): None if field.get(_tag(XSI_NS, "nil")) == "true" else field.text or ""
        for field in record
    }
    record_id = fields.get("Id")
    if not isinstance(record_id, str) or not record_id:
        raise DeliveryRejectedError(
            RejectReason.INVALID_BODY, f"Notification[{index}].sObject has no Id field"
        )
    payload = {
        "organizationId": organization_id,
        "actionId": action_id,
        "notificationId": notification_id,
        "sObjectType": sobject_type,
        "sObjectId": record_id,
        "fields": fields,
    }
    return WebhookEvent(notification_id, sobject_type, payload)
