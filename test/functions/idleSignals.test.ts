/**
 * The idle shutdown's two signals besides the lease, through production's code paths:
 * - the issue's scenario, fully real: a build's lease expired while the function app was down and
 *   its run command still runs on the VM (the ARM emulator, through the real compute SDK's list
 *   with `$expand=instanceView`); `runIdleShutdown` keeps the builder and says why; likewise for a
 *   fresh heartbeat, an unreadable VM, warm hours; and it deallocates once all are quiet;
 * - 500 random interleavings against Azurite's real ETags: builds taking, renewing and releasing
 *   the lease with production's decisions through `TableLeaseStore` (mutateRecord), heartbeats on
 *   their own row, and the idle timer's read → decide → compare-and-set, all concurrent. The VM
 *   in those runs is an in-memory one (what its run commands report): the ETag races are real, the
 *   ARM side is the emulator's only in the fully real runs above.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import fc from "fast-check";
import { scriptedExecutor, startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { createComputeGateway } from "../../src/azure/compute.js";
import { TableHistoryStore } from "../../src/azure/history.js";
import { TableLeaseStore } from "../../src/azure/tables.js";
import { idlePolicy, runIdleShutdown, type BuildersDeps } from "../../src/builders/idleShutdown.js";
import { loadConfig, type Config } from "../../src/config/index.js";
import { builderKey, runCommandName } from "../../src/core/buildInput.js";
import { decideIdleShutdown, finishIdleShutdown, type IdleSignals } from "../../src/core/idle.js";
import {
  decideAcquire,
  decideRelease,
  decideRenew,
  emptyRecord,
  isLeaseFresh,
  mutateRecord,
  type BuilderRecord,
} from "../../src/core/lease.js";
import { gatewayOptions, SUB } from "../azure/armHelpers.js";

const VM = { subscriptionId: SUB, resourceGroup: "rg-idle2", vmName: "builder-idle2" };
const IDLE_MS = 30 * 60_000;
const ENV = {
  subscriptionId: SUB,
  resourceGroup: VM.resourceGroup,
  builderVm: VM.vmName,
  registry: "127.0.0.1:5000",
  imageRepository: "apps/demo",
  containerApp: "demo",
  containerName: "main",
  binaryName: "app",
};

describe("idle shutdown reads the VM and the heartbeat besides the lease", () => {
  let arm: ArmEmulator;
  let azurite: Azurite;
  let config: Config;
  let deps: BuildersDeps & { leases: TableLeaseStore };
  let tables = 0;
  const sink = { info: () => {}, warn: () => {}, error: () => {} };
  const key = builderKey(VM);

  before(async () => {
    [arm, azurite] = await Promise.all([startArmEmulator(), startAzurite()]);
  });
  after(async () => {
    await Promise.all([arm.stop(), azurite.stop()]);
  });
  const configWith = (warm?: unknown) =>
    loadConfig({
      FASTBUILD_ENVIRONMENTS: JSON.stringify({ dev: { ...ENV, ...(warm ? { warm } : {}) } }),
      AzureWebJobsStorage: azurite.connectionString,
      FASTBUILD_COMPUTE_ENDPOINT: arm.endpoint,
      FASTBUILD_IDLE_SHUTDOWN_MINUTES: "30",
    });
  beforeEach(() => {
    arm.clearFaults();
    // A build script that runs until Run Command stops it (a delete, the VM going down); no timer,
    // so a command still running when the tests end keeps nothing alive.
    arm.setRunCommandExecutor(
      (run) =>
        new Promise((resolve) =>
          run.signal.addEventListener("abort", () => resolve({ exitCode: 137 }), { once: true }),
        ),
    );
    arm.addVm(VM, { powerState: "running" });
    config = configWith();
    tables++;
    deps = {
      config,
      leases: new TableLeaseStore({
        tableName: `idletwo${tables}`,
        connectionString: azurite.connectionString,
      }),
      compute: createComputeGateway(gatewayOptions(arm)),
      history: new TableHistoryStore({
        tableName: `idletwohist${tables}`,
        connectionString: azurite.connectionString,
      }),
      now: () => new Date(),
    };
  });

  /** A build's lease that expired while the function app was down: never released, long unused. */
  const expiredLease = async (buildId: string) => {
    const now = Date.now();
    await deps.leases.write(
      {
        ...emptyRecord(key),
        holder: buildId,
        generation: 4,
        leaseExpiresAt: new Date(now - 20 * 60_000).toISOString(),
        acquiredAt: new Date(now - IDLE_MS - 20 * 60_000).toISOString(),
        lastActivityAt: new Date(now - IDLE_MS - 20 * 60_000).toISOString(),
      },
      undefined,
    );
  };
  const startCommand = (buildId: string) =>
    createComputeGateway(gatewayOptions(arm)).startBuildCommand(VM, {
      name: runCommandName(buildId),
      script: "echo building",
      parameters: { BUILD_ID: buildId },
      protectedParameters: {},
      timeoutInSeconds: 3600,
      outputBlobUri: "",
      errorBlobUri: "",
    });
  /** The durable status of every build: none has an instance (the function app lost them, or they ended). */
  const noOrchestration = () => Promise.resolve(undefined);

  it("keeps a builder whose lease expired while the function app was down, its build's command still Running, and says so", async () => {
    await expiredLease("b-long");
    await startCommand("b-long");

    const outcomes = await runIdleShutdown(deps, sink, noOrchestration);

    assert.deepEqual(outcomes, [
      {
        builder: VM.vmName,
        action: "kept",
        reason: "the VM is running build b-long's command fb-b-long (Running)",
      },
    ]);
    assert.equal(arm.getVm(VM)?.powerState, "running");
    assert.equal((await deps.leases.read(key))?.record.holder, "b-long", "nothing was written");
  });

  it("keeps it while the build's heartbeat is fresh (40 s ago), with no run command to see", async () => {
    await expiredLease("b-beat");
    await deps.leases.recordHeartbeat(key, {
      buildId: "b-beat",
      at: new Date(Date.now() - 40_000).toISOString(),
    });

    const [outcome] = await runIdleShutdown(deps, sink, noOrchestration);

    assert.deepEqual(outcome, {
      builder: VM.vmName,
      action: "kept",
      reason: "build b-beat's heartbeat 40 s ago",
    });
    assert.equal(arm.getVm(VM)?.powerState, "running");
  });

  it("keeps it while the expired holder's orchestration still runs", async () => {
    await expiredLease("b-orch");

    const [outcome] = await runIdleShutdown(deps, sink, () => Promise.resolve("Running"));

    assert.equal(outcome?.action, "kept");
    assert.match(
      outcome && "reason" in outcome ? outcome.reason : "",
      /^build b-orch's lease expired, but its orchestration still runs/,
    );
  });

  it("keeps it when Azure cannot list the VM's run commands (a fault is not 'nothing runs')", async () => {
    await expiredLease("b-fault");
    arm.inject({ method: "GET", path: /\/runCommands$/i, response: { kind: "internalError" } });

    const [outcome] = await runIdleShutdown(deps, sink, noOrchestration);

    assert.equal(outcome?.action, "kept");
    assert.match(
      outcome && "reason" in outcome ? outcome.reason : "",
      /^the VM's run commands could not be read \(.*\); the next check decides$/,
    );
    assert.equal(arm.getVm(VM)?.powerState, "running");
  });

  it("keeps an idle builder during the environment's warm hours", async () => {
    deps = {
      ...deps,
      config: configWith({
        builders: 1,
        hours: { timeZone: "UTC", days: "Mon-Sun", from: "00:00", to: "23:59" },
      }),
    };
    await expiredLease("b-old");
    // 23:59-24:00 UTC is outside those hours: pin the clock inside them.
    const noon = new Date(Date.UTC(2030, 0, 9, 12));
    deps.now = () => noon;
    await deps.leases.write(
      { ...emptyRecord(key), lastActivityAt: new Date(noon.getTime() - 2 * IDLE_MS).toISOString() },
      (await deps.leases.read(key))?.etag,
    );

    const [outcome] = await runIdleShutdown(deps, sink, noOrchestration);

    assert.deepEqual(outcome, {
      builder: VM.vmName,
      action: "kept",
      reason: "warm hours of dev (Mon-Sun 00:00-23:59 UTC)",
    });
  });

  it("deallocates once the command ended, the heartbeat is old and the orchestration is gone", async () => {
    arm.setRunCommandExecutor(scriptedExecutor({ durationMs: 0 }));
    await expiredLease("b-done");
    await startCommand("b-done");
    await deps.leases.recordHeartbeat(key, {
      buildId: "b-done",
      at: new Date(Date.now() - 10 * 60_000).toISOString(),
    });
    // The scripted command ends at once; wait until Azure reports it finished.
    for (
      let i = 0;
      i < 200 && ((await deps.compute.listBusyBuildCommands(VM, "fb-")) ?? []).length > 0;
      i++
    ) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }

    const [outcome] = await runIdleShutdown(deps, sink, noOrchestration);

    assert.deepEqual(outcome, { builder: VM.vmName, action: "deallocated" });
    assert.equal(arm.getVm(VM)?.powerState, "deallocated");
    assert.equal((await deps.leases.read(key))?.record.holder, undefined, "the shutdown's lease went back");
  });

  it("never deallocates during a build, never lets two builds hold it, never leaks the lease (500 runs on Azurite's ETags)", async () => {
    const policy = idlePolicy({ config: { builds: { idleShutdownMinutes: 1 } } });
    const LEASE_MS = 60_000;
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 3, maxLength: 12 }),
        fc.integer({ min: 0, max: 3 * 60_000 }),
        fc.boolean(),
        async (pauses, sinceActivity, leaseExpired) => {
          const store = deps.leases;
          const k = `run${++run}`;
          let clock = Date.UTC(2030, 0, 9, 3);
          const now = () => new Date(clock);
          // The record before the race: an earlier build, its lease expired (the app was down) or released.
          const last = new Date(clock - sinceActivity).toISOString();
          await store.write(
            leaseExpired
              ? {
                  ...emptyRecord(k),
                  holder: "b-old",
                  generation: 1,
                  leaseExpiresAt: last,
                  acquiredAt: last,
                  lastActivityAt: last,
                }
              : { ...emptyRecord(k), lastActivityAt: last },
            undefined,
          );
          const running = new Set<string>();
          let deallocations = 0;
          let holders = 0;
          const yieldFor = async (i: number) => {
            for (let n = 0; n < (pauses[i % pauses.length] ?? 0); n++) await Promise.resolve();
          };
          const build = async (id: string, i: number) => {
            await yieldFor(i);
            const acquired = await mutateRecord(store, k, (record) => {
              const d = decideAcquire(record, id, now(), { leaseMs: LEASE_MS, queueStaleMs: 3 * LEASE_MS });
              return { record: d.record, result: d.kind === "acquired" ? d.generation : undefined };
            });
            if (acquired === undefined) return;
            holders++;
            assert.ok(holders <= 1, "two builds hold the builder");
            await yieldFor(i + 1);
            // The start activity: renew (compare-and-set), then the command runs on the VM.
            const renewed = await mutateRecord(store, k, (record) => {
              const d = decideRenew(record, id, acquired, now(), LEASE_MS);
              return { record: d.kind === "renewed" ? d.record : undefined, result: d.kind === "renewed" };
            });
            if (renewed) {
              assert.equal(running.size, 0, "two builds on one builder");
              running.add(id);
              await store.recordHeartbeat(k, { buildId: id, at: now().toISOString() });
              await yieldFor(i + 2);
              running.delete(id);
            }
            holders--;
            await mutateRecord(store, k, (record) => ({
              record: decideRelease(record, id, acquired, now()).record,
              result: undefined,
            }));
          };
          const timer = async (i: number) => {
            await yieldFor(i);
            const stored = await store.read(k);
            const record: BuilderRecord = stored?.record ?? emptyRecord(k);
            // The VM's signals as the real list would report them now.
            const signals: IdleSignals = {
              commands: {
                kind: "read",
                busy: [...running].map((id) => ({
                  name: runCommandName(id),
                  executionState: "Running",
                  provisioningState: "Succeeded",
                })),
              },
              heartbeat: await store.readHeartbeat(k),
              warm: { count: 0 },
            };
            await yieldFor(i + 1);
            const decision = decideIdleShutdown(record, "running", now(), policy, signals);
            if (decision.kind !== "deallocate") return;
            if (!(await store.write(decision.record, stored?.etag))) return;
            assert.equal(running.size, 0, `deallocated during build ${[...running].join(", ")}`);
            deallocations++;
            await mutateRecord(store, k, (r) => ({
              record: finishIdleShutdown(r, decision.generation, now()),
              result: undefined,
            }));
          };
          await Promise.all([build("b1", 0), build("b2", 3), timer(1), timer(5)]);
          // No leaked lease: after everything ended and a lease's time passed, a build gets it.
          clock += policy.shutdownLeaseMs + LEASE_MS + 1;
          const final = (await store.read(k))!.record;
          assert.ok(!isLeaseFresh(final, now()), `the lease leaked to ${final.holder ?? "?"}`);
          assert.equal(
            decideAcquire(final, "late", now(), { leaseMs: LEASE_MS, queueStaleMs: 3 * LEASE_MS }).kind,
            "acquired",
          );
          assert.ok(deallocations <= 2);
        },
      ),
      { numRuns: 500 },
    );
  });
});
