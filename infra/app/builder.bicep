// The builder: a persistent VM (its Docker layer and cargo caches survive between builds), reached
// only through Run Command — no public IP, no inbound rule. Deallocated when idle by the timer.
param location string
param tags object
param name string
param vmSize string
@secure()
param sshPublicKey string
param registryName string
@description('Admin user of the builder (SSH is break-glass only).')
param adminUsername string = 'fastbuild'

// cloud-init installs Docker (BuildKit), python3 (safe_extract.py), curl and the az CLI (ACR login
// with the VM's identity), and the build kit from dockerfiles/, embedded at deploy time. Run Command
// sends build.sh itself with every build, so only these files need a redeploy when they change.
var buildKit = ['Dockerfile.base', 'Dockerfile.app', 'Dockerfile.acr', 'Dockerfile.fast', 'safe_extract.py']
var buildKitContent = {
  'Dockerfile.base': loadFileAsBase64('../../dockerfiles/Dockerfile.base')
  'Dockerfile.app': loadFileAsBase64('../../dockerfiles/Dockerfile.app')
  'Dockerfile.acr': loadFileAsBase64('../../dockerfiles/Dockerfile.acr')
  'Dockerfile.fast': loadFileAsBase64('../../dockerfiles/Dockerfile.fast')
  'safe_extract.py': loadFileAsBase64('../../dockerfiles/safe_extract.py')
}
var cloudInit = join(
  concat(
    [
      '#cloud-config'
      'package_update: true'
      'packages: [docker.io, docker-buildx, python3, curl, jq, ca-certificates]'
      'write_files:'
    ],
    flatten(map(buildKit, file => [
      '  - path: /opt/fastbuild/dockerfiles/${file}'
      '    encoding: b64'
      '    permissions: "0644"'
      '    content: ${buildKitContent[file]}'
    ])),
    [
      'runcmd:'
      '  - systemctl enable --now docker'
      '  - curl -sL https://aka.ms/InstallAzureCLIDeb | bash'
      '  - mkdir -p /var/lib/fast-build'
    ]
  ),
  '\n'
)

resource vnet 'Microsoft.Network/virtualNetworks@2024-01-01' = {
  name: 'vnet-${name}'
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: ['10.40.0.0/24'] }
    subnets: [{ name: 'builder', properties: { addressPrefix: '10.40.0.0/26' } }]
  }
}

resource nic 'Microsoft.Network/networkInterfaces@2024-01-01' = {
  name: 'nic-${name}'
  location: location
  tags: tags
  properties: {
    enableAcceleratedNetworking: true
    ipConfigurations: [
      {
        name: 'ipconfig'
        properties: {
          subnet: { id: vnet.properties.subnets[0].id }
          privateIPAllocationMethod: 'Dynamic'
        }
      }
    ]
  }
}

resource vm 'Microsoft.Compute/virtualMachines@2024-07-01' = {
  name: name
  location: location
  tags: union(tags, { 'fast-build-role': 'builder', 'fast-build-registry': registryName })
  identity: { type: 'SystemAssigned' }
  properties: {
    hardwareProfile: { vmSize: vmSize }
    storageProfile: {
      imageReference: {
        publisher: 'Canonical'
        offer: 'ubuntu-24_04-lts'
        sku: 'server'
        version: 'latest'
      }
      osDisk: {
        createOption: 'FromImage'
        diskSizeGB: 256
        managedDisk: { storageAccountType: 'Premium_LRS' }
        deleteOption: 'Delete'
      }
    }
    osProfile: {
      computerName: 'builder'
      adminUsername: adminUsername
      customData: base64(cloudInit)
      linuxConfiguration: {
        disablePasswordAuthentication: true
        ssh: { publicKeys: [{ path: '/home/${adminUsername}/.ssh/authorized_keys', keyData: sshPublicKey }] }
        provisionVMAgent: true
      }
    }
    networkProfile: { networkInterfaces: [{ id: nic.id, properties: { deleteOption: 'Delete' } }] }
    diagnosticsProfile: { bootDiagnostics: { enabled: true } }
  }
}

output name string = vm.name
output principalId string = vm.identity.principalId
