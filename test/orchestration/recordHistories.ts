/**
 * Records the histories of a representative set of builds on the local cloud (the e2e scenarios
 * of build.e2e.test.ts) into `test/fixtures/histories/<version>/`, <version> being package.json's:
 * run `npm run record-histories` at each release and commit the folder. histories.test.ts then
 * replays every release's histories on the current orchestrator, as Azure replays in-flight
 * instances on newly deployed code.
 *
 * Deterministic enough to diff: fixed build ids, inputs and callback token, a virtual clock from
 * START, and the registry's random port written as a fixed host. What still differs from one
 * recording to the next: how many polls a build needed (the emulator's VM and run command move in
 * real time) and the wall-clock values activities return (lease expiry, VM minutes). It runs with node's test runner, one test per fixture, so a scenario that does not
 * end as expected says so and writes nothing.
 */
import assert from "node:assert/strict";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import * as prettier from "prettier";
import type { BuildPhase, BuildStatus } from "../../src/core/api.js";
import { BUILD_EVENTS, builderKey } from "../../src/core/buildInput.js";
import { mutateRecord } from "../../src/core/lease.js";
import type { OrchestrationDriver } from "@fast-build/local-cloud/durable/driver";
import { arrival, inFlightCuts } from "@fast-build/local-cloud/durable/replayCheck";
import { pushImage } from "../azure/registryImages.js";
import { FIXTURE_CALLBACK_TOKEN, HISTORIES_DIR, type HistoryFixture } from "./historyFixtures.js";
import {
  arm,
  DIGEST,
  driverFor,
  holdLease,
  images,
  leases,
  newInput,
  REG,
  resultLine,
  runBuild,
  runUntilStopped,
  scenario,
  skippedBuild,
  succeed,
  until,
  useLocalCloud,
  type Scenario,
} from "./support.js";

/** Written for the registry's `127.0.0.1:<random port>` in every fixture. */
const REGISTRY_HOST = "registry.fixture.test";

const release = (
  JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;
const folder = join(HISTORIES_DIR, release);

/** A fixed input per fixture: the build id names it. */
const fixedInput = (s: Scenario, name: string, overrides: Parameters<typeof newInput>[1] = {}) =>
  newInput(s, { buildId: `fixture-${name}`, callbackToken: FIXTURE_CALLBACK_TOKEN, ...overrides });

async function save(name: string, what: string, driver: OrchestrationDriver, phase: BuildPhase) {
  const status = driver.status();
  assert.ok(status.runtimeStatus === "Completed" || status.runtimeStatus === "Failed", status.runtimeStatus);
  assert.equal((status.output as BuildStatus).phase, phase, JSON.stringify(status.output));
  const history = driver.getHistory();
  const fixture: HistoryFixture = {
    release,
    name,
    scenario: what,
    orchestrator: driver.name,
    schema: driver.schema,
    instanceId: driver.instanceId,
    input: status.input,
    runtimeStatus: status.runtimeStatus,
    output: status.output,
    customStatus: status.customStatus,
    inFlight: inFlightCuts(history).map((cut) => ({ cut, arriving: arrival(history, cut) })),
    history,
  };
  const text = JSON.stringify(fixture).replaceAll(REG, REGISTRY_HOST);
  assert.doesNotMatch(text, /sig=|127\.0\.0\.1:\d+/, "no SAS and no local port in a fixture");
  const path = join(folder, `${name}.json`);
  const config = await prettier.resolveConfig(path);
  await writeFile(path, await prettier.format(text, { ...config, filepath: path }));
}

/** The builder's callback arrives before its script exits (build.sh posts, then prints). */
const callbackThenExit =
  (driver: () => OrchestrationDriver | undefined): Parameters<typeof arm.setRunCommandExecutor>[0] =>
  async (run) => {
    const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
    await pushImage(images.url, "team/app", buildId);
    driver()?.raiseEvent(BUILD_EVENTS.buildCompleted, JSON.parse(resultLine(buildId)));
    return succeed(() => ({}), false)(run);
  };

const uploaded = (d: OrchestrationDriver) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {});

useLocalCloud();

