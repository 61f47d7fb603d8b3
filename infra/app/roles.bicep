// Least privilege, by identity:
// - the function app: data access to its storage (blobs, queues, tables; user-delegation SAS),
//   operate the builder VM (start, deallocate, Run Command), update the one Container App;
// - the builder VM: push images; the Container App: pull them.
param functionPrincipalId string
param builderPrincipalId string
param containerAppPrincipalId string
param storageAccountName string
param registryName string
param builderVmName string
param containerAppName string

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  virtualMachineContributor: '9980e02c-c2be-4d73-94e8-173b1dc7cf3c'
  containerAppsContributor: '358470bc-b998-42bd-ab17-a7e34c199c0f'
  acrPush: '8311e382-0749-4cb8-b61a-304f252e45ec'
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
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
  name: guid(app.id, functionPrincipalId, roles.containerAppsContributor)
  scope: app
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.containerAppsContributor)
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

resource appPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, containerAppPrincipalId, roles.acrPull)
  scope: registry
  properties: {
    principalId: containerAppPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
  }
}
