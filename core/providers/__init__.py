"""Provider adapters: what the sync worker pulls CRM records through (`base`), the local
`files` provider, the Salesforce, HubSpot and Dynamics 365 adapters with their default
mappings, the HTTP machinery they share (`http`, `oauth`, `ratelimit`, `connection`), and
the registry that picks them by provider name."""
