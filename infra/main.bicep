// virtual-zarr-pipeline in Azure: what `azd up` creates (docs/deploy.md describes every
// parameter, resource and role). Subscription scope: the resource group is created here.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: names the resource group and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of every resource (the plan, the storage accounts and the Event Grid topic must share it).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@minLength(2)
@maxLength(8)
@description('Lower-case letters and digits that start every resource name.')
param namePrefix string = 'vzarr'

@description('Resource group to create or reuse; empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Elastic Premium size (PIPELINE_PLAN follows it): EP1 3.5 GB, EP2 7 GB, EP3 14 GB per instance.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@description('Instances kept running at all times (each is billed around the clock).')
@minValue(1)
@maxValue(20)
param minimumInstances int = 1

@description('Instances the plan may scale out to.')
@minValue(1)
@maxValue(100)
param maximumInstances int = 10

@description('Containers operators upload source files into (PIPELINE_ALLOWED_CONTAINERS); created here.')
@minLength(1)
param sourceContainers array = [
  'netcdf'
]

@description('Where registered datasets live, as {container, prefix} objects: Event Grid delivers uploads below these prefixes only. Empty: everything in the source containers.')
@maxLength(20)
param datasetPrefixes array = []

@description('Blob name suffixes Event Grid delivers: the suffixes of the default file patterns (shared/model/request.py DEFAULT_PATTERNS).')
@minLength(1)
param sourceSuffixes array = [
  '.nc'
  '.nc4'
  '.h5'
  '.hdf5'
]

@description('Container of the work area (manifests, reports, references, run reports).')
param workContainer string = 'pipeline-work'

@description('Container of the combined stores.')
param storeContainer string = 'stores'

@description('Container of the static STAC catalog.')
param catalogContainer string = 'catalog'

@description('PIPELINE_DATASETS: the dataset registry (inline JSON or a blob location). Empty: az://<workContainer>/registry/datasets.json, which the deployment writes from `datasets` when it does not exist.')
param datasetRegistry string = ''

@description('The datasets the deployment registers when it writes the registry: {"<dataset id>": {"source": "az://<source container>/<prefix>", ...}} (docs/events.md). Written only when the registry blob does not exist yet: after that the blob is the registry (docs/deploy.md).')
param datasets object = {}

@description('Create the Event Grid subscription to blob_created. The function must be deployed first: the postdeploy hook sets it and provisions again.')
param eventSubscriptionEnabled bool = false

@description('Replication of the data account (the source files are the only copy of the data).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param dataStorageSku string = 'Standard_ZRS'

@description('Daily ingestion cap of the Log Analytics workspace in GB; -1: none.')
param logDailyCapGb int = 1

@description('Only the identity may send telemetry (breaks PIPELINE_LOG_EXPORTER=opencensus).')
param disableAppInsightsLocalAuth bool = false

@description('Create the staging slot with its own task hub (docs/runbooks/deploy.md); it shares the plan\'s instances.')
param stagingSlot bool = false

@description('PIPELINE_LOG_EXPORTER: functions (the worker forwards records to the host), opentelemetry (Azure Monitor OpenTelemetry, as Microsoft documents it for Python), opencensus (retired upstream). docs/telemetry.md.')
@allowed([
  'functions'
  'opencensus'
  'opentelemetry'
])
param logExporter string = 'functions'

@description('E-mail address for every alert; empty: alerts are created without notification.')
param alertEmail string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'virtual-zarr-pipeline'
}
var serviceName = 'pipeline'
var deadLetterContainer = 'eventgrid-deadletter'
var pipelineContainers = [
  workContainer
  storeContainer
  catalogContainer
]
var registryBlob = 'registry/datasets.json'
var registry = empty(datasetRegistry) ? 'az://${workContainer}/${registryBlob}' : datasetRegistry
// Event Grid subjects of blob uploads: /blobServices/default/containers/<container>/blobs/<name>.
var containerSubjects = [for container in sourceContainers: '/blobServices/default/containers/${container}/blobs/']
var datasetSubjects = [for dataset in datasetPrefixes: '/blobServices/default/containers/${dataset.container}/blobs/${dataset.prefix}/']
var subjectPrefixes = empty(datasetPrefixes) ? containerSubjects : datasetSubjects

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${namePrefix}-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    workspaceName: 'log-${namePrefix}-${resourceToken}'
    appInsightsName: 'appi-${namePrefix}-${resourceToken}'
    location: location
    tags: tags
    dailyCapGb: logDailyCapGb
    disableLocalAuth: disableAppInsightsLocalAuth
  }
}

