// One account: the Functions host and Durable task hub, source archives, stored source contents,
// build logs, builder records.
param location string
param tags object
param name string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    // Identity only: SAS for uploads are user-delegation SAS, signed with the function app's identity.
    allowSharedKeyAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource deployments 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: 'deployments'
}

resource sources 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: 'build-sources'
}

// Content-addressed source (src/core/sourceManifest.ts): packs, the environments' content indexes,
// each build's pending request and plan (FASTBUILD_CONTENT_CONTAINER).
resource contents 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: 'source-content'
}

resource logs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: 'build-logs'
}

// Source archives are only needed while a build runs; keep a day for debugging.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-sources'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob'], prefixMatch: ['build-sources/'] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: 1 } } }
          }
        }
        {
          // CONTENT_STORE.retentionDays (a test compares): the index stops reusing a pack after
          // CONTENT_STORE.reuseDays, so no build is planned on a pack this rule is about to delete.
          // The indexes are rewritten by every accepted upload; an index idle this long goes too.
          name: 'expire-source-content'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob'], prefixMatch: ['source-content/'] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: 30 } } }
          }
        }
        {
          name: 'expire-logs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['appendBlob'], prefixMatch: ['build-logs/'] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: 30 } } }
          }
        }
      ]
    }
  }
}

output name string = account.name
output deploymentContainerName string = deployments.name
output contentContainerName string = contents.name
