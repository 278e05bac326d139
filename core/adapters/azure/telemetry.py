"""Application Insights through OpenTelemetry (azure-monitor-opentelemetry).

`configure_telemetry(settings)` installs the Azure Monitor distro (traces, metrics and
logs exporters) once per process when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set, and
does nothing otherwise; the spans and instruments of `core.telemetry` then reach
Application Insights. Call it at start-up, before the first span.
"""

from __future__ import annotations

import threading

from core.config import Settings

LOGGER_NAME = "core"
"""Log records of this logger (and its children) are exported as traces."""

_configured = False
_lock = threading.Lock()


def configure_telemetry(settings: Settings) -> bool:
    """True if the exporter is installed (now or earlier in this process)."""
    global _configured
    connection_string = settings.applicationinsights_connection_string
    if not connection_string:
        return False
    with _lock:
        if not _configured:
            from azure.monitor.opentelemetry import configure_azure_monitor

            configure_azure_monitor(connection_string=connection_string, logger_name=LOGGER_NAME)
            _configured = True
    return True
