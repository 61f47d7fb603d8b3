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
