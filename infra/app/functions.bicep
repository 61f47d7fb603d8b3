// The orchestrator: a Flex Consumption function app (Node 20) with a system-assigned identity.
// Storage is reached by identity only (no connection strings, no keys in settings).
param location string
param tags object
param name string
param storageAccountName string
param deploymentContainerName string
@description('FASTBUILD_CONTENT_CONTAINER: the content-addressed source store (infra/app/storage.bicep).')
param contentContainerName string
param applicationInsightsName string
@description('FASTBUILD_ENVIRONMENTS: the environments this app builds and deploys.')
param environments object
param idleShutdownMinutes int

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: 40, instanceMemoryMB: 2048 }
      runtime: { name: 'node', version: '20' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD' }
        { name: 'TASK_HUB_NAME', value: 'fastbuild' }
        { name: 'FASTBUILD_BLOB_ENDPOINT', value: storage.properties.primaryEndpoints.blob }
        { name: 'FASTBUILD_TABLE_ENDPOINT', value: storage.properties.primaryEndpoints.table }
        { name: 'FASTBUILD_CONTENT_CONTAINER', value: contentContainerName }
        { name: 'FASTBUILD_ENVIRONMENTS', value: string(environments) }
        { name: 'FASTBUILD_IDLE_SHUTDOWN_MINUTES', value: string(idleShutdownMinutes) }
      ]
    }
  }
}

output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
