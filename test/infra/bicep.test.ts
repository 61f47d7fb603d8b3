import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, before } from "node:test";
import { environmentSchema, loadConfig } from "../../src/config/index.js";
import { CONTENT_STORE } from "../../src/core/sourceManifest.js";
import { MINIMAL_SETTINGS } from "../config/settings.js";
import { resourcesOf, type Template, type TemplateResource } from "./armExpressions.js";
import { bicepLint, compileMain } from "./compiledTemplate.js";

let template: Template;
before(() => {
  template = compileMain();
});

/** Every resource, modules expanded (modules compile to nested deployments holding their resources). */
function allResources(t: Template): TemplateResource[] {
  return resourcesOf(t).flatMap((r) =>
    r.type === "Microsoft.Resources/deployments"
      ? [r, ...allResources((r.properties as { template: Template }).template)]
      : [r],
  );
}

describe("infra/main.bicep", () => {
  it("compiles and lints without a warning", () => {
    assert.equal(bicepLint("infra/main.bicep"), "");
  });

  it("sees lint warnings, which the CLI prints on stderr with exit code 0", () => {
    const dir = mkdtempSync(join(tmpdir(), "bicep-lint-"));
    writeFileSync(join(dir, "unused.bicep"), "var unused = 1\n");
    assert.match(bicepLint(join(dir, "unused.bicep")), /no-unused-vars/);
    rmSync(dir, { recursive: true, force: true });
  });

  it("gives the function app, builder and container app managed identities", () => {
    const types = ["Microsoft.Web/sites", "Microsoft.Compute/virtualMachines", "Microsoft.App/containerApps"];
    for (const type of types) {
      const resource = allResources(template).find((r) => r.type === type && r.identity);
      assert.equal(resource?.identity?.type, "SystemAssigned", type);
    }
  });

  it("keeps storage keyless", () => {
    const account = allResources(template).find((r) => r.type === "Microsoft.Storage/storageAccounts");
    assert.equal(account?.properties?.allowSharedKeyAccess, false);
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

  it("deletes stored source contents after CONTENT_STORE.retentionDays, in the container the app is given", () => {
    interface Rule {
      name: string;
      definition: {
        filters: { prefixMatch: string[] };
        actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: number } } };
      };
    }
    const policy = allResources(template).find(
      (r) => r.type === "Microsoft.Storage/storageAccounts/managementPolicies",
    );
    const rules = (policy?.properties as { policy: { rules: Rule[] } }).policy.rules;
    // The app's default is the deployed container, so an app without the setting still finds it.
    const name = loadConfig(MINIMAL_SETTINGS).storage.contentContainer;
    const container = allResources(template).find(
      (r) => r.type === "Microsoft.Storage/storageAccounts/blobServices/containers" && r.name.includes(name),
    );
    assert.ok(container, `the content container ${name} is deployed`);
    const rule = rules.find((one) => one.definition.filters.prefixMatch.includes(`${name}/`));
    assert.equal(
      rule?.definition.actions.baseBlob.delete.daysAfterModificationGreaterThan,
      CONTENT_STORE.retentionDays,
    );
    const site = allResources(template).find((r) => r.type === "Microsoft.Web/sites");
    const settings = (site?.properties?.siteConfig as { appSettings: { name: string; value: string }[] })
      .appSettings;
    assert.ok(settings.some((s) => s.name === "FASTBUILD_CONTENT_CONTAINER"));
  });

  it("grants the builder push and the function app VM operation rights", () => {
    const compiled = JSON.stringify(template);
    assert.match(compiled, /8311e382-0749-4cb8-b61a-304f252e45ec/, "AcrPush");
    assert.match(compiled, /9980e02c-c2be-4d73-94e8-173b1dc7cf3c/, "Virtual Machine Contributor");
    assert.ok("FASTBUILD_API_URL" in (template.outputs ?? {}));
  });
});
