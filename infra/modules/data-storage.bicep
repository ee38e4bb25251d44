// The pipeline's data account (PIPELINE_STORAGE_ACCOUNT): the source containers operators
// upload NetCDF/HDF5 files into, and the work area, store and catalog containers the pipeline
// writes. The pipeline never creates containers (docs/settings.md), so all of them are made
// here. Only identities reach it: shared keys are off.

@description('Name of the storage account (3-24 lower-case letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Region of the account (the Event Grid system topic is created in the same one).')
param location string

@description('Tags for the account.')
param tags object

@description('Containers operators upload source files into (PIPELINE_ALLOWED_CONTAINERS).')
param sourceContainers array

@description('Containers the pipeline writes: work area, stores, catalog.')
param pipelineContainers array

@description('Replication of the account: the source files are the only copy of the data.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_ZRS'

@description('Days deleted blobs and containers can be restored.')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 7

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Operators upload from outside Azure and there is no virtual network here: the public endpoint stays open, and shared keys are off, so every request needs an Entra identity with a data role.
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35 (public endpoint, identity-only access; anonymous blob access is off).
  // checkov:skip=CKV_AZURE_206:Zone-redundant by default (dataStorageSku); choose Standard_GRS or Standard_GZRS for a copy in the paired region at about twice the storage price.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    isHnsEnabled: false
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
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in union(sourceContainers, pipelineContainers): {
    parent: blobService
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
