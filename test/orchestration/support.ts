/**
 * What the build orchestrator's end-to-end suites share: durable-functions' replay engine (local
 * driver, virtual timers), the real activities, real gateways over HTTPS to the ARM emulator, and
 * Azurite for blobs and the lease table; the "VM" is the emulator's run-command executor. A suite
 * calls `useLocalCloud()` once, then builds scenarios with the helpers below.
 */
import { builderResult } from "../fixtures/builderResult.js";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import { after, before } from "node:test";

import { createComputeGateway } from "../../src/azure/compute.js";

import { TableLeaseStore } from "../../src/azure/tables.js";
import {
  loadConfig,
  type ComputeProfile,
  type Config,
  type EnvironmentConfig,
} from "../../src/config/index.js";
import type { BuildStatus } from "../../src/core/api.js";
import { BUILD_ORCHESTRATOR } from "../../src/core/activityContract.js";

import { builderKey, ORCHESTRATOR_VERSION, type BuildInput } from "../../src/core/buildInput.js";

import { decideAcquire, mutateRecord } from "../../src/core/lease.js";
import type { VmRef } from "../../src/core/ports.js";
import {
  startArmEmulator,
  type ArmEmulator,
  type ContainerAppInit,
  type RunCommandExecutor,
} from "@fast-build/local-cloud/arm";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";

import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";
import {
  OrchestrationDriver,
  type VirtualClock,
  type ActivityHandler,
  type DriverOptions,
  type ReplaySchemaName,
} from "@fast-build/local-cloud/durable/driver";

import { NotFoundError } from "../../src/core/errors.js";
import { TableHistoryStore } from "../../src/azure/history.js";
import type { BuildHistoryRecord } from "../../src/core/history.js";
import { buildOrchestrator } from "../../src/orchestration/build.js";
import { createActivities, createDeps } from "../../src/wiring.js";
import { gatewayOptions, SUB, testWiring } from "../azure/armHelpers.js";
import { pushImage } from "../azure/registryImages.js";
import { scriptEnvironment } from "../azure/scriptEnvironment.js";

export let azurite: Azurite;
export let arm: ArmEmulator;
export let leases: TableLeaseStore;
/** The environments' registry: the deploy deploys only a digest it confirms. */
export let images: LocalRegistry;
/** `127.0.0.1:PORT`, the environments' registry. */
export let REG: string;
/** The digest of the image `succeed` pushes (the same bytes under every tag). */
export let DIGEST: string;
/** What a deploy of `resultLine`'s image points the app at. */
export let DIGEST_REF: string;
export const START = new Date(Date.UTC(2030, 0, 1, 12));

/** Starts the suite's local cloud (Azurite, the ARM emulator, a registry) before its tests, and stops it after. */
export function useLocalCloud(): void {
  before(async () => {
    [azurite, arm, images] = await Promise.all([
      startAzurite(),
      startArmEmulator({ failRevisionsWithImage: /unhealthy/, revisionReadyMs: 30 }),
      startRegistry(),
    ]);
    leases = new TableLeaseStore({ connectionString: azurite.connectionString, tableName: "builders" });
    REG = images.host;
    DIGEST = await pushImage(images.url, "team/app", "warm-up");
    DIGEST_REF = `${REG}/team/app@${DIGEST}`;
  });
  after(async () => {
    await Promise.all([azurite?.stop(), arm?.stop(), images?.stop()]);
  });
}

export let counter = 0;
export interface Scenario {
  /** The emulator this scenario's VM and app live in (the shared one unless a test needs its own). */
  arm: ArmEmulator;
  env: EnvironmentConfig;
  vm: VmRef;
  config: Config;
  /** Per-run-command behaviour; default: succeed with an image. */
  executor?: RunCommandExecutor;
  /** The orchestrator's and activities' log lines, from every build of this scenario. */
  logs: string[];
}

