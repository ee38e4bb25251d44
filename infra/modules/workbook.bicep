// The pipeline health workbook (docs/operations.md, "The workbook"): an Azure Monitor
// workbook on the Application Insights resource, for the operator at 3am. Parameters: the
// time range and the datasets. Its queries come from files: infra/workbook/*.kql (the
// health metrics) and infra/alerts/*.kql, the alerts' own queries, loaded as they are
// (the "alerts now" group) or with their look-back window or limit swapped for the
// workbook's (runs in flight longer than 30 minutes, storage retries). tests/test_workbook.py
// builds the document from this file, checks it against the workbook schema and parses every
// query with Kusto's own parser, and checks every field it reads against docs/telemetry.md.

@description('Prefix of the workbook\'s display name.')
param namePrefix string

@description('Region of the workbook.')
param location string

@description('Tags for the workbook.')
param tags object

@description('Resource id of the Application Insights resource the queries read.')
param appInsightsId string

var displayName = '${namePrefix}: pipeline health'
var component = 'microsoft.insights/components'
var datasetFilter = '| where "*" in ({Dataset}) or dataset in ({Dataset})'

// The alerts' own queries (infra/alerts/, alerts.bicep loads the same files), with the title
// and runbook docs/operations.md gives each.
var alertQueries = [
  {
    title: '1. Runs failed (last hour)'
    runbook: 'runbooks/failed-run.md'
    query: loadTextContent('../alerts/01-runs-failed.kql')
  }
  {
    title: '2. Runs failed with a code that is ours to fix (last hour)'
    runbook: 'runbooks/failed-run.md'
    query: loadTextContent('../alerts/02-runs-failed-our-code.kql')
  }
  {
    title: '3. Runs that failed without a code (last hour)'
    runbook: 'runbooks/failed-run.md, Diagnosis 4'
    query: loadTextContent('../alerts/03-runs-failed-without-code.kql')
  }
  {
    title: '4. Activity failures by stage (last hour)'
    runbook: 'runbooks/failed-run.md'
    query: loadTextContent('../alerts/04-activity-failures-by-stage.kql')
  }
  {
    title: '5. Transient storage retries (last 15 minutes)'
    runbook: 'runbooks/stuck-run.md'
    query: loadTextContent('../alerts/05-storage-retries.kql')
  }
  {
    title: '6. Runs longer than N hours'
    runbook: 'runbooks/stuck-run.md'
    query: loadTextContent('../alerts/06-long-runs.kql')
  }
  {
    title: '7. Combine memory (last day)'
    runbook: 'runbooks/large-submission.md'
    query: loadTextContent('../alerts/07-combine-memory.kql')
  }
  {
    title: '8. Verify over 30 minutes (last day)'
    runbook: 'runbooks/large-submission.md'
    query: loadTextContent('../alerts/08-verify-slow.kql')
  }
  {
    title: '10. Uploads ignored as unknown_dataset (last hour)'
    runbook: 'runbooks/failed-run.md, Event-driven runs'
    query: loadTextContent('../alerts/10-uploads-ignored.kql')
  }
  {
    title: '11. Watcher runs that keep failing (last day)'
    runbook: 'runbooks/failed-run.md, Event-driven runs'
    query: loadTextContent('../alerts/11-watcher-failing.kql')
  }
]

// Alert 6 with the workbook's limit: runs open for more than 30 minutes.
var longRunsQuery = replace(loadTextContent('../alerts/06-long-runs.kql'), 'let limit = 6h;', 'let limit = 30m;')
// Alert 5 over the workbook's time range and datasets.
var retriesOverRange = replace(loadTextContent('../alerts/05-storage-retries.kql'), 'timestamp > ago(15m)', 'timestamp {TimeRange}')
var retriesQuery = replace(retriesOverRange, '| summarize retries', '| where "*" in ({Dataset}) or tostring(f.dataset) in ({Dataset})\n| summarize retries')

var parameterItem = {
  type: 9
  name: 'parameters'
  content: {
    version: 'KqlParameterItem/1.0'
    style: 'pills'
    queryType: 0
    resourceType: component
    parameters: [
      {
        id: '5b0d6a4c-1f0e-4a43-9d55-7b0f1c4d2e01'
        version: 'KqlParameterItem/1.0'
        name: 'TimeRange'
        label: 'Time range'
        type: 4
        isRequired: true
        value: {
          durationMs: 604800000
        }
        typeSettings: {
          selectableValues: [
            {
              durationMs: 3600000
            }
            {
              durationMs: 86400000
            }
            {
              durationMs: 604800000
            }
            {
              durationMs: 2592000000
            }
          ]
          allowCustom: true
        }
      }
      {
        id: '5b0d6a4c-1f0e-4a43-9d55-7b0f1c4d2e02'
        version: 'KqlParameterItem/1.0'
        name: 'Dataset'
        label: 'Dataset'
        type: 2
        isRequired: true
        multiSelect: true
        quote: '\''
        delimiter: ','
        query: loadTextContent('../workbook/datasets.kql')
        typeSettings: {
          additionalResourceOptions: [
            'value::all'
          ]
          selectAllValue: '*'
          showDefault: false
        }
        defaultValue: 'value::all'
        timeContext: {
          durationMs: 0
        }
        timeContextFromParameter: 'TimeRange'
        queryType: 0
        resourceType: component
      }
    ]
  }
}

