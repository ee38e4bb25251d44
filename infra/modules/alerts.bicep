// The alerts of docs/operations.md, "Health thresholds and alerts": log search alerts on the
// Application Insights resource with the page's own queries (infra/alerts/*.kql, which
// tests/test_infra.py compares with the page), and alert 9 as an availability test on
// /api/health with its metric alert.

@description('Prefix of every alert name.')
param namePrefix string

@description('Region of the log search alerts and the availability test.')
param location string

@description('Tags for every alert.')
param tags object

@description('Resource id of the Application Insights resource the queries read.')
param appInsightsId string

@description('Host name of the Function App (<name>.azurewebsites.net).')
param functionHostName string

@description('E-mail address that receives every alert; empty: the alerts fire without notifying anyone (see them in the portal).')
param alertEmail string

// Severities: 1 pages the on-call person, 2 is handled the same working day, 3 is a notice.
// measure: '' counts rows; otherwise the column whose total is compared with the threshold.
// dimension: split by that column, including (Include) or excluding (Exclude) the values.
var codesOnCall = [
  'verify_mismatch'
  'internal_error'
  'dependency_missing'
]
var rules = [
  {
    name: 'runs-failed'
    title: '1. Runs failed'
    severity: 3
    window: 'PT1H'
    frequency: 'PT15M'
    query: loadTextContent('../alerts/01-runs-failed.kql')
    measure: ''
    operator: 'GreaterThan'
    threshold: 0
    dimension: {}
  }
  {
    name: 'runs-failed-3-or-more'
    title: '1. Runs failed: 3 or more in the hour'
    severity: 2
    window: 'PT1H'
    frequency: 'PT15M'
    query: loadTextContent('../alerts/01-runs-failed.kql')
    measure: 'failed'
    operator: 'GreaterThanOrEqual'
    threshold: 3
    dimension: {}
  }
  {
    name: 'runs-failed-our-code-sev1'
    title: '2. Runs failed with verify_mismatch, internal_error or dependency_missing'
    severity: 1
    window: 'PT1H'
    frequency: 'PT15M'
    query: loadTextContent('../alerts/02-runs-failed-our-code.kql')
    measure: ''
    operator: 'GreaterThan'
    threshold: 0
    dimension: {
      name: 'code'
      operator: 'Include'
      values: codesOnCall
    }
  }
  {
    name: 'runs-failed-our-code'
    title: '2. Runs failed with another code that is ours to fix'
    severity: 2
    window: 'PT1H'
    frequency: 'PT15M'
    query: loadTextContent('../alerts/02-runs-failed-our-code.kql')
    measure: ''
    operator: 'GreaterThan'
    threshold: 0
    dimension: {
      name: 'code'
      operator: 'Exclude'
      values: codesOnCall
    }
  }
  {
    name: 'runs-failed-without-code'
    title: '3. Runs that failed without a code'
    severity: 2
    window: 'PT1H'
    frequency: 'PT15M'
    query: loadTextContent('../alerts/03-runs-failed-without-code.kql')
    measure: ''
    operator: 'GreaterThan'
    threshold: 0
    dimension: {}
  }
  {
    name: 'activity-failures-by-stage'
    title: '4. Activity failures by stage'
    severity: 3
    window: 'PT1H'
    frequency: 'PT15M'
    query: loadTextContent('../alerts/04-activity-failures-by-stage.kql')
    measure: ''
    operator: 'GreaterThan'
    threshold: 0
    dimension: {}
  }
  {
    name: 'storage-retries'
    title: '5. Transient storage retries: more than 20'
    severity: 3
    window: 'PT15M'
    frequency: 'PT5M'
    query: loadTextContent('../alerts/05-storage-retries.kql')
    measure: 'retries'
    operator: 'GreaterThan'
    threshold: 20
    dimension: {}
  }
  {
    name: 'storage-retries-100'
    title: '5. Transient storage retries: more than 100'
    severity: 2
    window: 'PT15M'
    frequency: 'PT5M'
    query: loadTextContent('../alerts/05-storage-retries.kql')
    measure: 'retries'
    operator: 'GreaterThan'
    threshold: 100
    dimension: {}
  }
  {
    name: 'long-runs'
    title: '6. Runs longer than N hours'
    severity: 2
    window: 'P2D'
    frequency: 'PT30M'
    query: loadTextContent('../alerts/06-long-runs.kql')
    measure: ''
    operator: 'GreaterThan'
    threshold: 0
    dimension: {}
  }
  {
    name: 'combine-memory'
    title: '7. Combine memory above 80% of its ceiling'
    severity: 2
    window: 'P1D'
    frequency: 'PT1H'
    query: loadTextContent('../alerts/07-combine-memory.kql')
    measure: ''
    operator: 'GreaterThan'
    threshold: 0
    dimension: {}
  }
  {
    name: 'verify-slow'
    title: '8. Verify over 30 minutes'
    severity: 2
    window: 'P1D'
    frequency: 'PT1H'
    query: loadTextContent('../alerts/08-verify-slow.kql')
    measure: ''
    operator: 'GreaterThan'
    threshold: 0
    dimension: {}
  }
  {
    name: 'uploads-ignored'
    title: '10. Uploads ignored as unknown_dataset or registry_missing'
    severity: 3
    window: 'PT1H'
    frequency: 'PT1H'
    query: loadTextContent('../alerts/10-uploads-ignored.kql')
    measure: ''
    operator: 'GreaterThan'
    threshold: 0
    dimension: {}
  }
  {
    name: 'watcher-failing'
    title: '11. Watcher runs that keep failing'
    severity: 3
    window: 'PT24H'
    frequency: 'PT1H'
    query: loadTextContent('../alerts/11-watcher-failing.kql')
    measure: ''
    operator: 'GreaterThan'
    threshold: 0
    dimension: {}
  }
]

