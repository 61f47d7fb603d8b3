import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { initialStatus, projectStatus } from "../../src/core/status.js";

describe("status projection", () => {
  const base = initialStatus("build-00000001", "dev", "vm", "2030-01-01T00:00:00.000Z");

  it("shows the orchestration's own status while it runs", () => {
    const view = {
      runtimeStatus: "Running",
      customStatus: base,
      output: null,
      createdTime: "t0",
      lastUpdatedTime: "t1",
    };
    assert.deepEqual(projectStatus("build-00000001", "dev", view), base);
  });

  it("turns an instance that crashed into a failed build with a reason", () => {
    const view = {
      runtimeStatus: "Failed",
      customStatus: base,
      output: "boom",
      createdTime: "t0",
      lastUpdatedTime: "t1",
    };
    const status = projectStatus("build-00000001", "dev", view);
    assert.equal(status.phase, "failed");
    assert.equal(status.terminal, true);
    assert.equal(status.error?.code, "OrchestrationFailed");
  });
});
