// The builder: a persistent VM (its Docker layer and cargo caches survive between builds), reached
// only through Run Command — no public IP, no inbound rule, outbound through a NAT gateway.
// Deallocated when idle by the timer.
param location string
param tags object
param name string
param vmSize string
@description('additionalCapabilities.hibernationEnabled: the idle shutdown may hibernate the VM.')
param hibernationEnabled bool = false
@secure()
param sshPublicKey string
param registryName string
@description('Admin user of the builder (SSH is break-glass only).')
param adminUsername string = 'fastbuild'

// cloud-init runs once, when the VM is created, and `osProfile.customData` cannot be changed
// afterwards ("This property cannot be updated after the VM is created", OSProfile.customData in
// https://learn.microsoft.com/rest/api/compute/virtual-machines/create-or-update): so it installs tools
// only — Docker (BuildKit), python3, curl, jq and the az CLI (ACR login with the VM's identity).
// The build kit (Dockerfiles, safe_extract.py) travels with each build's Run Command instead.
// Its last step writes /var/lib/fast-build/ready, only once every tool is there: build.sh waits
// for that file (or `cloud-init status --wait`) before its first step.
// daemon.json turns on Docker's containerd image store (before Docker's first image): the
// default `docker` build driver exports and imports BuildKit's registry cache only with it
// (https://docs.docker.com/build/cache/backends/), and build.sh builds with that cache. A VM made
// before this line has the classic store: its builds fall back to building without the cache.
var cloudInit = '''#cloud-config
package_update: true
packages: [docker.io, docker-buildx, python3, curl, jq, ca-certificates]
runcmd:
  - - sh
    - -c
    - mkdir -p /etc/docker && echo '{"features":{"containerd-snapshotter":true}}' >/etc/docker/daemon.json
  - systemctl enable docker
  - systemctl restart docker
  - curl -sL https://aka.ms/InstallAzureCLIDeb | bash
  - - sh
    - -c
    - for tool in docker az python3 curl jq; do command -v "$tool" >/dev/null || exit 1; done; mkdir -p /var/lib/fast-build && date -u +%Y-%m-%dT%H:%M:%SZ >/var/lib/fast-build/ready
'''

// Outbound only, through a NAT gateway: subnets are private by default in newer network API
// versions (no implicit outbound access), and the builder needs apt, the az CLI installer, the
// registry and the source blob. No public IP on the VM and no inbound rule: it is reached only
// through Run Command (https://learn.microsoft.com/azure/nat-gateway/nat-overview).
resource natIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: 'pip-ng-${name}'
  location: location
  tags: tags
  sku: { name: 'Standard' }
  properties: { publicIPAllocationMethod: 'Static', publicIPAddressVersion: 'IPv4' }
}

resource nat 'Microsoft.Network/natGateways@2024-05-01' = {
  name: 'ng-${name}'
  location: location
  tags: tags
  sku: { name: 'Standard' }
  properties: { publicIpAddresses: [{ id: natIp.id }], idleTimeoutInMinutes: 4 }
}

// No rules of its own: the defaults deny inbound from the internet and allow outbound.
resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${name}'
  location: location
  tags: tags
  properties: { securityRules: [] }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: 'vnet-${name}'
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: ['10.40.0.0/24'] }
    subnets: [
      {
        name: 'builder'
        properties: {
          addressPrefix: '10.40.0.0/26'
          defaultOutboundAccess: false
          natGateway: { id: nat.id }
          networkSecurityGroup: { id: nsg.id }
        }
      }
    ]
  }
}

resource nic 'Microsoft.Network/networkInterfaces@2024-05-01' = {
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
    // Without it Azure refuses a hibernate with OperationNotAllowed ("can only be triggered on a VM
    // that is enabled for hibernation"); fast-build then deallocates instead.
    additionalCapabilities: { hibernationEnabled: hibernationEnabled }
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

// The guest must be set up to suspend to disk (a swap file as large as RAM, the resume kernel
// argument): LinuxHibernateExtension does it (MicrosoftDocs/azure-docs
// articles/virtual-machines/linux/hibernate-resume-linux.md, "Configuring hibernation in the guest OS").
resource hibernateExtension 'Microsoft.Compute/virtualMachines/extensions@2024-07-01' = if (hibernationEnabled) {
  parent: vm
  name: 'LinuxHibernateExtension'
  location: location
  tags: tags
  properties: {
    publisher: 'Microsoft.CPlat.Core'
    type: 'LinuxHibernateExtension'
    typeHandlerVersion: '1.0'
    autoUpgradeMinorVersion: true
  }
}

output name string = vm.name
output principalId string = vm.identity.principalId
