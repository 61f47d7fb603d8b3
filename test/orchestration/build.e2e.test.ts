/**
 * The build orchestrator end to end: durable-functions' replay engine (local driver, virtual
 * timers), the real activities, real gateways over HTTPS to the ARM emulator, and Azurite for
 * blobs and the lease table. The "VM" is the emulator's run-command executor.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { makeActivities } from "../../src/activities/index.js";
import { createBlobStores } from "../../src/azure/blobs.js";
import { createComputeGateway } from "../../src/azure/compute.js";
import { createContainerAppsGateway } from "../../src/azure/containerApps.js";
import { TableLeaseStore } from "../../src/azure/tables.js";
import type { Config, EnvironmentConfig } from "../../src/config/index.js";
import type { BuildStatus } from "../../src/core/api.js";
import { BUILD_ORCHESTRATOR } from "../../src/core/activityContract.js";
import { BUILD_EVENTS, builderKey, type BuildInput } from "../../src/core/buildInput.js";
import type { VmRef } from "../../src/core/ports.js";
import { startArmEmulator, type ArmEmulator, type RunCommandExecutor } from "../../src/local/arm/index.js";
import { startAzurite, type Azurite } from "../../src/local/azurite.js";
import {
  checkReplayPrefixes,
  OrchestrationDriver,
  type ReplaySchemaName,
} from "../../src/local/durable/driver.js";
import { buildOrchestrator } from "../../src/orchestration/build.js";
import { gatewayOptions, SUB } from "../arm/helpers.js";

let azurite: Azurite;
let arm: ArmEmulator;
let leases: TableLeaseStore;
const START = new Date(Date.UTC(2030, 0, 1, 12));

before(async () => {
  [azurite, arm] = await Promise.all([
    startAzurite(),
    startArmEmulator({ failRevisionsWithImage: /unhealthy/, revisionReadyMs: 30 }),
  ]);
  leases = new TableLeaseStore({ connectionString: azurite.connectionString, tableName: "builders" });
});
after(async () => {
  await Promise.all([azurite?.stop(), arm?.stop()]);
});

let counter = 0;
interface Scenario {
  env: EnvironmentConfig;
  vm: VmRef;
  config: Config;
  /** Per-run-command behaviour; default: succeed with an image. */
  executor?: RunCommandExecutor;
}

function scenario(
  options: { powerState?: "running" | "deallocated"; builds?: Partial<Config["builds"]> } = {},
): Scenario {
  const n = ++counter;
  const env: EnvironmentConfig = {
    name: `env${n}`,
    subscriptionId: SUB,
    resourceGroup: "rg-build",
    builderVm: `builder${n}`,
    registry: "registry.example.test",
    imageRepository: "team/app",
    containerApp: `app${n}`,
    containerName: "web",
    binaryName: "app",
  };
  const vm = { subscriptionId: SUB, resourceGroup: env.resourceGroup, vmName: env.builderVm };
  arm.addVm(vm, { powerState: options.powerState ?? "deallocated" });
  arm.addContainerApp(
    { subscriptionId: SUB, resourceGroup: env.resourceGroup, appName: env.containerApp },
    { containers: [{ name: "web", image: "registry.example.test/team/app:old" }], revisionSuffix: "old" },
  );
  const config = {
    environments: { [env.name]: env },
    builds: {
      maxUploadBytes: 1024 * 1024,
      uploadSasMinutes: 15,
      sourceTimeoutMinutes: 20,
      buildTimeoutMinutes: 60,
      deployTimeoutMinutes: 15,
      leaseMinutes: 10,
      idleShutdownMinutes: 30,
      ...options.builds,
    },
    publicBaseUrl: undefined,
  } as unknown as Config;
  return { env, vm, config };
}

function resultLine(buildId: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    fastbuild: "result",
    version: 1,
    buildId,
    status: "succeeded",
    exitReason: "ok",
    exitCode: 0,
    image: `registry.example.test/team/app:${buildId}`,
    digest: `sha256:${"a".repeat(64)}`,
    baseCacheHit: true,
    skipped: false,
    timings: { app: 1200 },
    ...extra,
  });
}

