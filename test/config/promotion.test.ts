import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "../../src/config/index.js";
import { ConfigError } from "../../src/core/errors.js";
import { ENVIRONMENT, MINIMAL_SETTINGS } from "./settings.js";

const withEnvironment = (extra: Record<string, unknown>, settings: Record<string, string> = {}) =>
  loadConfig({
    ...MINIMAL_SETTINGS,
    FASTBUILD_ENVIRONMENTS: JSON.stringify({ dev: { ...ENVIRONMENT, ...extra } }),
    ...settings,
  });

const problems = (run: () => unknown): readonly string[] => {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
};

describe("promotion settings", () => {
  it("reads registryResource, approval (default 72 hours) and FASTBUILD_AUTH", () => {
    const config = withEnvironment(
      {
        registryResource: { resourceGroup: "rg-reg", name: "myregistry" },
        approval: { required: true, approvers: ["alice@contoso.com"] },
      },
      { FASTBUILD_AUTH: "appservice" },
    );
    assert.deepEqual(config.environments.dev?.registryResource, {
      resourceGroup: "rg-reg",
      name: "myregistry",
    });
    assert.deepEqual(config.environments.dev?.approval, {
      required: true,
      approvers: ["alice@contoso.com"],
      timeoutHours: 72,
    });
    assert.deepEqual(config.auth, { mode: "appservice" });
    assert.deepEqual(loadConfig(MINIMAL_SETTINGS).auth, { mode: "none" });
  });

  it("refuses at start a required approval with nobody to give it, a bad timeout, a bad registry name and an unknown auth mode, together", () => {
    const found = problems(() =>
      withEnvironment(
        {
          registryResource: { resourceGroup: "rg-reg", name: "my-registry" },
          approval: { required: true, approvers: [], timeoutHours: 24 * 365 },
        },
        { FASTBUILD_AUTH: "basic" },
      ),
    );
    assert.ok(
      found.some((p) => /FASTBUILD_AUTH/.test(p)),
      found.join("\n"),
    );
  });

  it("names each bad promotion setting of an environment", () => {
    const found = problems(() =>
      withEnvironment({
        registryResource: { resourceGroup: "rg-reg", name: "my-registry" },
        approval: { required: true, approvers: [], timeoutHours: 24 * 365 },
      }),
    );
    assert.ok(
      found.some((p) => /registryResource\.name: 5-50 letters and digits/.test(p)),
      found.join("\n"),
    );
    assert.ok(
      found.some((p) => /approval\.timeoutHours/.test(p)),
      found.join("\n"),
    );
  });

  it("refuses a required approval with nobody to give it", () => {
    const found = problems(() => withEnvironment({ approval: { required: true, approvers: [] } }));
    assert.deepEqual(found, [
      "FASTBUILD_ENVIRONMENTS.dev.approval.approvers: a required approval needs at least one approver",
    ]);
  });
});