describe(`record build histories of release ${release}`, { concurrency: false }, () => {
  before(async () => {
    await rm(folder, { recursive: true, force: true });
    await mkdir(folder, { recursive: true });
  });

  for (const schema of ["V3", "V1"] as const) {
    const name = `success-deploy-${schema.toLowerCase()}`;
    it(name, async () => {
      const s = scenario();
      let driver: OrchestrationDriver | undefined;
      arm.setRunCommandExecutor(callbackThenExit(() => driver));
      const result = await runBuild(s, fixedInput(s, name), schema, (d) => {
        driver = d;
        uploaded(d);
      });
      await save(
        name,
        `starts the deallocated builder, builds, the callback arrives, deploys a healthy revision (${schema})`,
        result.driver,
        "succeeded",
      );
    });
  }

  it("callback-lost", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(succeed());
    const { driver } = await runBuild(s, fixedInput(s, "callback-lost"), "V3", uploaded);
    await save(
      "callback-lost",
      "no callback arrives: the result is read from the run command's instance view, then deployed",
      driver,
      "succeeded",
    );
  });

  it("build-failed-exit-1", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor((run) => {
      const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
      const failed = { status: "failed", exitReason: "internal", exitCode: 1, image: undefined };
      run.stdout(`${resultLine(buildId, { ...failed, message: "unexpected failure in build.sh" })}\n`);
      return Promise.resolve({ exitCode: 1 });
    });
    const { driver } = await runBuild(s, fixedInput(s, "build-failed-exit-1"), "V3", uploaded);
    await save(
      "build-failed-exit-1",
      "build.sh exits 1 (internal): BuildFailed, no deploy",
      driver,
      "failed",
    );
  });

  it("cancelled-mid-build-v1", async () => {
    const s = scenario({ powerState: "running" });
    let driver: OrchestrationDriver | undefined;
    arm.setRunCommandExecutor(
      runUntilStopped(s, () =>
        driver?.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "changed my mind" }),
      ),
    );
    const result = await runBuild(s, fixedInput(s, "cancelled-mid-build-v1"), "V1", (d) => {
      driver = d;
      uploaded(d);
    });
    await save(
      "cancelled-mid-build-v1",
      "cancelled while the build command runs: the run command is deleted, the lease released (V1)",
      result.driver,
      "cancelled",
    );
  });

  it("timed-out", async () => {
    const s = scenario({ powerState: "running", builds: { buildTimeoutMinutes: 1 } });
    arm.setRunCommandExecutor(runUntilStopped(s));
    const { driver } = await runBuild(s, fixedInput(s, "timed-out"), "V3", uploaded);
    await save(
      "timed-out",
      "the build command runs past its 1-minute limit and is stopped",
      driver,
      "timed-out",
    );
  });

  it("queued-then-run", async () => {
    const s = scenario({ powerState: "running" });
    await holdLease(s, "fixture-build-ahead");
    arm.setRunCommandExecutor(succeed());
    const driver = driverFor(s, fixedInput(s, "queued-then-run", { deploy: false }));
    uploaded(driver);
    const running = driver.run();
    await until(
      () => (driver.status().customStatus as BuildStatus | undefined)?.queuePosition === 1,
      "the build waits in the queue",
    );
    // The build ahead ends.
    await mutateRecord(leases, builderKey(s.vm), (record) => ({
      record: { ...record, holder: undefined, leaseExpiresAt: undefined },
      result: undefined,
    }));
    assert.equal((await running).runtimeStatus, "Completed");
    await save(
      "queued-then-run",
      "waits first in the queue behind another build, then takes the lease and builds (no deploy)",
      driver,
      "succeeded",
    );
  });

  it("source-never-uploaded", async () => {
    const s = scenario({ powerState: "running", builds: { sourceTimeoutMinutes: 2 } });
    arm.setRunCommandExecutor(succeed());
    const { driver } = await runBuild(s, fixedInput(s, "source-never-uploaded"));
    await save("source-never-uploaded", "no upload is reported within 2 minutes", driver, "failed");
  });

  it("deploy-unhealthy-revision", async () => {
    const s = scenario({ powerState: "running", imageRepository: "team/unhealthy" });
    arm.setRunCommandExecutor(succeed((buildId) => ({ image: `${REG}/team/unhealthy:${buildId}` })));
    const { driver } = await runBuild(s, fixedInput(s, "deploy-unhealthy-revision"), "V3", uploaded);
    await save(
      "deploy-unhealthy-revision",
      "builds, but the new revision is unhealthy: DeployFailed, the previous revision keeps serving",
      driver,
      "failed",
    );
  });

  it("skipped-already-running", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(succeed());
    await runBuild(s, fixedInput(s, "skipped-first-build"), "V3", uploaded);
    arm.setRunCommandExecutor(succeed(skippedBuild(DIGEST)));
    const { driver } = await runBuild(s, fixedInput(s, "skipped-already-running"), "V3", uploaded);
    await save(
      "skipped-already-running",
      "the registry has the source's image and the app already runs it: nothing deployed",
      driver,
      "succeeded",
    );
  });

  it("retry-allocation-failed", async () => {
    const s = scenario();
    arm.setRunCommandExecutor(succeed());
    arm.inject({
      operation: "start",
      vmName: s.vm.vmName,
      times: 1,
      error: { code: "AllocationFailed", message: "no capacity" },
    });
    const input = fixedInput(s, "retry-allocation-failed", { deploy: false });
    const { driver } = await runBuild(s, input, "V3", uploaded);
    await save(
      "retry-allocation-failed",
      "the VM start fails once with AllocationFailed, is retried after a backoff, then builds (no deploy)",
      driver,
      "succeeded",
    );
  });

  it("multiple-revision-traffic", async () => {
    const s = scenario({ powerState: "running", app: { activeRevisionsMode: "Multiple" } });
    arm.setRunCommandExecutor(succeed());
    const { driver } = await runBuild(s, fixedInput(s, "multiple-revision-traffic"), "V3", uploaded);
    await save(
      "multiple-revision-traffic",
      "multiple revision mode: deploys, then moves all traffic to the new healthy revision",
      driver,
      "succeeded",
    );
  });
});
