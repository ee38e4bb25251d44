// Every role the Function App's identity holds, each on the narrowest scope that works
// (docs/deploy.md, "Role assignments", says why each one is needed).

@description('Principal (object) id of the Function App identity.')
param principalId string

@description('Name of the task hub storage account.')
param hubStorageName string

@description('Name of the data storage account.')
param dataStorageName string

@description('Source containers: read only.')
param sourceContainers array

@description('Work area, store and catalog containers: read and write.')
param pipelineContainers array

@description('Name of the Application Insights resource.')
param appInsightsName string

// Built-in role definition ids (the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// The Functions host and the Durable Task Azure Storage provider use all three services of
// the task hub account.
var hubRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource hubStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hubStorageName
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageName
}

resource dataBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: dataStorage
  name: 'default'
}

resource sources 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for container in sourceContainers: {
    parent: dataBlobs
    name: container
  }
]

resource pipelineOutputs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for container in pipelineContainers: {
    parent: dataBlobs
    name: container
  }
]

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource hubAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in hubRoles: {
    name: guid(hubStorage.id, principalId, role)
    scope: hubStorage
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

resource sourceAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, i) in sourceContainers: {
    name: guid(sources[i].id, principalId, roles.storageBlobDataReader)
    scope: sources[i]
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    }
  }
]

resource outputAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, i) in pipelineContainers: {
    name: guid(pipelineOutputs[i].id, principalId, roles.storageBlobDataContributor)
    scope: pipelineOutputs[i]
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    }
  }
]

resource telemetryAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}
