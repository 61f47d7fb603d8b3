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
import { runSimulation, type SimReport } from "../../src/local/sim.js";

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

  it("deploys each build's own revision and the image serves the changed source", () => {
    const last = report.builds.at(-1)?.status;
    assert.equal(report.app?.latestReadyRevisionName, last?.revision?.name);
    assert.equal(last?.revision?.healthState, "Healthy");
    assert.equal(report.deployedOutput.trim(), "hello again");
  });

  it("streams the builder's live log to the developer", () => {
    assert.match(cliOutput, /fastbuild\[app\]/);
    assert.match(narration, /the deployed image says: hello again/);
  });
});
