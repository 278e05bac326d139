// Cosmos DB (NoSQL) account, database and every container of core/containers.py.
// Keys are disabled: the app reaches the data plane with its managed identity and
// the Built-in Data Contributor role (rbac.bicep). Data-plane RBAC cannot create
// containers, so they are all declared here and the app never creates them.

param accountName string
param location string
param tags object

@description('Serverless bills per request (dev, spiky load); Provisioned uses database-level autoscale throughput.')
@allowed([
  'Serverless'
  'Provisioned'
])
param capacityMode string

@description('Autoscale ceiling in RU/s shared by all containers; used only when capacityMode is Provisioned.')
@minValue(1000)
param autoscaleMaxThroughput int

param databaseName string

// Literal on purpose: tests/unit/test_bicep.py checks these against core/containers.py.
// defaultTtl is in seconds; -1 turns TTL on without a default expiry, so a
// document's own `ttl` still applies (the store port lets a document override its
// container's TTL) while nothing expires by default.
var containers = [
  {
    name: 'shards'
    partitionKeyPath: '/tenantId'
    defaultTtl: -1
  }
  {
    name: 'shard_types'
    partitionKeyPath: '/name'
    defaultTtl: -1
  }
  {
    name: 'integrations'
    partitionKeyPath: '/tenantId'
    defaultTtl: -1
  }
  {
    name: 'sync_executions'
    partitionKeyPath: '/tenantId'
    defaultTtl: 7776000 // 90 days
  }
  {
    name: 'sync_state'
    partitionKeyPath: '/tenantId'
    defaultTtl: -1
  }
  {
    name: 'suggested_links'
    partitionKeyPath: '/tenantId'
    defaultTtl: 2592000 // 30 days
  }
  {
    name: 'idempotency'
    partitionKeyPath: '/key'
    defaultTtl: 86400 // 24 hours
  }
  {
    name: 'webhook_registrations'
    partitionKeyPath: '/tenantId'
    defaultTtl: -1
  }
  {
    name: 'quarantine'
    partitionKeyPath: '/tenantId'
    defaultTtl: 2592000 // 30 days
  }
]

// Per container: consistent indexing of every path but raw payloads and the etag, plus
// the composite indexes the store's ORDER BY paging needs. Generated from the code by
// `python -m core.adapters.azure.cosmos_store`; tests/unit/test_bicep.py keeps them equal.
var indexingPolicies = loadJsonContent('cosmos-indexing.json')

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: accountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    capabilities: capacityMode == 'Serverless' ? [{ name: 'EnableServerless' }] : []
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
    options: capacityMode == 'Provisioned' ? { autoscaleSettings: { maxThroughput: autoscaleMaxThroughput } } : {}
  }
}

resource containerResources 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [
  for container in containers: {
    parent: database
    name: container.name
    properties: {
      resource: {
        id: container.name
        partitionKey: {
          paths: [
            container.partitionKeyPath
          ]
          kind: 'Hash'
          version: 2
        }
        defaultTtl: container.defaultTtl
        indexingPolicy: indexingPolicies[container.name]
      }
    }
  }
]

output name string = account.name
output id string = account.id
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
output containerNames array = [for container in containers: container.name]
