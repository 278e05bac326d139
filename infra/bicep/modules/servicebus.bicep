// Service Bus namespace with every queue, topic and subscription of
// core/messaging/topology.py. The entity lists below are literal on purpose:
// tests/unit/test_bicep.py reads them and checks them against the topology, so a
// change on either side without the other fails the build.

@description('Namespace name (globally unique).')
param name string

param location string
param tags object

// Standard: topics and subscriptions need it; messages up to 256 KiB (the app
// sends anything larger by claim check).
var sku = 'Standard'

// Every queue: max delivery count 5, dead-lettering on expiry, duplicate detection
// on message id for 10 minutes, 1 minute peek-lock. TTL per the design notes:
// 24 h for CRM records and events, 48 h documents, 72 h meetings.
var queues = [
  {
    name: 'sync-tasks'
    properties: {
      lockDuration: 'PT1M'
      maxDeliveryCount: 5
      defaultMessageTimeToLive: 'P1D'
      deadLetteringOnMessageExpiration: true
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT10M'
      maxSizeInMegabytes: 1024
    }
  }
  {
    name: 'integration_data_raw'
    properties: {
      lockDuration: 'PT1M'
      maxDeliveryCount: 5
      defaultMessageTimeToLive: 'P1D'
      deadLetteringOnMessageExpiration: true
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT10M'
      maxSizeInMegabytes: 1024
    }
  }
  {
    name: 'integration_documents'
    properties: {
      lockDuration: 'PT1M'
      maxDeliveryCount: 5
      defaultMessageTimeToLive: 'P2D'
      deadLetteringOnMessageExpiration: true
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT10M'
      maxSizeInMegabytes: 1024
    }
  }
  {
    name: 'integration_communications'
    properties: {
      lockDuration: 'PT1M'
      maxDeliveryCount: 5
      defaultMessageTimeToLive: 'P1D'
      deadLetteringOnMessageExpiration: true
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT10M'
      maxSizeInMegabytes: 1024
    }
  }
  {
    name: 'integration_meetings'
    properties: {
      lockDuration: 'PT1M'
      maxDeliveryCount: 5
      defaultMessageTimeToLive: 'P3D'
      deadLetteringOnMessageExpiration: true
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT10M'
      maxSizeInMegabytes: 1024
    }
  }
  {
    name: 'integration_events'
    properties: {
      lockDuration: 'PT1M'
      maxDeliveryCount: 5
      defaultMessageTimeToLive: 'P1D'
      deadLetteringOnMessageExpiration: true
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT10M'
      maxSizeInMegabytes: 1024
    }
  }
  {
    name: 'shard_ml_aggregation'
    properties: {
      lockDuration: 'PT1M'
      maxDeliveryCount: 5
      defaultMessageTimeToLive: 'P1D'
      deadLetteringOnMessageExpiration: true
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT10M'
      maxSizeInMegabytes: 1024
    }
  }
]

// Duplicate detection lives on the topic; TTL, delivery count and lock on each
// subscription.
var topics = [
  {
    name: 'shard-events'
    properties: {
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT10M'
      maxSizeInMegabytes: 1024
    }
  }
  {
    name: 'integration-events'
    properties: {
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT10M'
      maxSizeInMegabytes: 1024
    }
  }
]

// sqlFilter is exactly SubscriptionSpec.sql_filter(): an AND of IN-lists over the
// application properties eventType and shardTypeName.
var subscriptions = [
  {
    topic: 'shard-events'
    name: 'entity-linking'
    sqlFilter: '''eventType IN ('shard.created', 'shard.updated') AND shardTypeName IN ('Document', 'Email', 'Message', 'Meeting')'''
    properties: {
      lockDuration: 'PT1M'
      maxDeliveryCount: 5
      defaultMessageTimeToLive: 'P1D'
      deadLetteringOnMessageExpiration: true
      deadLetteringOnFilterEvaluationExceptions: true
    }
  }
  {
    topic: 'shard-events'
    name: 'ml-aggregation'
    sqlFilter: '''eventType IN ('shard.created', 'shard.updated') AND shardTypeName IN ('Opportunity')'''
    properties: {
      lockDuration: 'PT1M'
      maxDeliveryCount: 5
      defaultMessageTimeToLive: 'P1D'
      deadLetteringOnMessageExpiration: true
      deadLetteringOnFilterEvaluationExceptions: true
    }
  }
  {
    topic: 'shard-events'
    name: 'vectorization'
    sqlFilter: '''eventType IN ('shard.created', 'shard.updated') AND shardTypeName IN ('Document', 'Email', 'Message', 'Meeting')'''
    properties: {
      lockDuration: 'PT1M'
      maxDeliveryCount: 5
      defaultMessageTimeToLive: 'P1D'
      deadLetteringOnMessageExpiration: true
      deadLetteringOnFilterEvaluationExceptions: true
    }
  }
  {
    topic: 'integration-events'
    name: 'sync-tracking'
    sqlFilter: '''eventType IN ('integration.data.mapped', 'integration.data.mapping.failed')'''
    properties: {
      lockDuration: 'PT1M'
      maxDeliveryCount: 5
      defaultMessageTimeToLive: 'P1D'
      deadLetteringOnMessageExpiration: true
      deadLetteringOnFilterEvaluationExceptions: true
    }
  }
]

var topicNames = [for topic in topics: topic.name]

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queueResources 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [
  for queue in queues: {
    parent: namespace
    name: queue.name
    properties: queue.properties
  }
]

resource topicResources 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = [
  for topic in topics: {
    parent: namespace
    name: topic.name
    properties: topic.properties
  }
]

resource subscriptionResources 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = [
  for subscription in subscriptions: {
    parent: topicResources[indexOf(topicNames, subscription.topic)]
    name: subscription.name
    properties: subscription.properties
  }
]

// Named '$Default' so it replaces the accept-all rule Service Bus creates with every
// subscription; a second rule would be OR-ed with it and the filter would let
// everything through.
resource subscriptionRules 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = [
  for (subscription, index) in subscriptions: {
    parent: subscriptionResources[index]
    name: '$Default'
    properties: {
      filterType: 'SqlFilter'
      sqlFilter: {
        sqlExpression: subscription.sqlFilter
      }
    }
  }
]

output name string = namespace.name
output id string = namespace.id
@description('Host name for ServiceBusConnection__fullyQualifiedNamespace, cut from the namespace endpoint so sovereign clouds work too.')
output fullyQualifiedNamespace string = replace(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
output queueNames array = [for queue in queues: queue.name]
output topicNames array = topicNames
