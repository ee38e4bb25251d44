// The dataset registry (PIPELINE_DATASETS, docs/events.md) written by the deployment itself, so
// that an upload after `azd up` reaches a registered dataset or is ignored with a reason
// (unknown_dataset), instead of failing until someone uploads the document by hand. An Azure
// CLI deployment script signed in as the app's identity writes it when it does not exist yet
// and never replaces it (infra/registry/write-registry.sh): after the first deployment the
// blob is the registry, edited where it is.

@description('Name of the deployment script resource.')
param name string

@description('Region of the deployment script (its container instance runs there).')
param location string

@description('Tags for the deployment script.')
param tags object

@description('Resource id of the user-assigned identity the script signs in as (Blob Data Contributor on the container).')
param identityId string

@description('Name of the data storage account that holds the registry.')
param dataStorageName string

@description('Container of the registry (the work container).')
param container string

@description('Blob name of the registry inside the container.')
param blobName string

@description('The registry document: {"datasets": {...}} (docs/events.md).')
param document object

resource write 'Microsoft.Resources/deploymentScripts@2023-08-01' = {
  name: name
  location: location
  tags: tags
  kind: 'AzureCLI'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    azCliVersion: '2.61.0'
    timeout: 'PT20M'
    retentionInterval: 'PT1H'
    cleanupPreference: 'OnSuccess'
    // Run again at every deployment: it writes nothing when the registry exists.
    forceUpdateTag: uniqueString(deployment().name)
    environmentVariables: [
      {
        name: 'ACCOUNT'
        value: dataStorageName
      }
      {
        name: 'CONTAINER'
        value: container
      }
      {
        name: 'BLOB'
        value: blobName
      }
      {
        name: 'REGISTRY'
        value: string(document)
      }
    ]
    scriptContent: loadTextContent('../registry/write-registry.sh')
  }
}

output location string = 'az://${container}/${blobName}'
output result string = write.properties.outputs.result
