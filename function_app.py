"""The Functions app: registers every blueprint in functions/. Nothing else lives here."""

import azure.durable_functions as df
import azure.functions as func

from functions import api_external_fields, api_integrations, api_shards, crm, ops, webhooks

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

for blueprint in (
    ops.bp,
    crm.bp,
    api_integrations.bp,
    api_external_fields.bp,
    api_shards.bp,
    webhooks.bp,
):
    app.register_functions(blueprint)
