import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "../../src/config/index.js";
import { ConfigError } from "../../src/core/errors.js";
import { ENVIRONMENT, MINIMAL_SETTINGS } from "./settings.js";

const withEnvironments = (environments: Record<string, unknown>, extra: Record<string, string> = {}) => ({
  ...MINIMAL_SETTINGS,
  FASTBUILD_ENVIRONMENTS: JSON.stringify(environments),
  ...extra,
});

/** The problems `loadConfig` reports for `settings`, or fails when it accepts them. */
function problems(settings: Record<string, string>): readonly string[] {
  try {
    loadConfig(settings);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
  assert.fail("the settings were accepted");
}

describe("environment idleShutdown", () => {
  it("deallocates when an environment does not say", () => {
    assert.equal(loadConfig(MINIMAL_SETTINGS).environments.dev?.idleShutdown, undefined);
  });

  it("accepts hibernate with the latest compute profile", () => {
    const config = loadConfig(withEnvironments({ dev: { ...ENVIRONMENT, idleShutdown: "hibernate" } }));
    assert.equal(config.environments.dev?.idleShutdown, "hibernate");
  });

  it("refuses an unknown idle shutdown action, naming the setting", () => {
    const found = problems(withEnvironments({ dev: { ...ENVIRONMENT, idleShutdown: "suspend" } }));
    assert.ok(
      found.some((p) => p.startsWith("FASTBUILD_ENVIRONMENTS.dev.idleShutdown:")),
      found.join("\n"),
    );
  });

  it("refuses hibernate with the Azure Stack Hub profile, which has no hibernate parameter", () => {
    const found = problems(
      withEnvironments(
        { dev: { ...ENVIRONMENT, idleShutdown: "hibernate" } },
        { FASTBUILD_COMPUTE_PROFILE: "2020-09-01-hybrid" },
      ),
    );
    assert.equal(found.length, 1, found.join("\n"));
    assert.match(
      found[0] ?? "",
      /^FASTBUILD_ENVIRONMENTS\.dev\.idleShutdown: "hibernate" needs Compute api-version 2021-03-01/,
    );
    assert.match(found[0] ?? "", /set "deallocate" or remove the setting/);
  });

  it("accepts deallocate with the Azure Stack Hub profile", () => {
    const config = loadConfig(
      withEnvironments(
        { dev: { ...ENVIRONMENT, idleShutdown: "deallocate" } },
        { FASTBUILD_COMPUTE_PROFILE: "2020-09-01-hybrid" },
      ),
    );
    assert.equal(config.environments.dev?.idleShutdown, "deallocate");
  });

  it("refuses environments that share a builder but disagree on its idle shutdown", () => {
    const found = problems(
      withEnvironments({
        dev: { ...ENVIRONMENT, idleShutdown: "hibernate" },
        test: { ...ENVIRONMENT, containerApp: "app-test" },
      }),
    );
    assert.equal(found.length, 1, found.join("\n"));
    assert.match(
      found[0] ?? "",
      /^FASTBUILD_ENVIRONMENTS\.test\.idleShutdown: "deallocate", but environment dev shares builder builder with "hibernate"/,
    );
  });
});
