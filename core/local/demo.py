"""`make run`'s demo tenant: generated Salesforce-shaped files, one `files` integration
over them (created through the same service as the tenant API), and its first sync."""

from __future__ import annotations

import logging

from core.integrations.service import IntegrationService
from core.models.integration import TenantIntegration
from core.runtime import Runtime
from samples.demo import DEMO_TENANT_ID, demo_integration_body
from samples.demo.generate import generate

log = logging.getLogger("core.local.demo")

DEMO_DATA = "demo-crm"


def load_demo(runtime: Runtime) -> TenantIntegration:
    """Idempotent: data, integration and first sync are made once per data dir."""
    data_dir = runtime.data_dir / DEMO_DATA
    if not (data_dir / "Opportunity.ndjson").exists():
        generate(data_dir)
        log.info("generated the demo CRM data", extra={"path": str(data_dir)})
    service = IntegrationService(
        runtime.store,
        runtime.clock,
        runtime.integration_cache,
        validation_mode=runtime.settings.validation_mode,
    )
    body = demo_integration_body(data_dir)
    integrations, _ = service.list_integrations(DEMO_TENANT_ID, limit=100)
    integration = next((i for i in integrations if i.name == body["name"]), None)
    if integration is None:
        integration = service.create(DEMO_TENANT_ID, body)
        log.info("created the demo integration", extra={"integrationId": integration.id})
    history, _ = runtime.executions.history(DEMO_TENANT_ID, integration.id, limit=1)
    if not history:
        execution = runtime.executions.request(DEMO_TENANT_ID, integration.id, mode="full")
        log.info(
            "requested the demo tenant's first sync",
            extra={"integrationId": integration.id, "syncTaskId": execution.id},
        )
    return integration
