import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BuildStatus } from "../../src/core/api.js";
import {
  finished,
  fitStatus,
  fitTail,
  initialStatus,
  jsonUtf16Bytes,
  POLL_LOG_TAIL_BUDGET_BYTES,
  projectStatus,
  STATUS_BUDGET_BYTES,
} from "../../src/core/status.js";

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

describe("fitting a status into its budget", () => {
  const at = "2030-01-01T00:10:00.000Z";
  const failed = (extra: Partial<BuildStatus> = {}, message = "the build failed"): BuildStatus => ({
    ...finished(initialStatus("build-00000001", "dev", "vm", "2030-01-01T00:00:00.000Z"), "failed", at, {
      code: "BuildFailed",
      message,
      hint: "See the log.",
    }),
    ...extra,
  });
  const lines = (char: string) => Array.from({ length: 20 }, (_, i) => `${i} ${char.repeat(300)}`);
  /** How JSON.stringify writes a lone surrogate (half of an astral-plane character cut in two). */
  const LONE = /\\ud[89a-f][0-9a-f]{2}/i;

  const assertFitted = (original: BuildStatus, fitted: BuildStatus) => {
    assert.ok(jsonUtf16Bytes(fitted) <= STATUS_BUDGET_BYTES, `${jsonUtf16Bytes(fitted)} bytes`);
    assert.equal(fitted.phase, original.phase);
    assert.equal(fitted.terminal, original.terminal);
    assert.deepEqual(fitted.steps, original.steps);
    assert.equal(fitted.error?.code, original.error?.code);
    assert.doesNotMatch(JSON.stringify(fitted), LONE);
  };

  it("leaves a status that fits as it is", () => {
    const status = failed({ logTail: ["error: x"] });
    assert.deepEqual(fitStatus(status), status);
  });

  for (const [what, char] of [
    ["quotes", '"'],
    ["tabs", "\t"],
    ["control characters", "\u0001"],
    ["astral-plane characters", "\u{1F600}"],
  ] as const) {
    it(`fits a tail of 20 lines of 300 ${what}, keeping the newest lines`, () => {
      const status = failed({ logTail: lines(char) });
      const fitted = fitStatus(status);
      assertFitted(status, fitted);
      assert.ok(fitted.logTail && fitted.logTail.length > 0, "some of the tail is still shown");
      assert.ok(fitted.logTail.at(-1)?.startsWith("19 "), "the newest line is kept");
    });
  }

  it("fits a 1 MB message next to a hostile tail, keeping the message's start", () => {
    const status = failed({ logTail: lines("\u0001") }, `cargo failed: ${'"'.repeat(1024 * 1024)}`);
    const fitted = fitStatus(status);
    assertFitted(status, fitted);
    assert.ok(fitted.error?.message.startsWith("cargo failed: "));
  });

  it("fits a status whose every text is huge, down to its essentials", () => {
    const huge = "\u0001".repeat(1024 * 1024);
    const status = failed(
      {
        logTail: lines("\u0001"),
        image: { reference: huge, digest: huge },
        cache: { base: "miss", skipped: false, baseKey: huge },
        revision: { name: huge, healthState: huge },
        deployment: { reference: huge, unchanged: false, message: huge },
        builder: { name: huge, powerState: huge },
        timings: {
          createdAt: "2030-01-01T00:00:00.000Z",
          stepsMs: Object.fromEntries(
            Array.from({ length: 10_000 }, (_, i) => [`${huge.slice(0, 50)}${i}`, i]),
          ),
        },
      },
      huge,
    );
    assertFitted(status, fitStatus(status));
  });

  it("keeps a tail within its budget whatever its lines escape to, newest line first", () => {
    for (const char of ['"', "\t", "\u0001", "\u{1F600}"]) {
      const tail = fitTail(lines(char), POLL_LOG_TAIL_BUDGET_BYTES);
      assert.ok(jsonUtf16Bytes(tail) <= POLL_LOG_TAIL_BUDGET_BYTES, JSON.stringify(char));
      assert.ok(tail.at(-1)?.startsWith("19 "));
      assert.doesNotMatch(JSON.stringify(tail), LONE);
    }
  });
});
