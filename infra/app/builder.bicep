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

var cloudInit = '''
#cloud-config
package_update: true
packages:
  - docker.io
  - docker-buildx
  - python3
  - curl
  - jq
runcmd:
  - systemctl enable --now docker
  - mkdir -p /var/lib/fast-build
'''

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
