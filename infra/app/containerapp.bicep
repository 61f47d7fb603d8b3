param location string
param tags object
param environmentName string
param appName string
param image string
@description('Port the app listens on: ingress and the readiness probe target it.')
param port int
@description('HTTP path the readiness probe GETs; a revision takes traffic once it answers 2xx/3xx.')
param probePath string
param registryName string
param logAnalyticsWorkspaceName string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsWorkspaceName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: workspace.properties.customerId
        sharedKey: workspace.listKeys().primarySharedKey
      }
    }
  }
}

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: appName
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: {
    managedEnvironmentId: environment.id
    configuration: {
      // Single mode: each build's revision takes all traffic once healthy; the orchestration
      // reports on that revision by name, never on whichever happens to be active.
      activeRevisionsMode: 'Single'
      ingress: { external: true, targetPort: port, transport: 'auto' }
      registries: [{ server: registry.properties.loginServer, identity: 'system' }]
    }
    template: {
      containers: [
        {
          name: 'app'
          image: image
          resources: { cpu: json('0.5'), memory: '1Gi' }
          // The image, ingress and probe must agree on one port. The deploy PATCHes only the image
          // (src/azure/containerApps.ts) and keeps these variables, so they reach the user's image
          // too: PORT is the common convention; ASPNETCORE_HTTP_PORTS makes the initial .NET sample
          // image listen on the same port (it honours it since .NET 8).
          env: [
            { name: 'PORT', value: string(port) }
            { name: 'ASPNETCORE_HTTP_PORTS', value: string(port) }
          ]
          probes: [{ type: 'Readiness', httpGet: { path: probePath, port: port }, periodSeconds: 5 }]
        }
      ]
      scale: { minReplicas: 1, maxReplicas: 3 }
    }
  }
}

output name string = app.name
output containerName string = 'app'
output principalId string = app.identity.principalId
