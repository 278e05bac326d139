import json
import logging

from core.logging import JsonFormatter, log_context, redact


def _format(message: str, **extra) -> dict:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return json.loads(JsonFormatter().format(record))


def test_context_fields_are_on_every_line_inside_the_block():
    with (
        log_context(tenantId="t1", integrationId="i1", correlationId="c1"),
        log_context(functionName="f"),
    ):
        line = _format("hello")
    assert line["tenantId"] == "t1"
    assert line["integrationId"] == "i1"
    assert line["correlationId"] == "c1"
    assert line["functionName"] == "f"
    assert "tenantId" not in _format("outside")


def test_secrets_never_reach_the_log():
    line = _format(
        "calling with Authorization: Bearer abc.def-ghi and AccountKey=c2VjcmV0;",
        clientSecret="s3cr3t",
        headers={"Authorization": "Bearer xyz"},
    )
    text = json.dumps(line)
    for secret in ("abc.def-ghi", "c2VjcmV0", "s3cr3t", "xyz"):
        assert secret not in text
    assert redact("sig=abcdef&x=1") == "sig=[REDACTED]&x=1"
