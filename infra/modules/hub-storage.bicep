// The Function App's own storage account (AzureWebJobsStorage): the Durable task hub (queues,
// tables, blobs), the host's keys and leases, the Elastic Premium plan's content share (Azure
// Files), and the container Event Grid dead-letters undeliverable upload events into.
// No pipeline data lives here (that is data-storage.bicep).

@description('Name of the storage account (3-24 lower-case letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Region of the account.')
param location string

@description('Tags for the account.')
param tags object

@description('Container that Event Grid writes undeliverable upload events into.')
param deadLetterContainer string

// Shared keys stay enabled on this account only: the Elastic Premium plan mounts its content
// share (Azure Files) with WEBSITE_CONTENTAZUREFILECONNECTIONSTRING, a connection string with
// the account key; Azure Files does not take an identity there (docs/deploy.md). The task
// hub itself is reached with the managed identity (AzureWebJobsStorage__accountName).
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:No virtual network in this template: the plan reaches its host storage over the public endpoint (private endpoints are an extension, docs/deploy.md).
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: without a virtual network the public endpoint is the only way in; every request still needs an identity or the key.
  // checkov:skip=CKV_AZURE_206:Locally redundant on purpose: the task hub, host keys and content share hold no pipeline data, and geo-redundancy would double their cost.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: true
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainer
  properties: {
    publicAccess: 'None'
  }
}

output id string = account.id
output name string = account.name
