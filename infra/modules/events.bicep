// Uploads in: the Event Grid system topic of the data account, and its subscription that
// delivers Microsoft.Storage.BlobCreated to the blob_created function (api/events.py).
//
// The subscription's endpoint is the function itself, which Event Grid checks exists when the
// subscription is created; azd provisions before it deploys the code, so the first `azd up`
// creates the topic only, and the postdeploy hook (infra/hooks/postdeploy.sh) provisions again
// with createSubscription=true once blob_created exists.

@description('Name of the system topic.')
param topicName string

@description('Region of the topic: the data account\'s.')
param location string

@description('Tags for the topic.')
param tags object

@description('Name of the data storage account whose events are delivered.')
param dataStorageName string

@description('Name of the task hub storage account, which holds the dead-letter container.')
param hubStorageName string

@description('Container that undeliverable events are written into.')
param deadLetterContainer string

@description('Resource id of the Function App.')
param functionAppId string

@description('Create the subscription (the blob_created function must be deployed).')
param createSubscription bool

@description('Event Grid subject prefixes to deliver: /blobServices/default/containers/<container>/blobs/<prefix>.')
@minLength(1)
param subjectPrefixes array

@description('Blob name suffixes to deliver (Event Grid compares them case-insensitively).')
@minLength(1)
param suffixes array

@description('Delivery attempts before an event is dead-lettered (Event Grid default 30).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes an event is retried before it is dead-lettered (Event Grid default 1440).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

// Built-in role: Storage Blob Data Contributor, for the topic to write dead letters.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageName
}

resource hubStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hubStorageName
}

resource hubBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: hubStorage
  name: 'default'
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: hubBlobs
  name: deadLetterContainer
}

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: topicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: dataStorage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource deadLetterAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetters.id, topic.id, storageBlobDataContributor)
  scope: deadLetters
  properties: {
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
  }
}

// The filter passes every upload api/events.py could route and drops what it would ignore
// for its type, place or suffix (tests/test_infra.py replays events through both). Event Grid
// allows 25 values across all advanced filters: prefixes + suffixes + 1.
resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = if (createSubscription) {
  parent: topic
  name: 'blob-created'
  dependsOn: [
    deadLetterAccess
  ]
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/blob_created'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      advancedFilters: [
        {
          operatorType: 'StringBeginsWith'
          key: 'subject'
          values: subjectPrefixes
        }
        {
          operatorType: 'StringEndsWith'
          key: 'subject'
          values: suffixes
        }
        {
          operatorType: 'StringNotIn'
          key: 'data.api'
          values: [
            'CreateFile'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: hubStorage.id
          blobContainerName: deadLetterContainer
        }
      }
    }
  }
}

output topicName string = topic.name
output subscriptionCreated bool = createSubscription
