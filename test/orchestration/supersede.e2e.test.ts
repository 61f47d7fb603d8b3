/**
 * Supersede (issue 12 item 3, orchestrator version 7): real activities over Azurite's lease table,
 * durable-functions' replay engine in the local driver. Three builds wait behind a build that holds
 * the builder; the newest of a branch supersedes the older one of that branch, the other branch's
 * build runs.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import type { BuildStatus } from "../../src/core/api.js";
import { BUILD_EVENTS, builderKey } from "../../src/core/buildInput.js";
import { decideRelease, mutateRecord } from "../../src/core/lease.js";
import type { Config } from "../../src/config/index.js";
import { buildOrchestrator } from "../../src/orchestration/build.js";
import { checkReplayPrefixes } from "@fast-build/local-cloud/durable/driver";
import {
  assertReason,
  driverFor,
  holdLease,
  leases,
  newInput,
  scenario,
  succeed,
  until,
  useLocalCloud,
  vmRequests,
  type Scenario,
} from "./support.js";

useLocalCloud();

const position = (driver: ReturnType<typeof driverFor>) =>
  (driver.status().customStatus as BuildStatus | undefined)?.queuePosition;

async function releaseLease(s: Scenario, holder: string): Promise<void> {
  await mutateRecord(leases, builderKey(s.vm), (record) => ({
    record: decideRelease(record, holder, undefined, new Date()).record,
    result: undefined,
  }));
}

/** The scenario with the environment's `supersede` setting. */
function withSupersede(s: Scenario, supersede: boolean): Scenario {
  const config: Config = {
    ...s.config,
    environments: { [s.env.name]: { ...s.env, supersede } },
  };
  return { ...s, config };
}

describe("supersede (orchestrator version 7)", () => {
  it("a newer queued build of a branch cancels the older one of that branch, which names it; the other branch's build runs", async () => {
    const s = scenario({ powerState: "running" });
    s.arm.setRunCommandExecutor(succeed());
    const holder = `build-ahead-${randomBytes(4).toString("hex")}`;
    await holdLease(s, holder);
    const older = newInput(s, { branch: "feature/login", deploy: false });
    const other = newInput(s, { branch: "main", deploy: false });
    const newer = newInput(s, { branch: "feature/login", deploy: false });
    const [a, c, b] = [older, other, newer].map((input) => {
      const driver = driverFor(s, input);
      driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
      return driver;
    }) as [ReturnType<typeof driverFor>, ReturnType<typeof driverFor>, ReturnType<typeof driverFor>];
    const runA = a.run();
    await until(() => position(a) === 1, "the older build is queued first");
    const runC = c.run();
    await until(() => position(c) === 2, "the other branch's build is queued second");
    const runB = b.run();

    const instanceA = await runA;
    const statusA = instanceA.output as BuildStatus;
    assert.equal(instanceA.runtimeStatus, "Completed");
    assert.equal(statusA.phase, "cancelled");
    assert.equal(statusA.supersededBy, newer.buildId);
    assert.match(statusA.error?.message ?? "", new RegExp(`^superseded by build ${newer.buildId}`));
    assertReason(
      statusA,
      "Superseded",
      /it never held builder \S+ \(it left the builder's queue\) and nothing ran on it$/,
    );
    assert.match(statusA.error?.hint ?? "", new RegExp(`fast-build follow ${newer.buildId}`));
    await until(() => position(b) === 2, "the newer build waits behind the other branch's only");
    const queued = (await leases.read(builderKey(s.vm)))!.record.queue.map((e) => e.buildId);
    assert.deepEqual(queued, [other.buildId, newer.buildId], "the superseded build left the queue");

    await releaseLease(s, holder);
    const [instanceC, instanceB] = await Promise.all([runC, runB]);
    assert.equal((instanceC.output as BuildStatus).phase, "succeeded");
    assert.equal((instanceB.output as BuildStatus).phase, "succeeded");
    assert.equal((instanceB.output as BuildStatus).supersededBy, undefined);
    const commands = vmRequests(s, "PUT", /\/runCommands\/fb-/i).map((r) => r.path);
    assert.ok(
      commands.some((path) => path.includes(newer.buildId)),
      JSON.stringify(commands),
    );
    assert.ok(
      commands.every((path) => !path.includes(older.buildId)),
      "nothing ran for the superseded build",
    );
    const rows = await leases.listBuilds(builderKey(s.vm));
    assert.ok(rows.some((row) => row.buildId === older.buildId && row.outcome === "cancelled"));
    // Its history replays on the same code at every cut (the engine's determinism check).
    await checkReplayPrefixes(buildOrchestrator, {
      instanceId: older.buildId,
      history: a.getHistory(),
      input: older,
      schema: "V3",
    });
  });

  it("a queued build told by POST /builds's cancel event ends superseded at once, as the queue would end it", async () => {
    const s = scenario();
    const holder = `build-ahead-${randomBytes(4).toString("hex")}`;
    await holdLease(s, holder);
    const older = newInput(s, { branch: "main" });
    const a = driverFor(s, older);
    const runA = a.run();
    await until(() => position(a) === 1, "the build is queued");
    a.raiseEvent(BUILD_EVENTS.cancelRequested, {
      reason: "superseded by build build-newer",
      supersededBy: "build-newer",
      branch: "main",
    });
    const status = (await runA).output as BuildStatus;
    assert.equal(status.phase, "cancelled");
    assert.equal(status.supersededBy, "build-newer");
    assert.match(
      status.error?.message ?? "",
      /^superseded by build build-newer, a newer build of branch "main"/,
    );
    assertReason(
      status,
      "Superseded",
      /it never held builder \S+ \(it left the builder's queue\) and nothing ran on it$/,
    );
    const record = (await leases.read(builderKey(s.vm)))!.record;
    assert.equal(record.holder, holder);
    assert.deepEqual(record.queue, [], "it left the queue");
  });

  it("with the environment's setting off, or for a build of an older orchestrator version, both builds of a branch stay queued", async () => {
    for (const [what, s, olderVersion] of [
      ["setting off", withSupersede(scenario(), false), undefined],
      ["version 6", scenario(), 6],
    ] as const) {
      const holder = `build-ahead-${randomBytes(4).toString("hex")}`;
      await holdLease(s, holder);
      const older = newInput(s, {
        branch: "main",
        ...(olderVersion ? { orchestratorVersion: olderVersion } : {}),
      });
      const newer = newInput(s, { branch: "main" });
      const a = driverFor(s, older);
      const b = driverFor(s, newer);
      const runA = a.run();
      await until(() => position(a) === 1, `${what}: the older build is queued`);
      const runB = b.run();
      await until(() => position(b) === 2, `${what}: the newer build queues behind it`);
      assert.equal(position(a), 1, what);
      a.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "test over" });
      b.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "test over" });
      const [ia, ib] = await Promise.all([runA, runB]);
      assert.equal((ia.output as BuildStatus).error?.code, "Cancelled", what);
      assert.equal((ib.output as BuildStatus).error?.code, "Cancelled", what);
      assert.equal((ia.output as BuildStatus).supersededBy, undefined, what);
    }
  });
});
