"""Provider adapters: what the sync worker pulls CRM records through (`base`), the local
`files` provider, the Salesforce default mappings, and the registry that picks them by
provider name."""
