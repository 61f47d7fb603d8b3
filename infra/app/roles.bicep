// Least privilege, by identity:
// - the function app: data access to its storage (blobs, queues, tables; user-delegation SAS),
//   operate the builder VM (start, deallocate, Run Command), read and update the one Container App,
//   send telemetry to Application Insights (local auth is disabled there), read the registry's
//   manifests (a deploy runs only a digest the registry confirms for the build's tag);
// - the builder VM: push images, and write its build logs (managed Run Command output and error
//   blobs through the VM's identity, so no SAS sits in the run command); the Container App: pull.
// test/infra/permissions.test.ts checks every call in test/infra/requiredActions.ts against these.
param functionPrincipalId string
param builderPrincipalId string
param containerAppPrincipalId string
param storageAccountName string
@description('The build-log container: the builder VM writes Run Command output there with its identity.')
param logContainerName string = 'build-logs'
param registryName string
param builderVmName string
param containerAppName string
param applicationInsightsName string

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  virtualMachineContributor: '9980e02c-c2be-4d73-94e8-173b1dc7cf3c'
  acrPush: '8311e382-0749-4cb8-b61a-304f252e45ec'
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource logContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: logContainerName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource builderVm 'Microsoft.Compute/virtualMachines@2024-07-01' existing = {
  name: builderVmName
}

resource app 'Microsoft.App/containerApps@2024-03-01' existing = {
  name: containerAppName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Container Apps Contributor lists `Microsoft.App/containerApps/*/read` and `*/write`, which (a
// wildcard stands for "something" between the slashes) match the app's sub-resources but not
// `containerApps/read` or `containerApps/write` themselves — the GET and PATCH the deploy makes.
// So the function app gets exactly those three operations, on the one app, through its own role.
resource appDeployer 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'fast-build-container-app-deployer')
  properties: {
    // Custom role names are unique per tenant: name the subscription and resource group.
    roleName: 'fast-build Container App deployer (${subscription().subscriptionId}/${resourceGroup().name})'
    description: 'Read a Container App and its revisions, and PATCH its containers (a new image).'
    type: 'customRole'
    permissions: [
      {
        actions: [
          'Microsoft.App/containerApps/read'
          'Microsoft.App/containerApps/write'
          'Microsoft.App/containerApps/revisions/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [resourceGroup().id]
  }
}

resource functionStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in [roles.storageBlobDataOwner, roles.storageQueueDataContributor, roles.storageTableDataContributor]: {
    name: guid(storage.id, functionPrincipalId, role)
    scope: storage
    properties: {
      principalId: functionPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

resource functionVm 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(builderVm.id, functionPrincipalId, roles.virtualMachineContributor)
  scope: builderVm
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.virtualMachineContributor)
  }
}

resource functionApp 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(app.id, functionPrincipalId, appDeployer.id)
  scope: app
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: appDeployer.id
  }
}

// Application Insights has local auth disabled: telemetry is accepted only from an Entra identity
// with this role (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD in functions.bicep).
resource functionTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, functionPrincipalId, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

resource builderPush 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, builderPrincipalId, roles.acrPush)
  scope: registry
  properties: {
    principalId: builderPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPush)
  }
}

// The deploy's digest check (src/azure/registry.ts): a forged build result cannot name an image
// the registry does not have for the build's tag. Pull is read-only: the app never pushes.
resource functionPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, functionPrincipalId, roles.acrPull)
  scope: registry
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
  }
}

resource appPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, containerAppPrincipalId, roles.acrPull)
  scope: registry
  properties: {
    principalId: containerAppPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
  }
}

// The managed Run Command handler creates or replaces the output and error blobs and appends to
// them with the VM's identity (outputBlobManagedIdentity / errorBlobManagedIdentity): only there.
resource builderLogs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(logContainer.id, builderPrincipalId, roles.storageBlobDataContributor)
  scope: logContainer
  properties: {
    principalId: builderPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}
