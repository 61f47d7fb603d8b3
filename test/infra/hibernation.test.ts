/**
 * `builderHibernation` in infra/main.bicep (compiled by the real Bicep compiler): the builder VM's
 * `additionalCapabilities.hibernationEnabled`, the guest's LinuxHibernateExtension, and the
 * environment's `idleShutdown` the function app gets, which its config accepts.
 */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { loadConfig } from "../../src/config/index.js";
import type { Template } from "./armExpressions.js";
import { compileMain, deployedResources, only, propertiesOf, TEST_PARAMETERS } from "./compiledTemplate.js";

let template: Template;
before(() => {
  template = compileMain();
});

function deployment(builderHibernation?: boolean) {
  const parameters =
    builderHibernation === undefined ? TEST_PARAMETERS : { ...TEST_PARAMETERS, builderHibernation };
  const resources = deployedResources(template, parameters);
  const vm = propertiesOf(only(resources, "Microsoft.Compute/virtualMachines")) as {
    additionalCapabilities?: { hibernationEnabled?: boolean };
  };
  const extensions = resources.filter((r) => r.type === "Microsoft.Compute/virtualMachines/extensions");
  const site = propertiesOf(only(resources, "Microsoft.Web/sites")) as {
    siteConfig: { appSettings: { name: string; value: string }[] };
  };
  const setting = (name: string) => site.siteConfig.appSettings.find((s) => s.name === name)?.value;
  // The one environment (its key is an expression the test evaluator leaves as written).
  const environments = JSON.parse(setting("FASTBUILD_ENVIRONMENTS") ?? "{}") as Record<
    string,
    Record<string, unknown>
  >;
  const [environment] = Object.values(environments);
  return { vm, extensions, environment };
}

describe("infra/main.bicep builderHibernation", () => {
  it("is off by default: no hibernation capability, no extension, the idle shutdown deallocates", () => {
    const { vm, extensions, environment } = deployment();
    assert.equal(vm.additionalCapabilities?.hibernationEnabled, false);
    assert.equal(extensions.length, 0);
    assert.equal(environment?.idleShutdown, "deallocate");
  });

  it("when on, enables hibernation on the VM, sets up the guest, and makes the idle shutdown hibernate", () => {
    const { vm, extensions, environment } = deployment(true);
    assert.equal(vm.additionalCapabilities?.hibernationEnabled, true);
    assert.equal(extensions.length, 1);
    const extension = propertiesOf(extensions[0]!) as { publisher: string; type: string };
    assert.deepEqual(
      { publisher: extension.publisher, type: extension.type },
      { publisher: "Microsoft.CPlat.Core", type: "LinuxHibernateExtension" },
    );
    assert.equal(environment?.idleShutdown, "hibernate");
  });

  it("passes an idleShutdown the function app's config accepts", () => {
    for (const on of [false, true]) {
      const { environment } = deployment(on);
      // The registry's login server is a deployment output, which the test evaluator cannot know.
      const deployed = { ...environment, registry: "crtest.azurecr.io" };
      const config = loadConfig({
        FASTBUILD_ENVIRONMENTS: JSON.stringify({ test: deployed }),
        AzureWebJobsStorage: "UseDevelopmentStorage=true",
      });
      assert.equal(config.environments.test?.idleShutdown, on ? "hibernate" : "deallocate");
    }
  });
});
