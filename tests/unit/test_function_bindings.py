"""The binding metadata of every registered function, spelled out: a renamed queue, route
or connection setting fails here before it fails in Azure."""

from core.local.invoker import read_functions
from core.messaging.topology import SERVICE_BUS_CONNECTION, TOPOLOGY
from function_app import app

EXPECTED = {
    "sync_worker": {
        "type": "serviceBusTrigger",
        "queueName": "sync-tasks",
        "connection": "ServiceBusConnection",
    },
    "crm_mapping": {
        "type": "serviceBusTrigger",
        "queueName": "integration_data_raw",
        "connection": "ServiceBusConnection",
    },
    "sync_tracking": {
        "type": "serviceBusTrigger",
        "topicName": "integration-events",
        "subscriptionName": "sync-tracking",
        "connection": "ServiceBusConnection",
        "cardinality": "many",
    },
    "sync_timeouts": {"type": "timerTrigger", "schedule": "0 * * * * *", "runOnStartup": False},
    "sync_scheduler": {"type": "timerTrigger", "schedule": "0 * * * * *", "runOnStartup": False},
    "health": {
        "type": "httpTrigger",
        "route": "health",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "ready": {
        "type": "httpTrigger",
        "route": "ready",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "prometheus_metrics": {
        "type": "httpTrigger",
        "route": "metrics",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "whoami": {
        "type": "httpTrigger",
        "route": "v1/whoami",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "external_fields_get": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/external-fields/{entityType}",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "integrations_create": {
        "type": "httpTrigger",
        "route": "v1/integrations",
        "methods": ["POST"],
        "authLevel": "anonymous",
    },
    "integrations_list": {
        "type": "httpTrigger",
        "route": "v1/integrations",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "transform_functions_list": {
        "type": "httpTrigger",
        "route": "v1/integrations/transform-functions",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "integration_get": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "sync_config_get": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/sync-config",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "sync_config_put": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/sync-config",
        "methods": ["PUT"],
        "authLevel": "anonymous",
    },
    "field_mappings_get": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/field-mappings/{entityType}",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "field_mappings_put": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/field-mappings/{entityType}",
        "methods": ["PUT"],
        "authLevel": "anonymous",
    },
    "field_mappings_test": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/field-mappings/{entityType}/test",
        "methods": ["POST"],
        "authLevel": "anonymous",
    },
    "integration_sync": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/sync",
        "methods": ["POST"],
        "authLevel": "anonymous",
    },
    "integration_sync_history": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/sync-history/{executionId?}",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "webhook_receive": {
        "type": "httpTrigger",
        "route": "webhooks/{provider}/{integrationId}",
        "methods": ["POST"],
        "authLevel": "anonymous",
    },
    "webhooks_create": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/webhooks",
        "methods": ["POST"],
        "authLevel": "anonymous",
    },
    "webhooks_list": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/webhooks",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "webhook_delete": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/webhooks/{registrationId}",
        "methods": ["DELETE"],
        "authLevel": "anonymous",
    },
    "webhook_activate": {
        "type": "httpTrigger",
        "route": "v1/integrations/{id}/webhooks/{registrationId}/activate",
        "methods": ["POST"],
        "authLevel": "anonymous",
    },
    "shards_list": {
        "type": "httpTrigger",
        "route": "v1/shards",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
    "shard_get": {
        "type": "httpTrigger",
        "route": "v1/shards/{id}",
        "methods": ["GET"],
        "authLevel": "anonymous",
    },
}


def _bindings():
    return {spec.name: spec.trigger for spec in read_functions(app)}


def test_every_function_and_its_trigger_binding():
    actual = _bindings()
    assert sorted(actual) == sorted(EXPECTED)
    for name, expected in EXPECTED.items():
        trigger = actual[name]
        for key, value in expected.items():
            assert trigger.get(key) == value, f"{name}.{key}: {trigger.get(key)!r} != {value!r}"


def test_service_bus_triggers_use_topology_entities_and_the_shared_connection():
    receivable = set(TOPOLOGY.receivable_entities())
    for name, trigger in _bindings().items():
        if trigger["type"] != "serviceBusTrigger":
            continue
        assert trigger["connection"] == SERVICE_BUS_CONNECTION, name
        entity = (
            trigger.get("queueName")
            or f"{trigger['topicName']}/subscriptions/{trigger['subscriptionName']}"
        )
        assert entity in receivable, f"{name} listens on unknown entity {entity}"