export function scenario(
  options: {
    powerState?: "running" | "deallocated";
    builds?: Partial<Config["builds"]>;
    emulator?: ArmEmulator;
    profile?: ComputeProfile;
    /** How the app routes traffic (default: Single revision mode). */
    app?: Pick<ContainerAppInit, "activeRevisionsMode" | "traffic">;
    registry?: string;
    imageRepository?: string;
    publicBaseUrl?: string;
    /** The environment's `registryCache` (absent: not set, i.e. on). */
    registryCache?: boolean;
  } = {},
): Scenario {
  const emulator = options.emulator ?? arm;
  const n = ++counter;
  const env: EnvironmentConfig = {
    name: `env${n}`,
    subscriptionId: SUB,
    resourceGroup: "rg-build",
    builderVm: `builder${n}`,
    registry: options.registry ?? REG,
    imageRepository: options.imageRepository ?? "team/app",
    containerApp: `app${n}`,
    containerName: "web",
    binaryName: "app",
    ...(options.registryCache !== undefined ? { registryCache: options.registryCache } : {}),
  };
  const vm = { subscriptionId: SUB, resourceGroup: env.resourceGroup, vmName: env.builderVm };
  emulator.addVm(vm, { powerState: options.powerState ?? "deallocated" });
  emulator.addContainerApp(
    { subscriptionId: SUB, resourceGroup: env.resourceGroup, appName: env.containerApp },
    {
      containers: [{ name: "web", image: "registry.example.test/team/app:old" }],
      revisionSuffix: "old",
      ...options.app,
    },
  );
  // The app's settings as Azure would hold them, pointed at this scenario's emulator and Azurite.
  const settings = loadConfig({
    FASTBUILD_ENVIRONMENTS: JSON.stringify({ [env.name]: env }),
    AzureWebJobsStorage: azurite.connectionString,
    FASTBUILD_COMPUTE_ENDPOINT: emulator.endpoint,
    FASTBUILD_CONTAINERAPPS_ENDPOINT: emulator.endpoint,
    FASTBUILD_COMPUTE_PROFILE: options.profile ?? "latest",
    FASTBUILD_MAX_UPLOAD_BYTES: String(1024 * 1024),
    ...(options.publicBaseUrl ? { FASTBUILD_PUBLIC_BASE_URL: options.publicBaseUrl } : {}),
  });
  const config: Config = { ...settings, builds: { ...settings.builds, ...options.builds } };
  return { arm: emulator, env, vm, config, logs: [] };
}

export function resultLine(buildId: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    ...builderResult(buildId, {
      image: `${REG}/team/app:${buildId}`,
      digest: DIGEST,
      baseCacheHit: true,
      timings: { app: 1200 },
    }),
    ...extra,
  });
}

/** The result build.sh prints when the registry already has an image for the source digest. */
export const skippedBuild = (digest: string) => (_buildId: string, vm: Record<string, string>) => ({
  image: `${REG}/team/app:src-${(vm.FASTBUILD_SOURCE_DIGEST ?? "").replace(/^sha256:/, "")}`,
  digest,
  skipped: true,
  message: "source unchanged: image reused",
  timings: {},
});

/**
 * The "VM": pushes the image its result names to the local registry (when it names that registry),
 * then prints a few log lines and the result line, as build.sh does.
 */
export const succeed =
  (
    extra: (buildId: string, vm: Record<string, string>) => Record<string, unknown> = () => ({}),
    push = true,
  ): RunCommandExecutor =>
  async (run) => {
    // Managed: the parameters; hybrid: what the action's script text hands build.sh.
    const vm = await scriptEnvironment(run);
    const buildId = vm.FASTBUILD_BUILD_ID ?? "";
    const fields = extra(buildId, vm);
    const image = typeof fields.image === "string" ? fields.image : `${REG}/team/app:${buildId}`;
    const at = image.indexOf(":", REG.length + 1);
    const print = () => {
      run.stdout(`12:00:00 fastbuild[app] building ${buildId}\n${resultLine(buildId, fields)}\n`);
      return { exitCode: 0 };
    };
    // Without a push the output is written at once (the emulator's action Run Command reads it
    // when the executor is called, in the hybrid profile's tests).
    if (!push || !image.startsWith(`${REG}/`) || at < 0) return Promise.resolve(print());
    return pushImage(images.url, image.slice(REG.length + 1, at), image.slice(at + 1)).then(print);
  };

