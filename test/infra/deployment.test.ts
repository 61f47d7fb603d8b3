import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { before, describe, it } from "node:test";
import type { Template } from "./armExpressions.js";
import { compileMain, deployedResources, only, propertiesOf, TEST_PARAMETERS } from "./compiledTemplate.js";

let template: Template;
before(() => {
  template = compileMain();
});

interface ContainerAppProps {
  configuration: { ingress: { targetPort: number } };
  template: {
    containers: {
      image: string;
      env?: { name: string; value: string }[];
      probes: { type: string; httpGet: { path: string; port: number } }[];
    }[];
  };
}

function containerApp(parameters: Record<string, unknown> = {}): ContainerAppProps {
  const resources = deployedResources(template, { ...TEST_PARAMETERS, ...parameters });
  return propertiesOf(only(resources, "Microsoft.App/containerApps")) as unknown as ContainerAppProps;
}

describe("the Container App's port", () => {
  it("targets one port with ingress, readiness probe and the container's PORT", () => {
    const app = containerApp({ appPort: 3000, appProbePath: "/healthz" });
    const [container] = app.template.containers;
    assert.equal(app.configuration.ingress.targetPort, 3000);
    assert.deepEqual(container?.probes[0]?.httpGet, { path: "/healthz", port: 3000 });
    assert.equal(container?.env?.find((e) => e.name === "PORT")?.value, "3000");
  });

  it("starts with an image that listens on that port, so the first revision becomes ready", () => {
    // Images and how their listening port is set, from their documentation: the quickstart image
    // always listens on 80; the .NET sample listens on ASPNETCORE_HTTP_PORTS (8080 when unset).
    const listensOn: Record<string, (env: Map<string, string>) => number> = {
      "mcr.microsoft.com/k8se/quickstart:latest": () => 80,
      "mcr.microsoft.com/dotnet/samples:aspnetapp": (env) => Number(env.get("ASPNETCORE_HTTP_PORTS") ?? 8080),
    };
    for (const appPort of [undefined, 8080, 3000]) {
      const app = containerApp(appPort === undefined ? {} : { appPort });
      const [container] = app.template.containers;
      const port = listensOn[container?.image ?? ""];
      assert.ok(port, `unknown initial image ${container?.image}: say which port it listens on`);
      const env = new Map((container?.env ?? []).map((e) => [e.name, e.value]));
      assert.equal(port(env), app.configuration.ingress.targetPort, `appPort ${appPort ?? "default"}`);
    }
  });
});

describe("infra/main.parameters.json", () => {
  const file = JSON.parse(readFileSync("infra/main.parameters.json", "utf8")) as {
    parameters: Record<string, { value: string }>;
  };

  it("passes only parameters main.bicep declares, and every one without a default", () => {
    const declared = template.parameters ?? {};
    for (const name of Object.keys(file.parameters)) assert.ok(name in declared, `main.bicep has no ${name}`);
    for (const [name, p] of Object.entries(declared)) {
      if (p.defaultValue === undefined) assert.ok(name in file.parameters, `${name} needs an azd env value`);
    }
  });

  it("defaults each azd variable to main.bicep's own default", () => {
    for (const [name, { value }] of Object.entries(file.parameters)) {
      const match = /^\$\{([A-Z_]+)=(.*)\}$/.exec(value);
      if (!match) continue;
      const declared = template.parameters?.[name]?.defaultValue;
      assert.equal(match[2], String(declared), `${name} (${match[1]})`);
    }
  });
});

