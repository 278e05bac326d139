"""Sample tenants and the provider data they sync from (for the local runtime and demos)."""
