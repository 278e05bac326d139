// One storage account for the Functions host (AzureWebJobsStorage: leases, timers,
// Durable Functions queues and tables), the deployment package and the app's
// blobs. Shared keys are off: every client uses the app's managed identity.

@description('Account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param name string

param location string
param tags object

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
])
param skuName string

@description('Blob container the Flex Consumption app is deployed from.')
param deploymentContainerName string

// The containers the app writes to, with how long a blob is kept after its last
// change (design notes: documents 365 d, recordings 90 d, attachments 180 d).
// Claim-check bodies outlive every message TTL (72 h at most) and stay 30 days, as
// long as a quarantined record, so a dead-lettered message can still be replayed.
var dataContainers = [
  {
    name: 'integration-documents'
    deleteAfterDays: 365
  }
  {
    name: 'integration-recordings'
    deleteAfterDays: 90
  }
  {
    name: 'integration-attachments'
    deleteAfterDays: 180
  }
  {
    name: 'claim-checks'
    deleteAfterDays: 30
  }
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource dataContainerResources 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in dataContainers: {
    parent: blobService
    name: container.name
    properties: {
      publicAccess: 'None'
    }
  }
]

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        for container in dataContainers: {
          name: 'expire${replace(container.name, '-', '')}'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${container.name}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: container.deleteAfterDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output dataContainerNames array = [for container in dataContainers: container.name]