module hubStorage 'modules/hub-storage.bicep' = {
  name: 'hub-storage'
  scope: rg
  params: {
    name: take('${namePrefix}hub${resourceToken}', 24)
    location: location
    tags: tags
    deadLetterContainer: deadLetterContainer
  }
}

module dataStorage 'modules/data-storage.bicep' = {
  name: 'data-storage'
  scope: rg
  params: {
    name: take('${namePrefix}data${resourceToken}', 24)
    location: location
    tags: tags
    sourceContainers: sourceContainers
    pipelineContainers: pipelineContainers
    skuName: dataStorageSku
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    hubStorageName: hubStorage.outputs.name
    dataStorageName: dataStorage.outputs.name
    sourceContainers: sourceContainers
    pipelineContainers: pipelineContainers
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  dependsOn: [
    roles
  ]
  params: {
    name: 'func-${namePrefix}-${resourceToken}'
    planName: 'plan-${namePrefix}-${resourceToken}'
    location: location
    tags: tags
    serviceName: serviceName
    planSku: planSku
    minimumInstances: minimumInstances
    maximumInstances: maximumInstances
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hubStorageName: hubStorage.outputs.name
    dataStorageName: dataStorage.outputs.name
    appInsightsConnectionString: monitoring.outputs.connectionString
    sourceContainers: sourceContainers
    workContainer: workContainer
    storeContainer: storeContainer
    catalogContainer: catalogContainer
    datasetRegistry: registry
    logExporter: logExporter
    stagingSlot: stagingSlot
  }
}

// The registry PIPELINE_DATASETS names, written when it does not exist (a custom
// datasetRegistry is the operator's to write).
module registryDocument 'modules/registry.bicep' = if (empty(datasetRegistry)) {
  name: 'dataset-registry'
  scope: rg
  dependsOn: [
    roles
  ]
  params: {
    name: 'ds-${namePrefix}-registry-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    dataStorageName: dataStorage.outputs.name
    container: workContainer
    blobName: registryBlob
    document: {
      datasets: datasets
    }
  }
}

module events 'modules/events.bicep' = {
  name: 'events'
  scope: rg
  params: {
    topicName: 'evgt-${namePrefix}-${resourceToken}'
    location: location
    tags: tags
    dataStorageName: dataStorage.outputs.name
    hubStorageName: hubStorage.outputs.name
    deadLetterContainer: deadLetterContainer
    functionAppId: functionApp.outputs.id
    createSubscription: eventSubscriptionEnabled
    subjectPrefixes: subjectPrefixes
    suffixes: sourceSuffixes
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: namePrefix
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    functionHostName: functionApp.outputs.hostName
    alertEmail: alertEmail
  }
}

// The pipeline health workbook (docs/operations.md, "The workbook"), on the same queries.
module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    namePrefix: namePrefix
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
  }
}

// azd stores these in the environment (.azure/<env>/.env); the hook and docs/deploy.md use them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_PIPELINE_URL string = 'https://${functionApp.outputs.hostName}'
output PIPELINE_STORAGE_ACCOUNT string = dataStorage.outputs.name
output PIPELINE_DATASETS string = registry
output TASK_HUB_STORAGE_ACCOUNT string = hubStorage.outputs.name
output EVENT_GRID_TOPIC string = events.outputs.topicName
output EVENT_SUBSCRIPTION_CREATED bool = events.outputs.subscriptionCreated
output STAGING_URL string = stagingSlot ? 'https://${functionApp.outputs.stagingHostName}' : ''
