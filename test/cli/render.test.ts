import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  formatDuration,
  phaseLabel,
  renderPoll,
  renderStatus,
  renderSummary,
  splitLogLines,
} from "../../src/cli/render.js";
import type { BuildStatus } from "../../src/core/api.js";

function status(overrides: Partial<BuildStatus> = {}): BuildStatus {
  return {
    buildId: "b-1",
    environment: "dev",
    phase: "queued",
    terminal: false,
    steps: [],
    builder: { name: "vm-1" },
    timings: { createdAt: "2025-01-01T00:00:00Z" },
    ...overrides,
  };
}

describe("renderStatus", () => {
  it("announces the first status with its phase and queue position", () => {
    assert.deepEqual(renderStatus(status({ queuePosition: 2 }), undefined), [
      "▸ queued: waiting for the builder",
      "  position in queue: 2",
    ]);
  });

  it("prints nothing when nothing changed", () => {
    const s = status({ phase: "building", steps: [{ name: "app", state: "running" }] });
    assert.deepEqual(renderStatus(s, s), []);
  });

  it("reports the builder's power state and a step finishing with its duration", () => {
    const before = status({ phase: "building", steps: [{ name: "download", state: "running" }] });
    const after = status({
      phase: "building",
      builder: { name: "vm-1", powerState: "running" },
      steps: [
        {
          name: "download",
          state: "succeeded",
          startedAt: "2025-01-01T00:00:00Z",
          endedAt: "2025-01-01T00:00:02.500Z",
        },
        { name: "base", state: "running" },
      ],
    });
    assert.deepEqual(renderStatus(after, before), [
      "  builder vm-1: running",
      "  ✓ download (2.5 s)",
      "  • base…",
    ]);
  });

  it("reports cache, image and revision health as they appear", () => {
    const before = status({ phase: "building" });
    const after = status({
      phase: "deploying",
      cache: { base: "hit", skipped: false, baseKey: "0123456789abcdef0123" },
      image: { reference: "reg.azurecr.io/app:b-1", digest: "sha256:abc" },
      revision: { name: "app--b-1", provisioningState: "Provisioning", healthState: "None" },
    });
    assert.deepEqual(renderStatus(after, before), [
      "▸ deploying to Container Apps",
      "  base image: cache hit (0123456789ab)",
      "  image: reg.azurecr.io/app:b-1@sha256:abc",
      "  revision app--b-1: Provisioning, None",
    ]);
  });

  it("shows an error with its hint once", () => {
    const failed = status({
      phase: "failed",
      terminal: true,
      steps: [{ name: "app", state: "failed" }],
      error: {
        code: "AppBuildFailed",
        message: "cargo build failed",
        hint: "Fix the compile error shown above.",
      },
    });
    const lines = renderStatus(
      failed,
      status({ phase: "building", steps: [{ name: "app", state: "running" }] }),
    );
    assert.deepEqual(lines, [
      "  ✗ app failed",
      "✗ cargo build failed [AppBuildFailed]",
      "  hint: Fix the compile error shown above.",
    ]);
    assert.deepEqual(renderStatus(failed, failed), []);
  });

  it("says when the source was unchanged and the build skipped", () => {
    const lines = renderStatus(
      status({ phase: "deploying", cache: { base: "hit", skipped: true } }),
      status({ phase: "building" }),
    );
    assert.ok(lines.includes("  source unchanged: reusing the image built before"));
  });
});

describe("renderPoll", () => {
  it("leaves out the builder's machine-readable result line", () => {
    const line = '{"fastbuild":"result","version":1,"buildId":"b-1","status":"succeeded"}';
    assert.deepEqual(renderPoll(["fastbuild[push] done", line], status(), status()), [
      "  │ fastbuild[push] done",
    ]);
  });

  it("prints the log lines that arrived before the phase change they led to", () => {
    const building = status({ phase: "building", steps: [{ name: "build", state: "running" }] });
    const deploying = status({
      phase: "deploying",
      steps: [
        { name: "build", state: "succeeded" },
        { name: "deploy", state: "running" },
      ],
    });
    assert.deepEqual(renderPoll(["fastbuild[push] pushed", "fastbuild[push] done"], deploying, building), [
      "  │ fastbuild[push] pushed",
      "  │ fastbuild[push] done",
      "▸ deploying to Container Apps",
      "  ✓ build",
      "  • deploy…",
    ]);
  });

  it("ends with the drained log, then the terminal status lines", () => {
    const building = status({ phase: "building", steps: [{ name: "build", state: "running" }] });
    const failed = status({
      phase: "failed",
      terminal: true,
      steps: [{ name: "build", state: "failed" }],
      error: { code: "BuildFailed", message: "the build failed" },
    });
    assert.deepEqual(renderPoll(["error: linker failed", "exit 21 (no newline)"], failed, building), [
      "  │ error: linker failed",
      "  │ exit 21 (no newline)",
      "  ✗ build failed",
      "✗ the build failed [BuildFailed]",
    ]);
  });

  it("prints only the status when no log arrived", () => {
    assert.deepEqual(renderPoll([], status({ queuePosition: 1 }), undefined), [
      "▸ queued: waiting for the builder",
      "  position in queue: 1",
    ]);
  });
});

