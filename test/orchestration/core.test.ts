import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BuildStatus } from "../../src/core/api.js";
import { BUILD_ORCHESTRATOR } from "../../src/core/activityContract.js";
import { revisionSuffix } from "../../src/core/buildInput.js";
import { PermanentError, TransientError } from "../../src/core/errors.js";
import { decodeActivityFailure, encodeActivityError, nextRetryDelayMs, RETRY } from "../../src/core/retry.js";
import { initialStatus, projectStatus } from "../../src/core/status.js";
import { OrchestrationDriver } from "@fast-build/local-cloud/durable/driver";
import { buildOrchestrator, deployReference } from "../../src/orchestration/build.js";

describe("activity failures across the durable boundary", () => {
  it("keeps code, hint, retryability and Retry-After of a typed error", () => {
    const thrown = encodeActivityError(
      new TransientError("throttled", { code: "TooManyRequests", hint: "wait", retryAfterMs: 7000 }),
    );
    // What the orchestrator sees: the host's text around the message.
    const seen = new Error(`Activity function 'x' failed: ${thrown.message} \n stack…`);
    assert.deepEqual(decodeActivityFailure(seen), {
      code: "TooManyRequests",
      message: "throttled",
      hint: "wait",
      retryable: true,
      retryAfterMs: 7000,
    });
  });

  it("fails fast on a permanent error and backs off (honouring Retry-After) on a transient one", () => {
    const permanent = decodeActivityFailure(encodeActivityError(new PermanentError("no", { code: "Nope" })));
    assert.equal(nextRetryDelayMs(RETRY.arm, 1, permanent), undefined);
    const transient = { code: "T", message: "t", retryable: true, retryAfterMs: 50_000 };
    assert.equal(nextRetryDelayMs(RETRY.arm, 1, transient), 50_000);
    assert.equal(nextRetryDelayMs(RETRY.arm, 2, { ...transient, retryAfterMs: undefined }), 4_000);
    assert.equal(nextRetryDelayMs(RETRY.arm, RETRY.arm.maxAttempts, transient), undefined);
  });
});

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

  it("derives a valid Container Apps revision suffix from the build id", () => {
    assert.match(revisionSuffix("build-0123456789abcdef0123"), /^[a-z][a-z0-9-]{0,24}$/);
  });
});

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

describe("deploy reference", () => {
  const digest = `sha256:${"d".repeat(64)}`;

  it("pins the repository to the reported digest, dropping the tag", () => {
    assert.equal(deployReference("reg.azurecr.io/team/app:b-1", digest), `reg.azurecr.io/team/app@${digest}`);
  });

  it("keeps a registry's port, and replaces a digest already in the reference", () => {
    assert.equal(
      deployReference("127.0.0.1:5000/hello/app:src-1", digest),
      `127.0.0.1:5000/hello/app@${digest}`,
    );
    assert.equal(deployReference("127.0.0.1:5000/hello/app", digest), `127.0.0.1:5000/hello/app@${digest}`);
    assert.equal(
      deployReference(`reg.azurecr.io/app:b-1@sha256:${"e".repeat(64)}`, digest),
      `reg.azurecr.io/app@${digest}`,
    );
  });

  it("falls back to the reference as given without a well-formed digest", () => {
    assert.equal(deployReference("reg.azurecr.io/app:b-1", undefined), "reg.azurecr.io/app:b-1");
    assert.equal(deployReference("reg.azurecr.io/app:b-1", "sha256:abc"), "reg.azurecr.io/app:b-1");
    assert.equal(deployReference("reg.azurecr.io/app:b-1", "latest"), "reg.azurecr.io/app:b-1");
  });
});
