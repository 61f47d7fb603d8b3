import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "../../src/config/index.js";
import { ConfigError } from "../../src/core/errors.js";
import { ENVIRONMENT, MINIMAL_SETTINGS } from "./settings.js";

const withEnvironments = (environments: Record<string, unknown>): Record<string, string> => ({
  ...MINIMAL_SETTINGS,
  FASTBUILD_ENVIRONMENTS: JSON.stringify(environments),
});

function problems(settings: Record<string, string>): readonly string[] {
  try {
    loadConfig(settings);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  assert.fail("the settings were accepted");
}

describe("environment supersede", () => {
  it("leaves the setting unset when an environment does not say (the name decides: src/core/supersede.ts)", () => {
    assert.equal(loadConfig(MINIMAL_SETTINGS).environments.dev?.supersede, undefined);
  });

  it("accepts true and false", () => {
    const config = loadConfig(
      withEnvironments({
        dev: { ...ENVIRONMENT, supersede: false },
        qa: { ...ENVIRONMENT, supersede: true },
      }),
    );
    assert.equal(config.environments.dev?.supersede, false);
    assert.equal(config.environments.qa?.supersede, true);
  });

  for (const value of ["yes", 1, null]) {
    it(`refuses supersede ${JSON.stringify(value)}, naming the setting and what it takes`, () => {
      const found = problems(withEnvironments({ dev: { ...ENVIRONMENT, supersede: value } }));
      assert.equal(found.length, 1, found.join("\n"));
      assert.match(found[0] ?? "", /^FASTBUILD_ENVIRONMENTS\.dev\.supersede: true or false/);
    });
  }
});
