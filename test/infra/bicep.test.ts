import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, before } from "node:test";
import { environmentSchema } from "../../src/config/index.js";

// The real Bicep compiler (NuGet Azure.Bicep.CommandLine.linux-x64), installed by the script CI runs.
function bicep(...args: string[]): string {
  return execFileSync(bicepPath, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}
let bicepPath = "";

interface Resource {
  type: string;
  name: string;
  properties?: Record<string, unknown>;
  identity?: { type: string };
}
interface Template {
  resources: Record<string, Resource> | Resource[];
  outputs: Record<string, unknown>;
}

function allResources(template: Template): Resource[] {
  const list = Array.isArray(template.resources) ? template.resources : Object.values(template.resources);
  return list.flatMap((r) => {
    // Modules compile to nested deployments whose template holds their resources.
    if (r.type !== "Microsoft.Resources/deployments") return [r];
    return [r, ...allResources(r.properties?.template as Template)];
  });
}

let template: Template;
before(() => {
  try {
    bicepPath = execFileSync("bash", ["scripts/install-bicep.sh"], { encoding: "utf8" })
      .trim()
      .split("\n")
      .pop()!;
  } catch (error) {
    throw new Error(
      "The Bicep compiler could not be installed: run `bash scripts/install-bicep.sh` (needs dotnet).",
      {
        cause: error,
      },
    );
  }
  template = JSON.parse(bicep("build", "infra/main.bicep", "--stdout")) as Template;
});

describe("infra/main.bicep", () => {
  it("compiles and lints without a warning", () => {
    const output = execFileSync(bicepPath, ["lint", "infra/main.bicep"], { encoding: "utf8", stdio: "pipe" });
    assert.equal(output.trim(), "");
  });

  it("gives the function app, builder and container app managed identities", () => {
    const types = ["Microsoft.Web/sites", "Microsoft.Compute/virtualMachines", "Microsoft.App/containerApps"];
    for (const type of types) {
      const resource = allResources(template).find((r) => r.type === type && r.identity);
      assert.equal(resource?.identity?.type, "SystemAssigned", type);
    }
  });

  it("keeps storage keyless and the builder without a public IP", () => {
    const account = allResources(template).find((r) => r.type === "Microsoft.Storage/storageAccounts");
    assert.equal(account?.properties?.allowSharedKeyAccess, false);
    assert.ok(!allResources(template).some((r) => r.type === "Microsoft.Network/publicIPAddresses"));
  });

  it("passes the function app an environment with every field the config requires", () => {
    const site = allResources(template).find((r) => r.type === "Microsoft.Web/sites");
    const settings = (site?.properties?.siteConfig as { appSettings: { name: string }[] }).appSettings;
    assert.ok(settings.some((s) => s.name === "FASTBUILD_ENVIRONMENTS"));
    const compiled = JSON.stringify(template);
    const required = Object.entries(environmentSchema.shape)
      .filter(([, schema]) => !schema.safeParse(undefined).success)
      .map(([key]) => key);
    for (const key of required) assert.match(compiled, new RegExp(`"${key}":`), key);
  });

  it("installs the repository's build kit on the builder through cloud-init", () => {
    const compiled = JSON.stringify(template);
    for (const file of ["Dockerfile.base", "Dockerfile.app", "safe_extract.py"]) {
      const content = readFileSync(join("dockerfiles", file)).toString("base64");
      assert.ok(compiled.includes(content), `${file} is embedded as it is in dockerfiles/`);
      assert.match(compiled, new RegExp(`/opt/fastbuild/dockerfiles/`));
    }
  });

  it("grants the builder push and the function app VM operation rights", () => {
    const compiled = JSON.stringify(template);
    assert.match(compiled, /8311e382-0749-4cb8-b61a-304f252e45ec/, "AcrPush");
    assert.match(compiled, /9980e02c-c2be-4d73-94e8-173b1dc7cf3c/, "Virtual Machine Contributor");
    assert.ok("FASTBUILD_API_URL" in template.outputs);
  });
});