/** The "VM": prints a few log lines and the result line, as build.sh does. */
const succeed =
  (extra: (buildId: string) => Record<string, unknown> = () => ({})): RunCommandExecutor =>
  (run) => {
    const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
    run.stdout(`12:00:00 fastbuild[app] building ${buildId}\n${resultLine(buildId, extra(buildId))}\n`);
    return Promise.resolve({ exitCode: 0 });
  };

function newInput(s: Scenario, overrides: Partial<BuildInput> = {}): BuildInput {
  return {
    buildId: `build-${randomBytes(6).toString("hex")}`,
    environment: s.env.name,
    sourceDigest: `sha256:${"b".repeat(64)}`,
    baseKey: "c".repeat(64),
    rebuildBase: false,
    deploy: true,
    callbackToken: randomBytes(24).toString("base64url"),
    createdAt: START.toISOString(),
    ...overrides,
  };
}

function driverFor(s: Scenario, input: BuildInput, schema: ReplaySchemaName = "V3") {
  const blobs = createBlobStores({
    connectionString: azurite.connectionString,
    blobEndpoint: undefined,
    sourceContainer: "build-sources",
    logContainer: "build-logs",
  });
  const activities = makeActivities({
    config: s.config,
    compute: createComputeGateway(gatewayOptions(arm)),
    apps: createContainerAppsGateway(gatewayOptions(arm)),
    sources: blobs.sources,
    logs: blobs.logs,
    leases,
    vmReadyTimeoutMs: 5 * 60_000,
  });
  return new OrchestrationDriver({
    name: BUILD_ORCHESTRATOR,
    orchestrator: buildOrchestrator,
    instanceId: input.buildId,
    input,
    activities,
    schema,
    // A little real time per virtual timer lets the emulator's VM and run command move on.
    clock: { kind: "virtual", start: START, realDelayMs: 3 },
    stallTimeoutMs: 20_000,
  });
}

async function runBuild(
  s: Scenario,
  input: BuildInput,
  schema: ReplaySchemaName = "V3",
  prepare?: (d: OrchestrationDriver) => void,
) {
  const driver = driverFor(s, input, schema);
  prepare?.(driver);
  const instance = await driver.run();
  assert.equal(instance.runtimeStatus, "Completed", `instance output: ${JSON.stringify(instance.output)}`);
  assert.deepEqual(driver.openTimers(), [], "every losing timer is cancelled");
  const status = instance.output as BuildStatus;
  assert.equal(status.terminal, true);
  assert.deepEqual(instance.customStatus, status);
  assert.ok(JSON.stringify(status).length < 8 * 1024, "custom status stays far below 16 KB");
  const stored = await leases.read(builderKey(s.vm));
  assert.equal(stored?.record.holder, undefined, "the lease is released");
  assert.equal(
    stored?.record.queue.some((q) => q.buildId === input.buildId),
    false,
    "the build left the queue",
  );
  const rows = await leases.listBuilds(builderKey(s.vm));
  assert.ok(
    rows.some((row) => row.buildId === input.buildId && row.outcome === status.phase),
    "activity is recorded",
  );
  return { status, driver };
}

const runCommandDeletes = (buildId: string) =>
  arm.requests.filter(
    (r) => r.method === "DELETE" && r.path.toLowerCase().includes(`/runcommands/fb-${buildId}`),
  ).length;

