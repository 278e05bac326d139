// Integration data flow on Azure: a Python Functions app on Flex Consumption and the
// services it uses, every one reached with the app's managed identity (no keys or
// connection strings anywhere). Deploy into an existing resource group:
//
//   az deployment group create --resource-group <rg> \
//     --template-file infra/bicep/main.bicep \
//     --parameters @infra/bicep/parameters/dev.parameters.json
targetScope = 'resourceGroup'

@description('Environment name (dev, prod, ...): part of every resource name and tag.')
@minLength(2)
@maxLength(12)
param environmentName string

@description('Region of every resource; must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@description('Upper bound on Function App instances.')
@minValue(1)
@maxValue(1000)
param functionMaximumInstanceCount int = 40

@description('Memory per Function App instance.')
@allowed([
  512
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('Instances kept warm for HTTP triggers (0 = scale to zero).')
@minValue(0)
@maxValue(10)
param alwaysReadyHttpInstances int = 0

@description('Storage redundancy: LRS for dev, ZRS where the region has zones.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Cosmos DB capacity: Serverless (pay per request) or Provisioned (autoscale).')
@allowed([
  'Serverless'
  'Provisioned'
])
param cosmosCapacityMode string = 'Serverless'

@description('Autoscale ceiling in RU/s for the database when cosmosCapacityMode is Provisioned.')
@minValue(1000)
param cosmosAutoscaleMaxThroughput int = 1000

@description('Cosmos DB database name (COSMOS_DATABASE).')
param cosmosDatabaseName string = 'integrations'

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Issuer accepted on /api/v1 bearer tokens; this tenant\'s Entra ID v2 issuer by default.')
param authIssuer string = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'

@description('Audience of /api/v1 bearer tokens: the Application ID URI of the API\'s app registration.')
param authAudience string

@description('JWKS the token signatures are checked against; this tenant\'s Entra ID keys by default.')
param authJwksUrl string = '${environment().authentication.loginEndpoint}${tenant().tenantId}/discovery/v2.0/keys'

@description('Token claim that carries the platform tenant id.')
param authTenantClaim string = 'tid'

@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

@description('Messages larger than this go by claim check (Service Bus Standard allows 256 KiB including headers).')
@minValue(1024)
@maxValue(245760)
@description('Shard validation: strict quarantines a record with any bad field; lenient drops bad fields with a warning; audit keeps everything.')
@allowed([
  'strict'
  'lenient'
  'audit'
])
param validationMode string = 'lenient'

@description('The sync scheduler enqueues nothing while integration_data_raw holds this many active messages.')
@minValue(1)
param schedulerBackpressureDepth int = 10000

@description('Incremental syncs read from the stored timestamp cursor minus this many seconds (late commits, clock skew).')
@minValue(0)
param syncCursorOverlapSeconds int = 300

param messageInlineLimitBytes int = 196608

@description('Webhook deliveries per second per integration (token bucket refill); above it the receiver answers 429.')
@minValue(1)
param webhookRatePerSecond int = 100

@description('Webhook deliveries an integration may send at once before the rate applies.')
@minValue(1)
param webhookRateBurst int = 200

@description('Optional: object id of the person or group that manages provider credentials in the vault.')
param secretOperatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param secretOperatorPrincipalType string = 'Group'

var environmentSlug = toLower(environmentName)
var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentSlug))
var tags = {
  'azd-env-name': environmentSlug
  application: 'integration-data-flow'
}
var functionAppName = 'func-idf-${environmentSlug}-${resourceToken}'
var deploymentContainerName = 'app-package-${functionAppName}'

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-idf-${environmentSlug}-${resourceToken}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-idf-${environmentSlug}-${resourceToken}'
    applicationInsightsName: 'appi-idf-${environmentSlug}-${resourceToken}'
    location: location
    tags: tags
    retentionDays: logRetentionDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'stidf${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    name: 'sb-idf-${environmentSlug}-${resourceToken}'
    location: location
    tags: tags
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  params: {
    accountName: 'cosmos-idf-${environmentSlug}-${resourceToken}'
    location: location
    tags: tags
    capacityMode: cosmosCapacityMode
    autoscaleMaxThroughput: cosmosAutoscaleMaxThroughput
    databaseName: cosmosDatabaseName
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: 'kv-idf-${resourceToken}'
    location: location
    tags: tags
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module speech 'modules/cognitive.bicep' = {
  name: 'speech'
  params: {
    name: 'spch-idf-${environmentSlug}-${resourceToken}'
    location: location
    tags: tags
    kind: 'SpeechServices'
  }
}

module documentIntelligence 'modules/cognitive.bicep' = {
  name: 'document-intelligence'
  params: {
    name: 'di-idf-${environmentSlug}-${resourceToken}'
    location: location
    tags: tags
    kind: 'FormRecognizer'
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    principalId: appIdentity.properties.principalId
    storageAccountName: storage.outputs.name
    serviceBusNamespaceName: serviceBus.outputs.name
    cosmosAccountName: cosmos.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    speechAccountName: speech.outputs.name
    documentIntelligenceAccountName: documentIntelligence.outputs.name
    secretOperatorPrincipalId: secretOperatorPrincipalId
    secretOperatorPrincipalType: secretOperatorPrincipalType
  }
}

// Every setting the app reads in Azure. The `__` settings are identity-based
// connections for the Functions host and its bindings; AZURE_CLIENT_ID points
// DefaultAzureCredential at the same user-assigned identity.
var functionAppSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: appIdentity.properties.clientId
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: appIdentity.properties.clientId
  AZURE_CLIENT_ID: appIdentity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD'
  RUNTIME: 'azure'
  COSMOS_ENDPOINT: cosmos.outputs.endpoint
  COSMOS_DATABASE: cosmos.outputs.databaseName
  BLOB_ACCOUNT_URL: storage.outputs.blobEndpoint
  KEY_VAULT_URL: keyVault.outputs.uri
  SPEECH_ENDPOINT: speech.outputs.endpoint
  DOCUMENT_INTELLIGENCE_ENDPOINT: documentIntelligence.outputs.endpoint
  AUTH_ISSUER: authIssuer
  AUTH_AUDIENCE: authAudience
  AUTH_JWKS_URL: authJwksUrl
  AUTH_TENANT_CLAIM: authTenantClaim
  LOG_LEVEL: logLevel
  MESSAGE_INLINE_LIMIT_BYTES: string(messageInlineLimitBytes)
  WEBHOOK_RATE_PER_SECOND: string(webhookRatePerSecond)
  WEBHOOK_RATE_BURST: string(webhookRateBurst)
  VALIDATION_MODE: validationMode
  SCHEDULER_BACKPRESSURE_DEPTH: string(schedulerBackpressureDepth)
  SYNC_CURSOR_OVERLAP_SECONDS: string(syncCursorOverlapSeconds)
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: functionAppName
    planName: 'plan-idf-${environmentSlug}-${resourceToken}'
    location: location
    tags: tags
    identityId: appIdentity.id
    deploymentContainerUrl: '${storage.outputs.blobEndpoint}${deploymentContainerName}'
    appSettings: functionAppSettings
    maximumInstanceCount: functionMaximumInstanceCount
    instanceMemoryMB: functionInstanceMemoryMB
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
  }
  // The host starts as soon as the site exists: its identity must already hold its
  // roles, or the first start fails on storage and Service Bus.
  dependsOn: [
    rbac
  ]
}

output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName
output APP_IDENTITY_CLIENT_ID string = appIdentity.properties.clientId
output APP_IDENTITY_PRINCIPAL_ID string = appIdentity.properties.principalId
output SERVICE_BUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output COSMOS_DATABASE string = cosmos.outputs.databaseName
output BLOB_ACCOUNT_URL string = storage.outputs.blobEndpoint
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output KEY_VAULT_URL string = keyVault.outputs.uri
output KEY_VAULT_NAME string = keyVault.outputs.name
output SPEECH_ENDPOINT string = speech.outputs.endpoint
output DOCUMENT_INTELLIGENCE_ENDPOINT string = documentIntelligence.outputs.endpoint
output LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.logAnalyticsWorkspaceId
