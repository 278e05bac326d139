import json

import pytest

from core.errors import PoisonMessageError
from core.models.events import EventEnvelope, decode_envelope


def _event(**overrides):
    event = EventEnvelope(
        type="integration.data.raw", source="test", tenantId="t1", correlationId="c1"
    )
    raw = json.loads(event.to_json_bytes())
    raw.update(overrides)
    return json.dumps(raw).encode()


def test_round_trip_and_message_properties():
    event = EventEnvelope(
        type="shard.created", source="s", tenantId="t1", correlationId="c1", data={"a": 1}
    )
    message = event.to_message(message_id="idem-1", shard_type_name="Opportunity")
    assert message.message_id == "idem-1"
    assert message.correlation_id == "c1"
    assert message.subject == "shard.created"
    assert message.application_properties == {
        "eventType": "shard.created",
        "tenantId": "t1",
        "shardTypeName": "Opportunity",
    }
    assert decode_envelope(message.body) == event


def test_minor_versions_are_tolerated():
    assert decode_envelope(_event(schemaVersion="1.7")).schema_version == "1.7"


@pytest.mark.parametrize(
    "data",
    [
        {"text": "\ud800 lone surrogate"},
        {"big": 10**30, "small": -(2**70), "float": 0.1, "exp": 1e300, "nan": float("nan")},
        {"same": 1, "keys": {"k": [True, False, None]}},
    ],
)
def test_a_body_is_read_as_json_reads_it(data):
    body = _event(data=data)
    decoded = decode_envelope(body).data
    assert json.dumps(decoded) == json.dumps(json.loads(body)["data"])


def test_a_utf16_body_is_read_as_json_reads_it():
    body = _event(data={"name": "Ω"}).decode().encode("utf-16")
    assert decode_envelope(body).data == {"name": "Ω"}


@pytest.mark.parametrize(
    ("body", "reason", "mentions"),
    [
        (b"not json", "InvalidJson", "not JSON"),
        (b"[1, 2]", "InvalidEnvelope", "list"),
        (b'{"type": "x"}', "InvalidEnvelope", "tenantId"),
        (_event(schemaVersion="2.0"), "UnsupportedSchemaVersion", "major 2"),
        (_event(unexpected=1), "InvalidEnvelope", "unexpected"),
    ],
)
def test_bad_messages_are_poison_with_a_named_reason(body, reason, mentions):
    with pytest.raises(PoisonMessageError) as caught:
        decode_envelope(body)
    assert caught.value.reason == reason
    assert mentions in caught.value.description
