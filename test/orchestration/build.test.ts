import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BuildStatus } from "../../src/core/api.js";
import { BUILD_ORCHESTRATOR } from "../../src/core/activityContract.js";
import { OrchestrationDriver } from "@fast-build/local-cloud/durable/driver";
import { buildOrchestrator } from "../../src/orchestration/build.js";

describe("build orchestrator input", () => {
  it("ends an invalid input as failed without echoing its callback token", async () => {
    const input = { buildId: "build-00000002", environment: "dev", callbackToken: "short-secret-token" };
    const driver = new OrchestrationDriver({
      name: BUILD_ORCHESTRATOR,
      orchestrator: buildOrchestrator,
      instanceId: "build-00000002",
      input,
      activities: new Map(),
    });
    const instance = await driver.run();
    const status = instance.output as BuildStatus;
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "InvalidInput");
    assert.equal(JSON.stringify(status).includes("short-secret-token"), false);
  });
});