describe("build orchestration end to end", () => {
  for (const schema of ["V1", "V3"] as const) {
    it(`builds and deploys: starts the VM, runs the command, waits for the new revision (${schema})`, async () => {
      const s = scenario();
      arm.setRunCommandExecutor(succeed());
      const input = newInput(s);
      const { status, driver } = await runBuild(s, input, schema, (d) =>
        d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
      );
      assert.equal(status.phase, "succeeded");
      assert.equal(status.image?.reference, `registry.example.test/team/app:${input.buildId}`);
      assert.equal(status.revision?.healthState, "Healthy");
      assert.match(status.revision?.name ?? "", new RegExp(`^${s.env.containerApp}--b`));
      assert.deepEqual(
        status.steps.map((step) => step.state),
        ["succeeded", "succeeded", "succeeded", "succeeded", "succeeded"],
      );
      assert.equal(arm.getVm(s.vm)?.powerState, "running");
      const app = arm.getContainerApp({
        subscriptionId: SUB,
        resourceGroup: s.env.resourceGroup,
        appName: s.env.containerApp,
      });
      assert.equal(app?.images.web, `registry.example.test/team/app:${input.buildId}`);
      // Determinism: every prefix of the finished history replays to a prefix of its actions.
      await checkReplayPrefixes(buildOrchestrator, {
        instanceId: input.buildId,
        history: driver.getHistory(),
        input,
        schema,
      });
    });
  }

  it("passes values as run-command parameters, secrets as protected ones, never in the script text", async () => {
    const s = scenario({ powerState: "running" });
    let seen: Parameters<RunCommandExecutor>[0] | undefined;
    arm.setRunCommandExecutor((run) => {
      seen = run;
      return succeed()(run);
    });
    const input = newInput(s, { commit: "abcdef1", deploy: false });
    const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
    assert.equal(status.phase, "succeeded");
    assert.equal(status.steps.find((step) => step.name === "deploy")?.state, "skipped");
    assert.equal(seen?.parameters.FASTBUILD_BUILD_ID, input.buildId);
    assert.equal(seen?.parameters.FASTBUILD_COMMIT, "abcdef1");
    assert.match(seen?.protectedParameters.FASTBUILD_SOURCE_URL ?? "", /sig=/);
    assert.equal(seen?.script.includes(input.buildId), false);
    assert.equal(JSON.stringify(seen?.parameters).includes("sig="), false);
  });

  it("uses the completion callback when it arrives (VM already running)", async () => {
    const s = scenario({ powerState: "running" });
    let driver: OrchestrationDriver | undefined;
    arm.setRunCommandExecutor((run) => {
      const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
      driver?.raiseEvent(
        BUILD_EVENTS.buildCompleted,
        JSON.parse(resultLine(buildId, { baseCacheHit: false })),
      );
      // The run command itself never finishes: only the callback can end the wait.
      return new Promise((resolve) => run.signal.addEventListener("abort", () => resolve({ exitCode: 137 })));
    });
    const input = newInput(s, { deploy: false });
    const { status } = await runBuild(s, input, "V3", (d) => {
      driver = d;
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    });
    assert.equal(status.phase, "succeeded");
    assert.equal(status.cache?.base, "miss");
  });

  it("retries a VM start that failed with AllocationFailed, then builds", async () => {
    const s = scenario();
    arm.setRunCommandExecutor(succeed());
    arm.inject({
      operation: "start",
      vmName: s.vm.vmName,
      times: 1,
      error: { code: "AllocationFailed", message: "no capacity" },
    });
    const { status } = await runBuild(s, newInput(s, { deploy: false }), "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(status.phase, "succeeded");
    assert.equal(arm.getVm(s.vm)?.powerState, "running");
  });

  it("rides out a storm of 429s from ARM", async () => {
    const s = scenario();
    arm.setRunCommandExecutor(succeed());
    arm.inject({
      path: new RegExp(`/virtualMachines/${s.vm.vmName}`, "i"),
      times: 4,
      response: {
        status: 429,
        headers: { "retry-after": "2" },
        body: { error: { code: "TooManyRequests", message: "slow down" } },
      },
    });
    const { status } = await runBuild(s, newInput(s, { deploy: false }), "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(status.phase, "succeeded");
  });

  it("fails a build whose script exits 1, with the failing step and the log tail", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor((run) => {
      const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
      run.stdout(
        `error[E0425]: cannot find value \`x\` in this scope\n${resultLine(buildId, {
          status: "failed",
          exitReason: "app-build",
          exitCode: 21,
          failedStep: "app",
          image: undefined,
          logTail: ["error[E0425]: cannot find value `x` in this scope"],
        })}\n`,
      );
      return Promise.resolve({ exitCode: 21 });
    });
    const input = newInput(s);
    const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "BuildFailed");
    assert.match(status.error?.message ?? "", /step app/);
    assert.deepEqual(status.logTail, ["error[E0425]: cannot find value `x` in this scope"]);
    assert.equal(status.steps.find((step) => step.name === "deploy")?.state, "skipped");
  });

  it("times out a build that runs past its limit and stops the run command", async () => {
    const s = scenario({ powerState: "running", builds: { buildTimeoutMinutes: 1 } });
    arm.setRunCommandExecutor(
      (run) =>
        new Promise((resolve) => run.signal.addEventListener("abort", () => resolve({ exitCode: 137 }))),
    );
    const input = newInput(s);
    const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
    assert.equal(status.phase, "timed-out");
    assert.equal(status.error?.code, "BuildTimeout");
    assert.ok(runCommandDeletes(input.buildId) >= 1, "the run command was deleted");
  });

  it("cancels mid-build: deletes the run command and releases the lease", async () => {
    const s = scenario({ powerState: "running" });
    let driver: OrchestrationDriver | undefined;
    arm.setRunCommandExecutor((run) => {
      driver?.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "changed my mind" });
      return new Promise((resolve) => run.signal.addEventListener("abort", () => resolve({ exitCode: 137 })));
    });
    const input = newInput(s);
    const { status } = await runBuild(s, input, "V1", (d) => {
      driver = d;
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    });
    assert.equal(status.phase, "cancelled");
    assert.match(status.error?.message ?? "", /changed my mind/);
    assert.ok(runCommandDeletes(input.buildId) >= 1, "the run command was deleted");
  });

  it("reports a deploy whose new revision is unhealthy, saying the previous one keeps serving", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(
      succeed((buildId) => ({ image: `registry.example.test/team/unhealthy:${buildId}` })),
    );
    const { status } = await runBuild(s, newInput(s), "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "DeployFailed");
    assert.match(status.error?.message ?? "", /previous revision keeps serving/);
    const app = arm.getContainerApp({
      subscriptionId: SUB,
      resourceGroup: s.env.resourceGroup,
      appName: s.env.containerApp,
    });
    assert.equal(app?.latestReadyRevisionName, `${s.env.containerApp}--old`);
  });

  it("fails with 'source never uploaded' when no upload is reported in time", async () => {
    const s = scenario({ powerState: "running", builds: { sourceTimeoutMinutes: 2 } });
    arm.setRunCommandExecutor(succeed());
    const input = newInput(s);
    const { status } = await runBuild(s, input);
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "SourceNeverUploaded");
    assert.match(status.error?.message ?? "", /source never uploaded/);
    assert.equal(
      arm.requests.some((r) => r.path.toLowerCase().includes(`fb-${input.buildId}`)),
      false,
      "no build command ran",
    );
  });

  it("fails fast on an unknown environment, taking no lease", async () => {
    const s = scenario({ powerState: "running" });
    const driver = driverFor(s, newInput(s, { environment: "nope" }));
    const instance = await driver.run();
    const status = instance.output as BuildStatus;
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "UnknownEnvironment");
    assert.match(status.error?.hint ?? "", new RegExp(s.env.name));
  });

  it("queues a second build for the same builder and runs it after the first", async () => {
    const s = scenario({ powerState: "running" });
    const runs: { buildId: string; event: "start" | "end" }[] = [];
    arm.setRunCommandExecutor(async (run) => {
      const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
      runs.push({ buildId, event: "start" });
      await new Promise((resolve) => setTimeout(resolve, 150));
      run.stdout(`${resultLine(buildId)}\n`);
      runs.push({ buildId, event: "end" });
      return { exitCode: 0 };
    });
    const first = newInput(s, { deploy: false });
    const second = newInput(s, { deploy: false });
    const a = driverFor(s, first);
    const b = driverFor(s, second);
    a.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    b.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    const runA = a.run();
    // Let the first take the lease before the second asks.
    while (!(await leases.read(builderKey(s.vm)))?.record.holder) await new Promise((r) => setTimeout(r, 5));
    let sawQueued = false;
    const runB = b.run();
    const watch = setInterval(() => {
      const st = b.status().customStatus as BuildStatus | undefined;
      if (st?.queuePosition === 1) sawQueued = true;
    }, 1);
    const [ra, rb] = await Promise.all([runA, runB]);
    clearInterval(watch);
    assert.equal((ra.output as BuildStatus).phase, "succeeded");
    assert.equal((rb.output as BuildStatus).phase, "succeeded");
    assert.ok(sawQueued, "the second build showed its queue position");
    assert.deepEqual(
      runs.map((r) => `${r.buildId === first.buildId ? "A" : "B"}:${r.event}`),
      ["A:start", "A:end", "B:start", "B:end"],
    );
    const record = (await leases.read(builderKey(s.vm)))!.record;
    assert.equal(record.holder, undefined);
    assert.equal(record.generation, 2);
  });
});
