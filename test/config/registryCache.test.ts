import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "../../src/config/index.js";
import { ConfigError } from "../../src/core/errors.js";
import { ENVIRONMENT, MINIMAL_SETTINGS } from "./settings.js";

const withEnvironment = (environment: Record<string, unknown>) => ({
  ...MINIMAL_SETTINGS,
  FASTBUILD_ENVIRONMENTS: JSON.stringify({ dev: { ...ENVIRONMENT, ...environment } }),
});

describe("environment registryCache", () => {
  it("is on when an environment does not say", () => {
    assert.equal(loadConfig(MINIMAL_SETTINGS).environments.dev?.registryCache, undefined);
  });

  it("accepts false (and true)", () => {
    assert.equal(
      loadConfig(withEnvironment({ registryCache: false })).environments.dev?.registryCache,
      false,
    );
    assert.equal(loadConfig(withEnvironment({ registryCache: true })).environments.dev?.registryCache, true);
  });

  it("refuses anything but a boolean, naming the setting and what to write", () => {
    let problems: readonly string[] = [];
    try {
      loadConfig(withEnvironment({ registryCache: "off" }));
      assert.fail("the settings were accepted");
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      problems = error.problems;
    }
    assert.ok(
      problems.some(
        (p) => p.startsWith("FASTBUILD_ENVIRONMENTS.dev.registryCache:") && p.includes("true or false"),
      ),
      problems.join("\n"),
    );
  });
});
