"""All settings in one place.

Names are the environment / Function App setting names (case-insensitive). Every one of
them is listed in `local.settings.json.example` and in the README's configuration table;
`tests/unit/test_config_docs.py` keeps the three in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, populate_by_name=True, env_ignore_empty=True
    )

    # --- composition -----------------------------------------------------------------
    runtime: Literal["local", "azure"] = Field("local", alias="RUNTIME")
    store: Literal["sqlite", "cosmos"] | None = Field(None, alias="STORE")
    bus: Literal["sqlite", "servicebus"] | None = Field(None, alias="BUS")
    blobs: Literal["folder", "azure"] | None = Field(None, alias="BLOBS")
    secrets: Literal["env", "keyvault"] | None = Field(None, alias="SECRETS")
    data_dir: Path = Field(Path(".local"), alias="DATA_DIR")

    # --- Azure endpoints (identity-based; keys only for emulators) --------------------
    cosmos_endpoint: str | None = Field(None, alias="COSMOS_ENDPOINT")
    cosmos_key: str | None = Field(None, alias="COSMOS_KEY")
    cosmos_database: str = Field("integrations", alias="COSMOS_DATABASE")
    cosmos_verify_tls: bool = Field(True, alias="COSMOS_VERIFY_TLS")
    servicebus_namespace: str | None = Field(
        None, alias="ServiceBusConnection__fullyQualifiedNamespace"
    )
    servicebus_connection_string: str | None = Field(None, alias="SERVICEBUS_CONNECTION_STRING")
    blob_account_url: str | None = Field(None, alias="BLOB_ACCOUNT_URL")
    blob_connection_string: str | None = Field(None, alias="BLOB_CONNECTION_STRING")
    key_vault_url: str | None = Field(None, alias="KEY_VAULT_URL")
    speech_endpoint: str | None = Field(None, alias="SPEECH_ENDPOINT")
    document_intelligence_endpoint: str | None = Field(None, alias="DOCUMENT_INTELLIGENCE_ENDPOINT")
    applicationinsights_connection_string: str | None = Field(
        None, alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )

    # --- auth ----------------------------------------------------------------------------
    auth_issuer: str | None = Field(None, alias="AUTH_ISSUER")
    auth_audience: str | None = Field(None, alias="AUTH_AUDIENCE")
    auth_jwks_url: str | None = Field(None, alias="AUTH_JWKS_URL")
    auth_tenant_claim: str = Field("tid", alias="AUTH_TENANT_CLAIM")
    local_jwt_signing_key: str | None = Field(None, alias="LOCAL_JWT_SIGNING_KEY")

    # --- messaging -----------------------------------------------------------------------
    message_inline_limit_bytes: int = Field(192 * 1024, gt=0, alias="MESSAGE_INLINE_LIMIT_BYTES")
    webhook_rate_per_second: float = Field(100.0, gt=0, alias="WEBHOOK_RATE_PER_SECOND")
    webhook_rate_burst: int = Field(200, ge=1, alias="WEBHOOK_RATE_BURST")
    webhook_receipt_process: bool = Field(True, alias="WEBHOOK_RECEIPT_PROCESS")

    # --- processing ----------------------------------------------------------------------
    validation_mode: Literal["strict", "lenient", "audit"] = Field(
        "strict", alias="VALIDATION_MODE"
    )

    # --- sync ----------------------------------------------------------------------------
    scheduler_backpressure_depth: int = Field(10_000, ge=1, alias="SCHEDULER_BACKPRESSURE_DEPTH")
    sync_cursor_overlap_seconds: int = Field(300, ge=0, alias="SYNC_CURSOR_OVERLAP_SECONDS")

    # --- local host ----------------------------------------------------------------------
    local_concurrency: int = Field(4, ge=1, alias="LOCAL_CONCURRENCY")
    local_shutdown_grace_seconds: float = Field(20.0, ge=0, alias="LOCAL_SHUTDOWN_GRACE_SECONDS")
    log_level: str = Field("INFO", alias="LOG_LEVEL")

    @model_validator(mode="after")
    def _default_ports(self) -> Settings:
        azure = self.runtime == "azure"
        self.store = self.store or ("cosmos" if azure else "sqlite")
        self.bus = self.bus or ("servicebus" if azure else "sqlite")
        self.blobs = self.blobs or ("azure" if azure else "folder")
        self.secrets = self.secrets or ("keyvault" if azure else "env")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