export function newInput(s: Scenario, overrides: Partial<BuildInput> = {}): BuildInput {
  return {
    buildId: `build-${randomBytes(6).toString("hex")}`,
    environment: s.env.name,
    // Each build its own sources unless a test says otherwise: from version 5 an image already
    // pushed for the same digest would skip the builder (registryFirst.e2e.test.ts tests that).
    sourceDigest: `sha256:${randomBytes(32).toString("hex")}`,
    baseKey: "c".repeat(64),
    rebuildBase: false,
    deploy: true,
    callbackToken: randomBytes(24).toString("base64url"),
    createdAt: START.toISOString(),
    // What the API's start writes; tests of the older path pass their own.
    orchestratorVersion: ORCHESTRATOR_VERSION,
    ...overrides,
  };
}

/**
 * The build activities of a scenario (name → handler), as the host would run them; with `clock`,
 * their wall clock (leases) is that virtual one.
 */
export function activitiesFor(s: Scenario, clock?: VirtualClock): ReadonlyMap<string, ActivityHandler> {
  // The scenario's own wiring; its lease store is the suite's `leases` table ("builders").
  const wiring = testWiring(s.arm);
  const deps = createDeps({
    ...wiring,
    // The ARM emulator's CA and the registry's login server's, in one PEM.
    tlsCa: `${wiring.tlsCa ?? ""}\n${images.ca}`,
    registryOptions: { endpoints: { [images.host]: images.loginUrl }, maxRetries: 0 },
    config: s.config,
    ...(clock ? { now: () => clock.now() } : {}),
  });
  return createActivities(deps, { vmReadyTimeoutMs: 5 * 60_000 });
}

/** Driver options a suite adds: faults, ordering, `onUpdate` (to see every custom status), a shared clock. */
export type DriverSettings = Pick<
  DriverOptions,
  "faults" | "ordering" | "functionTimeoutMs" | "timeoutGraceMs" | "onUpdate"
> & {
  /** One time line for the orchestration, its activities and other builds. */
  clock?: VirtualClock;
};

export function driverFor(
  s: Scenario,
  input: BuildInput,
  schema: ReplaySchemaName = "V3",
  wrap?: (activities: ReadonlyMap<string, ActivityHandler>) => ReadonlyMap<string, ActivityHandler>,
  settings: DriverSettings = {},
) {
  const { clock, ...driverOptions } = settings;
  const activities = activitiesFor(s, clock);
  return new OrchestrationDriver({
    name: BUILD_ORCHESTRATOR,
    orchestrator: buildOrchestrator,
    instanceId: input.buildId,
    input,
    activities: wrap ? wrap(activities) : activities,
    schema,
    // A little real time per virtual timer lets the emulator's VM and run command move on.
    clock: clock
      ? { kind: "virtual", clock, realDelayMs: 3 }
      : { kind: "virtual", start: START, realDelayMs: 3 },
    ...driverOptions,
    stallTimeoutMs: 20_000,
    log: (_level, message) => s.logs.push(message),
  });
}

export async function runBuild(
  s: Scenario,
  input: BuildInput,
  schema: ReplaySchemaName = "V3",
  prepare?: (d: OrchestrationDriver) => void,
  settings: DriverSettings = {},
  wrap?: (activities: ReadonlyMap<string, ActivityHandler>) => ReadonlyMap<string, ActivityHandler>,
) {
  const driver = driverFor(s, input, schema, wrap, settings);
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
  const history = await historyOf(s, input.buildId, input.environment);
  assert.equal(history?.outcome, status.phase, "the build history has the build, with its outcome");
  return { status, driver };
}

