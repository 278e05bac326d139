"""One module per provider scheme; `core.webhooks.verifiers` gathers them into a registry."""
