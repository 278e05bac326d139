// One Azure AI services account (AI Speech or Document Intelligence). Keys are
// disabled; the custom subdomain is what makes Entra ID tokens work against it.

@description('Account name, also its custom subdomain (globally unique).')
param name string

param location string
param tags object

@allowed([
  'SpeechServices'
  'FormRecognizer'
])
param kind string

param skuName string = 'S0'

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: kind
  sku: {
    name: skuName
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output name string = account.name
output id string = account.id
output endpoint string = account.properties.endpoint
