/**
 * The whole product end to end, as `npm run sim` runs it: the real `fast-build dev` process, the
 * function app's own registrations on the local host, the orchestrator on durable-functions' replay
 * engine, the real gateways over HTTPS to the ARM emulator, Azurite, and the real build.sh building
 * images with buildah into a local registry.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, it } from "node:test";
import { runSimulation, type SimReport } from "../../sim/simulation.js";

let report: SimReport;
let scratch: string;
let narration = "";
let cliOutput = "";

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "fb-sim-"));
  const out = new PassThrough().setEncoding("utf8");
  out.on("data", (text: string) => (narration += text));
  const cli = new PassThrough().setEncoding("utf8");
  cli.on("data", (text: string) => (cliOutput += text));
  report = await runSimulation({ scratch, out, cliOutput: cli, vmStartMs: 300 });
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("npm run sim", () => {
  it("runs three builds that all succeed through the CLI", () => {
    assert.deepEqual(
      report.builds.map((b) => [b.exitCode, b.status?.phase]),
      [
        [0, "succeeded"],
        [0, "succeeded"],
        [0, "succeeded"],
      ],
      cliOutput,
    );
  });

  it("builds the dependency base once, reuses it for a source change, and skips an unchanged source", () => {
    const [first, second, third] = report.builds.map((b) => b.status?.cache);
    assert.deepEqual([first?.base, first?.skipped], ["miss", false]);
    assert.deepEqual([second?.base, second?.skipped], ["hit", false]);
    assert.equal(third?.skipped, true);
    assert.equal(first?.baseKey, second?.baseKey);
  });

  it("deploys each changed build's own revision by digest; the unchanged one deploys nothing", () => {
    const [first, second, third] = report.builds.map((b) => b.status);
    const deployState = (s: typeof first) => s?.steps.find((step) => step.name === "deploy")?.state;
    assert.deepEqual(
      [first, second, third].map((s) => [deployState(s), s?.deployment?.unchanged]),
      [
        ["succeeded", false],
        ["succeeded", false],
        ["skipped", true],
      ],
    );
    assert.notEqual(first?.revision?.name, second?.revision?.name);
    // Build 3 reports the revision build 2 created, which keeps serving.
    assert.equal(third?.revision?.name, second?.revision?.name);
    assert.equal(third?.revision?.healthState, "Healthy");
    assert.equal(report.app?.latestReadyRevisionName, second?.revision?.name);
    assert.equal(report.app?.revisions.length, 3, "the initial revision and one per changed build");
    assert.match(report.app?.images.app ?? "", /\/hello\/app@sha256:[0-9a-f]{64}$/);
    assert.equal(report.app?.images.app, second?.deployment?.reference);
    assert.equal(report.deployedOutput.trim(), "hello again");
    assert.match(narration, /nothing to deploy: the app already runs this image/);
  });

  it("measures the first build after warm vs cold: each scenario's build succeeds and the medians are narrated", () => {
    const measured = report.warm?.measurements.map((m) => [m.scenario, m.exitCode, m.phase]);
    assert.deepEqual(measured, [
      ["cold", 0, "succeeded"],
      ["warm", 0, "succeeded"],
      ["resume", 0, "succeeded"],
      ["resume+warm", 0, "succeeded"],
    ]);
    // Numbers are printed, never asserted: they depend on the machine.
    for (const scenario of ["cold", "warm", "resume", "resume+warm"]) {
      assert.match(narration, new RegExp(`median ${scenario.replace("+", "\\+")} +\\d+\\.\\d s`));
    }
  });

  it("streams the builder's live log to the developer, in time order", () => {
    assert.match(cliOutput, /fastbuild\[app\]/);
    assert.match(narration, /the deployed image says: hello again/);
    // Each build's output: its log lines, then the summary last.
    const builds = cliOutput.split(/^build \S+ started for sim$/m).slice(1);
    assert.equal(builds.length, 3);
    for (const [index, text] of builds.entries()) {
      const lines = text.split("\n");
      const lastLog = lines.findLastIndex((line) => line.startsWith("  │ "));
      const summary = lines.findIndex((line) => line.startsWith("✓ build succeeded"));
      if (index < 2) {
        assert.ok(lastLog > 0 && lastLog < summary, `build ${index + 1}: the log precedes the summary`);
      } else {
        // The registry had this source's image: the builder never ran, so there is no log to stream.
        assert.ok(summary > 0, "build 3 ends with its summary");
        assert.equal(lastLog, -1, "build 3 touched no builder: no builder log");
      }
      const deploying = lines.indexOf("▸ deploying to Container Apps");
      if (index < 2) {
        assert.ok(deploying > 0, `build ${index + 1} deploys`);
        // The log is the run command's output blob, which the handler appends to on its own clock
        // (every 15 s on Azure), while the result comes by callback at once: the log's last lines can
        // arrive after the deploy began, so they may print below "deploying". What the developer is
        // promised: every line, in the builder's time order, before the summary.
        const pushed = lines.findIndex((line) => /fastbuild\[push\] done/.test(line));
        assert.ok(
          pushed > 0 && pushed < summary,
          `build ${index + 1}: the push is logged before the summary`,
        );
        const times = lines.flatMap((line) => /^ {2}│ (\d\d:\d\d:\d\d) fastbuild/.exec(line)?.[1] ?? []);
        assert.deepEqual(times, [...times].sort(), `build ${index + 1}: the log prints in time order`);
      }
    }
  });

  it("promotes the image sim runs to staging by digest, then rolls sim back to its previous image", () => {
    const promotion = report.promote?.promotion;
    const rollback = report.promote?.rollback;
    assert.equal(promotion?.exitCode, 0);
    assert.equal(promotion?.status?.phase, "succeeded");
    const [first, second] = report.builds.map((b) => b.status?.deployment?.reference);
    assert.equal(`@${promotion?.status?.deploy.image.digest}`, second?.slice(second.indexOf("@")));
    assert.equal(promotion?.status?.deploy.import?.digestIdentical, true);
    assert.equal(promotion?.status?.revision?.healthState, "Healthy");
    assert.match(narration, /staging's registry has sha256:[0-9a-f]{64} \(the same digest\)/);
    assert.equal(rollback?.exitCode, 0);
    assert.equal(rollback?.status?.deployment?.reference, first);
    assert.equal(rollback?.status?.revision?.healthState, "Healthy");
  });
});