describe("the builder VM", () => {
  const kit = ["Dockerfile.base", "Dockerfile.app", "Dockerfile.acr", "Dockerfile.fast", "safe_extract.py"];

  function builder() {
    const resources = deployedResources(template);
    const vm = propertiesOf(only(resources, "Microsoft.Compute/virtualMachines")) as {
      osProfile: { customData: string };
      networkProfile: { networkInterfaces: { id: string }[] };
    };
    return { resources, vm, cloudInit: Buffer.from(vm.osProfile.customData, "base64").toString("utf8") };
  }

  it("installs tools only through cloud-init, which cannot change once the VM exists", () => {
    const { cloudInit } = builder();
    assert.match(cloudInit, /^#cloud-config\n/);
    assert.doesNotMatch(cloudInit, /write_files|\/opt\/fastbuild/);
    for (const file of kit) {
      const content = readFileSync(`dockerfiles/${file}`);
      assert.ok(!cloudInit.includes(content.toString("base64")), `${file} is not embedded`);
      const firstLine =
        content
          .toString("utf8")
          .split("\n")
          .find((l) => l.trim().length > 8) ?? "";
      assert.ok(!cloudInit.includes(firstLine), `${file} is not embedded`);
    }
    for (const pkg of ["docker.io", "docker-buildx", "python3", "curl", "jq"])
      assert.match(cloudInit, new RegExp(pkg));
    assert.match(cloudInit, /InstallAzureCLIDeb/);
  });

  it("marks itself ready in /var/lib/fast-build/ready as its last step, once every tool is there", () => {
    const { cloudInit } = builder();
    const lines = cloudInit.trimEnd().split("\n");
    const last = lines[lines.length - 1] ?? "";
    assert.match(last, />\/var\/lib\/fast-build\/ready$/);
    for (const tool of ["docker", "az", "python3", "curl"]) {
      assert.match(
        last,
        new RegExp(`for tool in [^;]*\\b${tool}\\b[^;]*; do command -v "\\$tool" >/dev/null \\|\\| exit 1`),
      );
    }
  });

  it("reaches out only through a NAT gateway: no public IP on the VM, none left unattached", () => {
    const { resources, vm } = builder();
    const nicRef = vm.networkProfile.networkInterfaces[0]?.id ?? "";
    const nic = resources.find((r) => r.type === "Microsoft.Network/networkInterfaces" && r.id === nicRef);
    assert.ok(nic, `the VM's NIC ${nicRef} is deployed`);
    const ipConfigs = (propertiesOf(nic).ipConfigurations as { properties: Record<string, unknown> }[]) ?? [];
    for (const c of ipConfigs)
      assert.equal(c.properties.publicIPAddress, undefined, "no public IP on the NIC");

    // The NIC's subnet: `vnet.properties.subnets[i].id`, read back from the VNet as deployed.
    const subnetRef = String((ipConfigs[0]?.properties.subnet as { id: string }).id);
    const match = /^ref\((.+)\)\.subnets\.(\d+)\.id$/.exec(subnetRef);
    assert.ok(match, `subnet reference ${subnetRef}`);
    const vnet = resources.find((r) => r.id === match[1]);
    assert.ok(vnet);
    const subnet = (propertiesOf(vnet).subnets as { properties: Record<string, unknown> }[])[
      Number(match[2])
    ]!.properties;
    assert.equal(subnet.defaultOutboundAccess, false, "no implicit outbound access");

    const nat = resources.find((r) => r.id === (subnet.natGateway as { id: string } | undefined)?.id);
    assert.ok(nat, "the builder subnet has a NAT gateway");
    const natIps = (propertiesOf(nat).publicIpAddresses as { id: string }[]).map((p) => p.id);
    assert.equal(natIps.length, 1);
    const publicIps = resources.filter((r) => r.type === "Microsoft.Network/publicIPAddresses");
    assert.deepEqual(
      publicIps.map((r) => r.id),
      natIps,
      "the only public IP is the NAT gateway's",
    );

    const nsg = resources.find(
      (r) => r.id === (subnet.networkSecurityGroup as { id: string } | undefined)?.id,
    );
    assert.ok(nsg, "the builder subnet has a network security group");
    const rules =
      (propertiesOf(nsg).securityRules as { properties: { direction: string; access: string } }[]) ?? [];
    assert.ok(!rules.some((r) => r.properties.direction === "Inbound" && r.properties.access === "Allow"));
  });
});