var notify = !empty(alertEmail)

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (notify) {
  name: '${namePrefix}-operators'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take('${namePrefix}ops', 12)
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroups = notify ? [actionGroup.id] : []

resource logAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: '${namePrefix}-${rule.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.title
      description: 'docs/operations.md, alert ${rule.title}; the runbook is named there.'
      severity: rule.severity
      enabled: true
      scopes: [
        appInsightsId
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: empty(rule.measure) ? 'Count' : 'Total'
            metricMeasureColumn: empty(rule.measure) ? null : rule.measure
            operator: rule.operator
            threshold: rule.threshold
            dimensions: empty(rule.dimension) ? [] : [
              rule.dimension
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: {
        actionGroups: actionGroups
      }
    }
  }
]

// Alert 9: a standard availability test (the name the operations page's query uses) and the
// alert when 2 or more of its 3 locations fail.
var healthTestName = 'pipeline-health'

resource healthTest 'Microsoft.Insights/webtests@2022-06-15' = {
  name: '${namePrefix}-${healthTestName}'
  location: location
  tags: union(tags, {
    'hidden-link:${appInsightsId}': 'Resource'
  })
  kind: 'standard'
  properties: {
    SyntheticMonitorId: '${namePrefix}-${healthTestName}'
    Name: healthTestName
    Description: 'docs/operations.md, alert 9: /api/health answers 200.'
    Enabled: true
    Frequency: 300
    Timeout: 30
    Kind: 'standard'
    RetryEnabled: true
    Locations: [
      {
        Id: 'emea-nl-ams-azr'
      }
      {
        Id: 'us-va-ash-azr'
      }
      {
        Id: 'apac-sg-sin-azr'
      }
    ]
    Request: {
      RequestUrl: 'https://${functionHostName}/api/health'
      HttpVerb: 'GET'
      ParseDependentRequests: false
    }
    ValidationRules: {
      ExpectedHttpStatusCode: 200
      SSLCheck: true
      SSLCertRemainingLifetimeCheck: 7
    }
  }
}

resource healthAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-health-not-200'
  location: 'global'
  tags: tags
  properties: {
    description: 'docs/operations.md, alert 9: /api/health not 200 from 2 or more locations.'
    severity: 1
    enabled: true
    scopes: [
      healthTest.id
      appInsightsId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria'
      webTestId: healthTest.id
      componentId: appInsightsId
      failedLocationCount: 2
    }
    autoMitigate: true
    actions: [
      for group in actionGroups: {
        actionGroupId: group
      }
    ]
  }
}

output logAlertNames array = [for (rule, i) in rules: logAlerts[i].name]
output healthTestName string = healthTestName