describe("renderSummary", () => {
  it("sums up a successful deploy", () => {
    const lines = renderSummary(
      status({
        phase: "succeeded",
        terminal: true,
        image: { reference: "reg.azurecr.io/app@sha256:abc" },
        revision: { name: "app--b-1", provisioningState: "Provisioned", healthState: "Healthy" },
        cache: { base: "miss", skipped: false },
        timings: { createdAt: "x", stepsMs: { base: 61_000, app: 9_400 } },
      }),
      { elapsedMs: 95_000 },
    );
    assert.deepEqual(lines, [
      "✓ build succeeded (b-1)",
      "  image     reg.azurecr.io/app@sha256:abc",
      "  revision  app--b-1 (Provisioned, Healthy)",
      "  cache     base miss",
      "  steps     base 1 min 01 s, app 9.4 s",
      "  total     1 min 35 s",
    ]);
  });

  it("says when the app already ran the image and nothing was deployed", () => {
    const message =
      "container app hello already runs reg/app@sha256:abc: nothing to deploy, revision hello--b-0 keeps serving";
    const done = status({
      phase: "succeeded",
      terminal: true,
      revision: { name: "hello--b-0", provisioningState: "Provisioned", healthState: "Healthy" },
      deployment: { reference: "reg/app@sha256:abc", unchanged: true, message },
    });
    assert.deepEqual(renderStatus(done, status({ phase: "building" })).slice(-2), [
      "  revision hello--b-0: Provisioned, Healthy",
      `  ${message}`,
    ]);
    const lines = renderSummary(done, { elapsedMs: 1_000 });
    assert.ok(lines.includes("  revision  hello--b-0 (Provisioned, Healthy)"));
    assert.ok(lines.includes("  deploy    nothing to deploy: the app already runs this image"));
  });

  it("shows the error, hint and log tail of a failed build", () => {
    const lines = renderSummary(
      status({
        phase: "timed-out",
        terminal: true,
        error: {
          code: "BuildTimeout",
          message: "the build ran over 60 min",
          hint: "Raise FASTBUILD_BUILD_TIMEOUT_MINUTES.",
        },
        logTail: ["Compiling foo", "still compiling"],
      }),
      { elapsedMs: 500 },
    );
    assert.equal(lines[0], "✗ build timed out (b-1)");
    assert.ok(lines.includes("  hint      Raise FASTBUILD_BUILD_TIMEOUT_MINUTES."));
    assert.deepEqual(lines.slice(-3), ["  last log lines:", "    Compiling foo", "    still compiling"]);
  });
});

describe("log lines and labels", () => {
  it("keeps an unfinished line for the next chunk and collapses carriage-return progress", () => {
    const first = splitLogLines("", "one\ntw");
    assert.deepEqual(first, { lines: ["one"], rest: "tw" });
    assert.deepEqual(splitLogLines(first.rest, "o\r\n10%\r50%\r100%\n"), {
      lines: ["two", "100%"],
      rest: "",
    });
  });

  it("labels the live status with the running step", () => {
    assert.equal(
      phaseLabel(status({ phase: "building", steps: [{ name: "base", state: "running" }] })),
      "building: base",
    );
    assert.equal(phaseLabel(status({ queuePosition: 3 })), "queued: waiting for the builder (position 3)");
  });

  it("formats durations for people", () => {
    assert.deepEqual(
      [formatDuration(850), formatDuration(12_340), formatDuration(245_000)],
      ["850 ms", "12.3 s", "4 min 05 s"],
    );
  });
});
