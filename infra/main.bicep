// fast-build: everything one environment needs, deployed with `azd up`.
// Function app (Flex Consumption, Durable Functions) + storage, the builder VM, the registry,
// and the Container App it deploys to, wired together with managed identities only: no keys.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name and tag everything.')
param environmentName string

@minLength(1)
@description('Primary location for all resources.')
param location string

@description('Size of the builder VM: compile speed scales with its cores.')
param builderVmSize string = 'Standard_D8as_v5'

@description('SSH public key for the builder admin user (break-glass only; builds use Run Command).')
@secure()
param builderSshPublicKey string

@description('Minutes of inactivity after which the builder is deallocated.')
@minValue(5)
param idleShutdownMinutes int = 30

// Hibernation keeps the builder's memory (warm page cache, running daemons) on its OS disk, so the
// next start resumes instead of booting. Only some sizes (Dasv5/Dsv5/Easv5/Esv5 families up to
// 64 GB RAM, including the default Standard_D8as_v5) and images support it, and it excludes Spot and
// Trusted Launch (MicrosoftDocs/azure-docs articles/virtual-machines/hibernate-resume.md and
// linux/hibernate-resume-linux.md); Azure refuses the deployment otherwise.
@description('Enable hibernation on the builder VM (additionalCapabilities.hibernationEnabled) and let the idle shutdown hibernate it instead of deallocating it.')
param builderHibernation bool = false

@description('The cargo binary the image packages.')
param binaryName string = 'app'

@description('Port the app listens on: the Container App\'s ingress and readiness probe target it, and its containers get it as PORT.')
@minValue(1)
@maxValue(65535)
param appPort int = 8080

@description('Path the readiness probe GETs on appPort.')
param appProbePath string = '/'

// The first image must listen on appPort too, or the first revision never becomes ready and
// `azd up` waits for it. mcr.microsoft.com/k8se/quickstart always listens on 80; the .NET sample
// listens on ASPNETCORE_HTTP_PORTS (set to appPort by containerapp.bicep), 8080 by default
// (https://github.com/dotnet/dotnet-docker/blob/main/samples/aspnetapp/README.md).
@description('Image the Container App runs before the first build; it must listen on appPort.')
param initialImage string = 'mcr.microsoft.com/dotnet/samples:aspnetapp'

var tags = { 'azd-env-name': environmentName }
var token = toLower(uniqueString(subscription().id, environmentName, location))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: { location: location, tags: tags, name: 'log-${token}' }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: { location: location, tags: tags, name: 'st${token}' }
}

module registry 'app/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: { location: location, tags: tags, name: 'cr${token}' }
}

module builder 'app/builder.bicep' = {
  name: 'builder'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'vm-builder-${token}'
    vmSize: builderVmSize
    hibernationEnabled: builderHibernation
    sshPublicKey: builderSshPublicKey
    registryName: registry.outputs.name
  }
}

module containerApp 'app/containerapp.bicep' = {
  name: 'containerapp'
  scope: rg
  params: {
    location: location
    tags: tags
    environmentName: 'cae-${token}'
    appName: 'ca-${token}'
    image: initialImage
    port: appPort
    probePath: appProbePath
    registryName: registry.outputs.name
    logAnalyticsWorkspaceName: monitoring.outputs.logAnalyticsWorkspaceName
  }
}

module functions 'app/functions.bicep' = {
  name: 'functions'
  scope: rg
  params: {
    location: location
    tags: union(tags, { 'azd-service-name': 'api' })
    name: 'func-${token}'
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    contentContainerName: storage.outputs.contentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    environments: {
      '${environmentName}': {
        subscriptionId: subscription().subscriptionId
        resourceGroup: rg.name
        builderVm: builder.outputs.name
        registry: registry.outputs.loginServer
        imageRepository: 'app'
        containerApp: containerApp.outputs.name
        containerName: containerApp.outputs.containerName
        binaryName: binaryName
        idleShutdown: builderHibernation ? 'hibernate' : 'deallocate'
      }
    }
    idleShutdownMinutes: idleShutdownMinutes
  }
}

module roles 'app/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    functionPrincipalId: functions.outputs.principalId
    builderPrincipalId: builder.outputs.principalId
    containerAppPrincipalId: containerApp.outputs.principalId
    storageAccountName: storage.outputs.name
    registryName: registry.outputs.name
    builderVmName: builder.outputs.name
    containerAppName: containerApp.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output FASTBUILD_API_URL string = 'https://${functions.outputs.defaultHostName}'
output FASTBUILD_ENV string = environmentName
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output BUILDER_VM_NAME string = builder.outputs.name