// One query item: the query, how to show it, what it is for.
var metrics = [
  {
    name: 'runs-per-day'
    title: 'Runs per day by outcome'
    visualization: 'barchart'
    query: loadTextContent('../workbook/runs-per-day.kql')
  }
  {
    name: 'failure-ratio'
    title: 'Failed runs by stage and error code, and the share of the runs that reached that stage'
    visualization: 'table'
    query: loadTextContent('../workbook/failure-ratio.kql')
  }
  {
    name: 'unsuitable-files'
    title: 'Unsuitable files found by validate, per day'
    visualization: 'barchart'
    query: loadTextContent('../workbook/unsuitable-files.kql')
  }
  {
    name: 'findings-by-code'
    title: 'Validate findings by code (files; errors and warnings)'
    visualization: 'table'
    query: loadTextContent('../workbook/findings-by-code.kql')
  }
  {
    name: 'combine-memory-chart'
    title: 'Combine: peak memory against the ceiling in force (GB), longest combine (minutes)'
    visualization: 'timechart'
    query: loadTextContent('../workbook/combine-memory-chart.kql')
  }
  {
    name: 'combine-memory'
    title: 'Combine: every combine and merge batch, its duration and peak memory against the ceiling'
    visualization: 'table'
    query: loadTextContent('../workbook/combine-memory.kql')
  }
  {
    name: 'runs-in-flight'
    title: 'Runs in flight longer than 30 minutes (alert 6\'s query, limit 30m; the last 2 days)'
    visualization: 'table'
    query: '${longRunsQuery}\n| extend dataset = substring(instance_id, strlen("pipeline-"))\n${datasetFilter}'
  }
  {
    name: 'reference-size'
    title: 'Reference size per store (the latest write of each store)'
    visualization: 'table'
    query: loadTextContent('../workbook/reference-size.kql')
  }
  {
    name: 'uploads-ignored'
    title: 'Uploads ignored, and why (all datasets: an ignored upload has none)'
    visualization: 'table'
    query: loadTextContent('../workbook/uploads-ignored.kql')
  }
  {
    name: 'storage-retries-chart'
    title: 'Storage retries per hour, by stage'
    visualization: 'timechart'
    query: loadTextContent('../workbook/storage-retries-chart.kql')
  }
  {
    name: 'storage-retries'
    title: 'Storage retries by stage and code (alert 5\'s query over the time range)'
    visualization: 'table'
    query: retriesQuery
  }
]

var metricItems = [
  for metric in metrics: {
    type: 3
    name: metric.name
    content: {
      version: 'KqlItem/1.0'
      title: metric.title
      query: metric.query
      size: 0
      queryType: 0
      resourceType: component
      visualization: metric.visualization
      timeContext: {
        durationMs: 0
      }
      timeContextFromParameter: 'TimeRange'
      noDataMessage: 'Nothing in this time range.'
    }
  }
]

var alertItems = [
  for (alertQuery, position) in alertQueries: {
    type: 3
    name: 'alert-${position}'
    content: {
      version: 'KqlItem/1.0'
      title: '${alertQuery.title}: runbook docs/${alertQuery.runbook}'
      query: alertQuery.query
      size: 0
      queryType: 0
      resourceType: component
      visualization: 'table'
      noDataMessage: 'No row: this alert would not fire now.'
    }
  }
]

var introductionItem = {
  type: 1
  name: 'introduction'
  content: {
    json: '## virtual-zarr-pipeline: pipeline health\nRuns, failures by stage and code, unsuitable files, combine memory against its ceiling, long runs, store sizes, ignored uploads and storage retries, for the time range and datasets chosen above. A failed run names its file and finding: open it on the operator page (`/api/operator`) for the file, variable, rule and what to do. What each alert means and which runbook to open: docs/operations.md.'
  }
}

var alertGroupItem = {
  type: 12
  name: 'alerts-now'
  content: {
    version: 'NotebookGroup/1.0'
    groupType: 'editable'
    title: 'What each alert\'s query finds now (the alerts\' own queries and windows)'
    items: alertItems
  }
}

var workbookDocument = {
  version: 'Notebook/1.0'
  items: concat([introductionItem, parameterItem], metricItems, [alertGroupItem])
  fallbackResourceIds: [
    appInsightsId
  ]
  '$schema': 'https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json'
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, namePrefix, 'pipeline-health')
  location: location
  tags: union(tags, {
    'hidden-title': displayName
  })
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: string(workbookDocument)
    version: 'Notebook/1.0'
  }
}

output workbookId string = workbook.id
output workbookName string = workbook.name