/** The build's history record (every build writes one at its end, whatever its outcome). */
export async function historyOf(
  s: Scenario,
  buildId: string,
  environment: string,
): Promise<BuildHistoryRecord | undefined> {
  const store = new TableHistoryStore({
    connectionString: azurite.connectionString,
    tableName: s.config.history.table,
  });
  let cursor: string | undefined;
  do {
    const page = await store.listBuilds({ environment, limit: 200, ...(cursor ? { cursor } : {}) });
    const found = page.builds.find((b) => b.buildId === buildId);
    if (found) return found;
    cursor = page.next;
  } while (cursor);
  return undefined;
}

export const runCommandDeletes = (buildId: string, emulator: ArmEmulator = arm) =>
  emulator.requests.filter(
    (r) => r.method === "DELETE" && r.path.toLowerCase().includes(`/runcommands/fb-${buildId}`),
  ).length;

/** The build's managed run command is no longer a resource on the VM. */
export async function assertRunCommandGone(s: Scenario, buildId: string): Promise<void> {
  await assert.rejects(
    createComputeGateway(gatewayOptions(s.arm)).readBuildCommand(s.vm, {
      kind: "managed",
      name: `fb-${buildId}`,
    }),
    (error: unknown) => error instanceof NotFoundError,
    "the run command was deleted",
  );
}

/** PATCH requests to one scenario's container app (each one would create a revision). */
export const appPatches = (s: Scenario) =>
  s.arm.requests.filter(
    (r) =>
      r.method === "PATCH" &&
      r.path.toLowerCase().endsWith(`/containerapps/${s.env.containerApp.toLowerCase()}`),
  ).length;

export const appRef = (s: Scenario) => ({
  subscriptionId: SUB,
  resourceGroup: s.env.resourceGroup,
  appName: s.env.containerApp,
});

/** Requests to one VM's own routes (power actions, run commands), by method and last path segment. */
export const vmRequests = (s: Scenario, method: string, tail: RegExp) =>
  s.arm.requests.filter(
    (r) =>
      r.method === method &&
      r.path.toLowerCase().includes(`/virtualmachines/${s.vm.vmName.toLowerCase()}/`) &&
      tail.test(r.path),
  );

/** A script that runs until it is aborted (managed: delete/timeout) or its VM goes down (action). */
export const runUntilStopped =
  (s: Scenario, onStart?: (run: Parameters<RunCommandExecutor>[0]) => void): RunCommandExecutor =>
  (run) => {
    onStart?.(run);
    return new Promise((resolve) => {
      const stop = () => {
        clearInterval(watch);
        resolve({ exitCode: 137 });
      };
      // The emulator aborts managed run commands on deallocation; the action one is watched here.
      const watch = setInterval(() => {
        const state = s.arm.getVm(s.vm)?.powerState;
        if (state === "deallocating" || state === "deallocated") stop();
      }, 2);
      run.signal.addEventListener("abort", stop);
    });
  };

/** Takes the builder's lease for a build that is not ours (the one the queue waits behind). */
export async function holdLease(s: Scenario, holder: string): Promise<number> {
  return mutateRecord(leases, builderKey(s.vm), (record) => {
    const decision = decideAcquire(record, holder, new Date(), {
      leaseMs: 10 * 60_000,
      queueStaleMs: 180_000,
    });
    assert.equal(decision.kind, "acquired");
    return { record: decision.record, result: decision.record.generation };
  });
}

export async function until(condition: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/**
 * Issue 15: a terminal reason says what happened, what became of the builder (matched by
 * `builder`), and what the user can do (a hint).
 */
export function assertReason(status: BuildStatus, code: string, builder: RegExp): void {
  assert.equal(status.error?.code, code, JSON.stringify(status.error));
  assert.ok(status.error?.hint, `${code} ends with a hint`);
  assert.match(status.error?.message ?? "", builder, "the reason says what became of the builder");
}
