"""The local host: runs a Functions app's own functions on the runtime's adapters.

It reads every function's trigger binding (`app.get_functions()`) and drives it: HTTP
routes under `/api`, Service Bus queue/subscription triggers from the bus, timers from
their schedules and blob triggers from the blob store. SIGTERM/SIGINT: stop receiving,
let in-flight invocations finish within the grace period, abandon the rest, exit.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from core.config import Settings
from core.local.http_server import HttpRouter, build_asgi_app
from core.local.invoker import BLOB, SERVICE_BUS, TIMER, FunctionSpec, read_functions
from core.local.triggers import POISON_BLOB_QUEUE, BlobDriver, ServiceBusDriver, TimerDriver
from core.messaging.topology import QueueSpec
from core.runtime import Runtime

log = logging.getLogger("core.local.host")

HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"
GC_THRESHOLDS = (20_000, 20, 20)
"""A request allocates a few hundred objects that die with it. At CPython's default
(700, 10, 10) the collector ran about every ten requests, and its older generations held
the ~90,000 objects of the loaded app: 49-52 us of collection per webhook delivery over
6,000 deliveries (measured with `gc.callbacks`). With start-up objects frozen and these
thresholds: 15-21 us."""


def tune_collector() -> None:
    """Call once start-up is done: what exists now lives as long as the process."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def load_app(target: str) -> Any:
    """`module:attribute`, e.g. `function_app:app`."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute or "app")


def _service_bus_options() -> dict[str, Any]:
    if not HOST_JSON.exists():
        return {}
    options: dict[str, Any] = (
        json.loads(HOST_JSON.read_text()).get("extensions", {}).get("serviceBus", {})
    )
    return options


def _timespan_seconds(value: str) -> float:
    hours, minutes, seconds = (float(part) for part in value.split(":"))
    return hours * 3600 + minutes * 60 + seconds


class LocalHost:
    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        self.functions: list[FunctionSpec] = read_functions(app)
        self.router = HttpRouter(self.functions)
        self._stopping = threading.Event()
        options = _service_bus_options()
        self._max_lock_renewal = timedelta(
            seconds=_timespan_seconds(options.get("maxAutoLockRenewalDuration", "00:05:00"))
        )
        self.bus_drivers: list[ServiceBusDriver] = []
        self.timer_drivers: list[TimerDriver] = []
        self.blob_drivers: list[BlobDriver] = []
        self._server: uvicorn.Server | None = None

    def concurrency_for(self, function_name: str) -> int:
        value = os.environ.get(f"LOCAL_CONCURRENCY__{function_name}")
        return int(value) if value else self.settings.local_concurrency

    def _check_entities(self) -> None:
        known = set(self.runtime.bus.entities())
        for driver in self.bus_drivers:
            if driver.entity not in known:
                raise RuntimeError(
                    f"function '{driver.spec.name}' listens on '{driver.entity}', which the bus "
                    f"does not have (known: {', '.join(sorted(known))})"
                )

    def start_background(self) -> None:
        """Start-up work, then every non-HTTP trigger."""
        self.runtime.startup()
        bus = self.runtime.bus
        for spec in self.functions:
            if spec.trigger_type == SERVICE_BUS:
                self.bus_drivers.append(
                    ServiceBusDriver(
                        spec,
                        bus,
                        concurrency=self.concurrency_for(spec.name),
                        max_lock_renewal=self._max_lock_renewal,
                        stopping=self._stopping,
                    )
                )
            elif spec.trigger_type == TIMER:
                self.timer_drivers.append(TimerDriver(spec, self._stopping))
            elif spec.trigger_type == BLOB:
                self.blob_drivers.append(
                    BlobDriver(
                        spec,
                        self.runtime.blobs,
                        bus,
                        self.runtime.data_dir / "host",
                        self._stopping,
                    )
                )
        self._check_entities()
        if self.blob_drivers and hasattr(bus, "create_queue"):
            bus.create_queue(QueueSpec(POISON_BLOB_QUEUE))
        for driver in self._drivers():
            driver.start()
        if self.bus_drivers:
            threading.Thread(target=self._renew_locks, name="lock-renewal", daemon=True).start()
        log.info(
            "local host started",
            extra={
                "functions": [f.name for f in self.functions],
                "routes": self.router.templates,
                "entities": [d.entity for d in self.bus_drivers],
            },
        )

    def _drivers(self) -> list[ServiceBusDriver | TimerDriver | BlobDriver]:
        return [*self.bus_drivers, *self.timer_drivers, *self.blob_drivers]

    def _renew_locks(self) -> None:
        while not self._stopping.wait(2.0):
            for driver in self.bus_drivers:
                driver.renew_locks()

    def stop(self) -> None:
        """Stop receiving; wait for in-flight work within the grace period; abandon the rest."""
        if self._stopping.is_set():
            return
        log.info(
            "local host stopping",
            extra={"graceSeconds": self.settings.local_shutdown_grace_seconds},
        )
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        deadline = time.monotonic() + self.settings.local_shutdown_grace_seconds
        for driver in self._drivers():
            driver.join(deadline)
        abandoned = sum(driver.abandon_in_flight() for driver in self.bus_drivers)
        log.info("local host stopped", extra={"abandonedMessages": abandoned})

    def serve(self, host: str, port: int) -> None:
        """Blocking: HTTP in a thread, triggers in the background, signals in the main thread."""
        self.start_background()
        config = uvicorn.Config(
            build_asgi_app(self.router),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(self.settings.local_shutdown_grace_seconds),
        )
        self._server = uvicorn.Server(config)
        server_thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        stop_requested = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received signal %s", signal.Signals(signum).name)
            stop_requested.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        tune_collector()
        server_thread.start()
        log.info("listening on http://%s:%d/api", host, port)
        while not stop_requested.wait(0.5):
            if not server_thread.is_alive():
                log.error("HTTP server exited; stopping the host")
                break
        self.stop()
        server_thread.join(self.settings.local_shutdown_grace_seconds + 1)
        self.runtime.close()
