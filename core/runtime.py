"""Composition root: builds each port's adapter once per process.

`RUNTIME=local` (default) uses the embedded adapters under `DATA_DIR`; `RUNTIME=azure`
uses the Azure ones. Each port can be overridden (`STORE`, `BUS`, `BLOBS`, `SECRETS`),
so mixed set-ups such as the local bus with a Cosmos-compatible server work. Clients are
module-level singletons: Functions instances have a connection cap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from core import telemetry
from core.adapters.azure.telemetry import configure_telemetry
from core.api.auth import TokenVerifier, build_verifier
from core.config import Settings, get_settings
from core.integrations.repository import IntegrationConfigCache, IntegrationRepository
from core.models.shard_types import ensure_shard_types
from core.ports import BlobStore, Bus, DocumentStore, SecretStore
from core.processing.crm import CrmMappingProcessor
from core.sync.executions import SyncExecutions
from core.sync.scheduler import SyncScheduler
from core.sync.worker import SyncWorker
from core.webhooks import receipt_process
from core.webhooks.commit import Committer
from core.webhooks.receipt_process import ReceiptProcess
from core.webhooks.receiver import CountSink, WebhookIntake, WebhookReceiver, count_metric


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ConfigurationError(RuntimeError):
    """A setting names an adapter that cannot be built; the message names the setting."""


@dataclass
class Runtime:
    settings: Settings
    clock: SystemClock = field(default_factory=SystemClock)

    @property
    def data_dir(self) -> Path:
        path = Path(self.settings.data_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @cached_property
    def store(self) -> DocumentStore:
        if self.settings.store == "sqlite":
            from core.adapters.local.sqlite_store import SqliteDocumentStore

            return SqliteDocumentStore(self.data_dir / "store.sqlite")
        return _azure_adapter(
            "STORE", "cosmos", "core.adapters.azure.cosmos_store", "build", self.settings
        )

    @cached_property
    def bus(self) -> Bus:
        if self.settings.bus == "sqlite":
            from core.adapters.local.sqlite_bus import SqliteBus

            return SqliteBus(self.data_dir / "bus.sqlite")
        return _azure_adapter(
            "BUS", "servicebus", "core.adapters.azure.servicebus_bus", "build", self.settings
        )

    @cached_property
    def blobs(self) -> BlobStore:
        if self.settings.blobs == "folder":
            from core.adapters.local.folder_blobs import FolderBlobStore

            return FolderBlobStore(self.data_dir / "blobs")
        return _azure_adapter(
            "BLOBS", "azure", "core.adapters.azure.blob_store", "build", self.settings
        )

    @cached_property
    def secrets(self) -> SecretStore:
        if self.settings.secrets == "env":
            from core.adapters.local.env_secrets import EnvSecretStore

            return EnvSecretStore(file=self.data_dir / "secrets.json")
        return _azure_adapter(
            "SECRETS", "keyvault", "core.adapters.azure.key_vault", "build", self.settings
        )

    @cached_property
    def token_verifier(self) -> TokenVerifier:
        return build_verifier(self.settings)

    @cached_property
    def integration_cache(self) -> IntegrationConfigCache:
        return IntegrationConfigCache(IntegrationRepository(self.store))

    @cached_property
    def executions(self) -> SyncExecutions:
        return SyncExecutions(self.store, self.bus, self.clock)

    @cached_property
    def crm_processor(self) -> CrmMappingProcessor:
        """Built on first use in each worker process, after the start-up checks (in Azure
        there is no other start-up hook than the first invocation)."""
        self.startup()
        return CrmMappingProcessor(
            self.store,
            self.bus,
            self.clock,
            self.integration_cache,
            validation_mode=self.settings.validation_mode,
        )

    @cached_property
    def sync_worker(self) -> SyncWorker:
        return SyncWorker(
            self.store,
            self.bus,
            self.secrets,
            self.clock,
            cursor_overlap=timedelta(seconds=self.settings.sync_cursor_overlap_seconds),
        )

    @cached_property
    def sync_scheduler(self) -> SyncScheduler:
        return SyncScheduler(
            self.store,
            self.bus,
            self.clock,
            backpressure_depth=self.settings.scheduler_backpressure_depth,
        )

    @cached_property
    def webhook_receiver(self) -> WebhookIntake:
        """One per process: it holds the registration cache, rate buckets and health tally.
        On the local SQLite bus, receipt runs in a process of its own (see
        `core.webhooks.receipt_process`)."""
        if (
            self.settings.webhook_receipt_process
            and self.settings.bus == "sqlite"
            and receipt_process.supported()
        ):
            return ReceiptProcess(
                self.settings,
                self.store,
                self.secrets,
                self.clock,
                on_committed=getattr(self.bus, "wake_receivers", None),
            )
        return self.build_webhook_receiver()

    def build_webhook_receiver(
        self, committer: Committer | None = None, *, count: CountSink = count_metric
    ) -> WebhookReceiver:
        """A receiver in this process; without a committer it writes from a thread."""
        return WebhookReceiver(
            self.store,
            self.bus,
            self.blobs,
            self.secrets,
            self.clock,
            self.executions,
            inline_limit_bytes=self.settings.message_inline_limit_bytes,
            rate_per_second=self.settings.webhook_rate_per_second,
            rate_burst=self.settings.webhook_rate_burst,
            committer=committer,
            count=count,
        )

    def close(self) -> None:
        """Ends what the runtime started in the background (the webhook receipt process or
        writer thread)."""
        receiver = self.__dict__.get("webhook_receiver")
        if receiver is not None:
            receiver.close()

    def startup(self) -> None:
        """Start-up work that must succeed before messages are processed: the shard types
        (ShardTypeSetupError after 3 attempts, so start-up fails loudly)."""
        ensure_shard_types(self.store, self.clock)
        if configure_telemetry(self.settings):
            telemetry.watch_queue_depth(lambda: self.bus)

    def probes(self) -> dict[str, Callable[[], None]]:
        """Each dependency's readiness probe, by name (for `/api/ready`)."""
        return {
            "store": lambda: self.store.ping(),
            "bus": lambda: self.bus.ping(),
            "blobs": lambda: self.blobs.ping(),
            "secrets": lambda: self.secrets.ping(),
        }


def _azure_adapter(setting: str, value: str, module: str, factory: str, settings: Settings) -> Any:
    import importlib

    try:
        builder = getattr(importlib.import_module(module), factory)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"{setting}={value} needs the adapter module {module}, which is not available: {exc}"
        ) from exc
    return builder(settings)


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = Runtime(get_settings())
    return _runtime


def reset_runtime(runtime: Runtime | None = None) -> None:
    """Replace the process runtime (tests and the local host's start-up)."""
    global _runtime
    with _lock:
        _runtime = runtime
