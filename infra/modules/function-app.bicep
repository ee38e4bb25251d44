// The Linux Elastic Premium plan and the Function App (Python 3.12) with every app setting
// docs/settings.md requires in Azure and the two docs/host-settings.md says host.json relies
// on. tests/test_infra.py reads appSettings below and checks them against both documents.

@description('Name of the Function App (also its host name: <name>.azurewebsites.net).')
param name string

@description('Name of the Elastic Premium plan.')
param planName string

@description('Region of the plan and the app.')
param location string

@description('Tags for the plan and the app (the app also gets azd-service-name).')
param tags object

@description('Service name in azure.yaml; azd deploys the code to the resource tagged with it.')
param serviceName string

@description('Elastic Premium size: EP1 1 core 3.5 GB, EP2 2 cores 7 GB, EP3 4 cores 14 GB per instance.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string

@description('Instances the plan keeps running at all times (billed whether busy or not).')
@minValue(1)
@maxValue(20)
param minimumInstances int

@description('Instances the plan may scale out to.')
@minValue(1)
@maxValue(100)
param maximumInstances int

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (DefaultAzureCredential and the host read it).')
param identityClientId string

@description('Name of the task hub storage account (AzureWebJobsStorage).')
param hubStorageName string

@description('Name of the data storage account (PIPELINE_STORAGE_ACCOUNT).')
param dataStorageName string

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Containers a request or a registered dataset may name as its source.')
param sourceContainers array

@description('Container of the work area (manifests, reports, references, run reports).')
param workContainer string

@description('Container of the combined stores.')
param storeContainer string

@description('Container of the static STAC catalog.')
param catalogContainer string

@description('PIPELINE_DATASETS: the dataset registry for event-driven ingestion (docs/events.md).')
param datasetRegistry string

@description('Create the staging slot (docs/runbooks/deploy.md): the same app with its own task hub, content share and pipeline folders; no Event Grid subscription reaches it.')
param stagingSlot bool = false

@description('PIPELINE_LOG_EXPORTER: how the app\'s records reach Application Insights (docs/telemetry.md).')
@allowed([
  'functions'
  'opencensus'
  'opentelemetry'
])
param logExporter string = 'functions'

resource hubStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hubStorageName
}

// Azure Files takes no identity: the Elastic Premium content share needs the account key
// (docs/deploy.md, "Storage and keys"). It is the only key in the app's settings.
var contentShareConnection = 'DefaultEndpointsProtocol=https;AccountName=${hubStorage.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${hubStorage.listKeys().keys[0].value}'

var appSettings = [
  // The Functions runtime and the Python worker.
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'python'
  }
  // docs/host-settings.md: host.json's maxConcurrentActivityFunctions (4) and
  // maxConcurrentOrchestratorFunctions (4) assume 4 processes x 2 threads. Change them together.
  {
    name: 'FUNCTIONS_WORKER_PROCESS_COUNT'
    value: '4'
  }
  {
    name: 'PYTHON_THREADPOOL_THREAD_COUNT'
    value: '2'
  }
  // The task hub and the host's own storage, reached with the user-assigned identity.
  {
    name: 'AzureWebJobsStorage__accountName'
    value: hubStorageName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  // The Elastic Premium content share (Azure Files: key only).
  {
    name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'
    value: contentShareConnection
  }
  {
    name: 'WEBSITE_CONTENTSHARE'
    value: toLower(name)
  }
  // azd deploys a zip of the sources; the platform installs requirements.txt (remote build).
  {
    name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'
    value: 'true'
  }
  {
    name: 'ENABLE_ORYX_BUILD'
    value: 'true'
  }
  // Telemetry: the host ingests with the identity (Monitoring Metrics Publisher).
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  {
    name: 'PIPELINE_LOG_EXPORTER'
    value: logExporter
  }
  // DefaultAzureCredential (the data account, Icechunk, adlfs) picks this identity.
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  // The pipeline (docs/settings.md): the data account by identity, no key anywhere.
  {
    name: 'PIPELINE_STORAGE_ACCOUNT'
    value: dataStorageName
  }
  {
    name: 'PIPELINE_WORK_AREA'
    value: 'az://${workContainer}'
  }
  {
    name: 'PIPELINE_STORE_ROOT'
    value: 'az://${storeContainer}'
  }
  {
    name: 'PIPELINE_CATALOG'
    value: 'az://${catalogContainer}'
  }
  {
    name: 'PIPELINE_ALLOWED_CONTAINERS'
    value: join(sourceContainers, ',')
  }
  {
    name: 'PIPELINE_ALLOW_LOCAL_PATHS'
    value: 'false'
  }
  {
    name: 'PIPELINE_PLAN'
    value: planSku
  }
  {
    name: 'PIPELINE_DATASETS'
    value: datasetRegistry
  }
]

// PIPELINE_LOG_EXPORTER=opentelemetry, as Microsoft documents OpenTelemetry for Python
// Functions: the host exports in OpenTelemetry mode (host.json telemetryMode, set here for this
// option only) and the Python worker configures the Azure Monitor distro once per process,
// signing in with the identity APPLICATIONINSIGHTS_AUTHENTICATION_STRING names
// (docs/telemetry.md). The other exporters leave host.json as it is.
var openTelemetrySettings = (logExporter == 'opentelemetry') ? [
  {
    name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
    value: 'true'
  }
  {
    name: 'AzureFunctionsJobHost__telemetryMode'
    value: 'OpenTelemetry'
  }
] : []

// The staging slot's own values (docs/runbooks/deploy.md). Slot settings ("sticky"): they
// stay with the slot when it is swapped, so production keeps host.json's task hub and its
// folders, and the slot keeps its own. A slot needs its own task hub (the extension refuses
// the default hub name in a non-production slot, and two apps on one hub take each other's
// messages) and its own content share.
var stagingHub = 'VirtualZarrPipelineStaging'
var stagingOverrides = {
  WEBSITE_CONTENTSHARE: '${toLower(name)}-staging'
  PIPELINE_WORK_AREA: 'az://${workContainer}/staging'
  PIPELINE_STORE_ROOT: 'az://${storeContainer}/staging'
  PIPELINE_CATALOG: 'az://${catalogContainer}/staging'
  PIPELINE_DATASETS: '{"datasets": {}}'
}
var stagingBase = [for setting in concat(appSettings, openTelemetrySettings): {
  name: setting.name
  value: contains(stagingOverrides, setting.name) ? stagingOverrides[setting.name] : setting.value
}]
var stagingSettings = concat(stagingBase, [
  {
    name: 'AzureFunctionsJobHost__extensions__durableTask__hubName'
    value: stagingHub
  }
])
var stickySettings = [
  'WEBSITE_CONTENTSHARE'
  'PIPELINE_WORK_AREA'
  'PIPELINE_STORE_ROOT'
  'PIPELINE_CATALOG'
  'PIPELINE_DATASETS'
  'AzureFunctionsJobHost__extensions__durableTask__hubName'
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy needs at least 3 always-running instances, three times the cost at rest (docs/deploy.md, Cost); runs resume from the task hub after an instance is lost.
  name: planName
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: planSku
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumInstances
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:The HTTP API (function keys), the anonymous /api/health availability test and Event Grid's delivery to blob_created reach the app over its public endpoint.
  // checkov:skip=CKV_AZURE_17:Client certificates would lock out the availability test and the HTTP API's callers; the API's routes require a function key instead (docs/security.md).
  // checkov:skip=CKV_AZURE_212:One always-ready instance by default (minimumInstances): each one more is billed around the clock; Durable work survives a lost instance through the task hub.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      linuxFxVersion: 'Python|3.12'
      minimumElasticInstanceCount: minimumInstances
      functionAppScaleLimit: maximumInstances
      alwaysOn: false
      use32BitWorkerProcess: false
      http20Enabled: true
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      healthCheckPath: '/api/health'
      appSettings: concat(appSettings, openTelemetrySettings)
    }
  }
}

// No basic-auth publishing (FTP or the deployment endpoint): azd deploys with Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

resource slotSettings 'Microsoft.Web/sites/config@2024-04-01' = if (stagingSlot) {
  // checkov:skip=CKV_AZURE_66:This config resource is the slotConfigNames list (which settings stay with a slot), not the site's web config; failed request tracing is not one of its properties.
  // checkov:skip=CKV_AZURE_63:This config resource is the slotConfigNames list (which settings stay with a slot), not the site's web config; HTTP logging is not one of its properties.
  // checkov:skip=CKV_AZURE_222:This config resource is the slotConfigNames list, not the site; the app's and the slot's public access are set on them (and skipped there, with the reason).
  // checkov:skip=CKV_AZURE_80:This config resource is the slotConfigNames list, not the site's web config; the app runs Python 3.12 (linuxFxVersion), no .NET Framework.
  // checkov:skip=CKV_AZURE_13:This config resource is the slotConfigNames list, not the site's auth settings; the API's routes require function keys (docs/security.md).
  // checkov:skip=CKV_AZURE_88:This config resource is the slotConfigNames list, not the site; the app and the slot keep their files on Azure Files (WEBSITE_CONTENTSHARE, one share each).
  // checkov:skip=CKV_AZURE_65:This config resource is the slotConfigNames list (which settings stay with a slot), not the site's web config; detailed errors are not one of its properties.
  parent: app
  name: 'slotConfigNames'
  properties: {
    appSettingNames: stickySettings
  }
}

resource staging 'Microsoft.Web/sites/slots@2024-04-01' = if (stagingSlot) {
  // checkov:skip=CKV_AZURE_222:The slot is reached like the app (function keys, the smoke test of docs/runbooks/deploy.md) over its public endpoint; no Event Grid subscription points at it.
  // checkov:skip=CKV_AZURE_17:Client certificates would lock out the smoke test and the HTTP API's callers; the API's routes require a function key instead (docs/security.md).
  // checkov:skip=CKV_AZURE_67:checkov does not read the properties of a conditional resource; the slot sets siteConfig.http20Enabled true, as the app does.
  // checkov:skip=CKV_AZURE_153:checkov does not read the properties of a conditional resource; the slot sets httpsOnly true, as the app does.
  // checkov:skip=CKV_AZURE_212:The slot exists for a smoke test before a swap: one instance (minimumElasticInstanceCount 1), no failover needed; production has the app's instances.
  // checkov:skip=CKV_AZURE_213:checkov does not read the properties of a conditional resource; the slot sets healthCheckPath /api/health, as the app does.
  parent: app
  name: 'staging'
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      linuxFxVersion: 'Python|3.12'
      minimumElasticInstanceCount: 1
      functionAppScaleLimit: maximumInstances
      alwaysOn: false
      use32BitWorkerProcess: false
      http20Enabled: true
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      healthCheckPath: '/api/health'
      appSettings: stagingSettings
    }
  }
}

output id string = app.id
output name string = app.name
output hostName string = app.properties.defaultHostName
output stagingHostName string = stagingSlot ? staging.properties.defaultHostName : ''
output stagingTaskHub string = stagingSlot ? stagingHub : ''
