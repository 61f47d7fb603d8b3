/**
 * Activities run at least once (issue 14 item 2, issue 15 defects 1-4): Azure re-delivers an
 * activity after a host stop and fails one after `functionTimeout` while its code keeps running,
 * and a lost reply makes the orchestrator retry one whose effect already happened. Each activity
 * is run again here over the real local cloud, and its effects are counted where they land: the
 * "VM"'s script starts, the emulator's PUTs, PATCHes and power actions, the lease table.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ACTIVITIES,
  type ActivityInput,
  type ActivityName,
  type ActivityOutput,
  type RenewLeaseInput,
  type ResolvedEnvironment,
  type StartBuildInput,
} from "../../src/core/activityContract.js";
import { BUILD_EVENTS, builderKey, revisionSuffix } from "../../src/core/buildInput.js";
import { decodeActivityFailure } from "../../src/core/retry.js";
import { mutateRecord } from "../../src/core/lease.js";
import type { BuildCommandHandle } from "../../src/core/ports.js";
import type { BuildStatus } from "../../src/core/api.js";
import { createContainerAppsGateway } from "../../src/azure/containerApps.js";
import type { RunCommandExecutor } from "@fast-build/local-cloud/arm";
import type { ActivityHandler } from "@fast-build/local-cloud/durable/driver";
import { HistoryEventType } from "@fast-build/local-cloud/durable/history";
import { gatewayOptions } from "../azure/armHelpers.js";
import {
  activitiesFor,
  appPatches,
  appRef,
  arm,
  assertReason,
  assertRunCommandGone,
  DIGEST_REF,
  driverFor,
  leases,
  newInput,
  runBuild,
  runUntilStopped,
  scenario,
  succeed,
  until,
  useLocalCloud,
  vmRequests,
  type Scenario,
} from "./support.js";

useLocalCloud();

type Activities = ReturnType<typeof activitiesFor>;

/** Runs one activity as the host would (its input and output cross as JSON). */
async function invoke<K extends ActivityName>(
  activities: Activities,
  name: K,
  input: ActivityInput<K>,
): Promise<ActivityOutput<K>> {
  const handler = activities.get(name) as (input: unknown) => Promise<unknown>;
  return (await handler(JSON.parse(JSON.stringify(input)))) as ActivityOutput<K>;
}

/** The scripts the "VM" started, by build id; `inner` does the work (default: succeed). */
function countingStarts(inner: RunCommandExecutor): {
  starts: Map<string, number>;
  executor: RunCommandExecutor;
} {
  const starts = new Map<string, number>();
  return {
    starts,
    executor: (run) => {
      const id = run.parameters.FASTBUILD_BUILD_ID ?? "";
      starts.set(id, (starts.get(id) ?? 0) + 1);
      return inner(run);
    },
  };
}

const commandPuts = (s: Scenario, buildId: string) =>
  vmRequests(s, "PUT", new RegExp(`/runcommands/fb-${buildId}$`, "i"));
const scheduled = (driver: ReturnType<typeof driverFor>) =>
  driver
    .getHistory()
    .filter((e) => e.EventType === HistoryEventType.TaskScheduled)
    .map((e) => e.Name);

/** A started build's environment, its lease and the start's input, as the orchestrator would send them. */
async function startedBuild(s: Scenario) {
  const activities = activitiesFor(s);
  const input = newInput(s);
  const env: ResolvedEnvironment = await invoke(activities, ACTIVITIES.resolveEnvironment, {
    environment: s.env.name,
  });
  const acquired = await invoke(activities, ACTIVITIES.acquireLease, {
    builderKey: env.builderKey,
    buildId: input.buildId,
    leaseMs: env.limits.leaseMs,
  });
  assert.ok(acquired.acquired);
  const lease: RenewLeaseInput = {
    builderKey: env.builderKey,
    buildId: input.buildId,
    generation: acquired.generation,
    leaseMs: env.limits.leaseMs,
  };
  const start: StartBuildInput = {
    buildId: input.buildId,
    environment: env,
    sourceDigest: input.sourceDigest,
    baseKey: input.baseKey,
    rebuildBase: false,
    callbackToken: input.callbackToken,
    timeoutSeconds: 600,
    lease,
  };
  return { activities, input, env, lease, start };
}

/** Another build takes the builder, as it would once this build's lease expired. */
async function takeOver(s: Scenario, holder: string): Promise<void> {
  await mutateRecord(leases, builderKey(s.vm), (record) => ({
    record: {
      ...record,
      holder,
      generation: record.generation + 1,
      leaseExpiresAt: new Date(Date.now() + 600_000).toISOString(),
      acquiredAt: new Date().toISOString(),
    },
    result: undefined,
  }));
}

describe("every activity is idempotent when it runs again (issue 14 item 2)", () => {
  it("a start run again while its script runs starts one script with one PUT (issue 15.1)", async () => {
    const s = scenario({ powerState: "running" });
    const { starts, executor } = countingStarts(runUntilStopped(s));
    arm.setRunCommandExecutor(executor);
    const { activities, input, start } = await startedBuild(s);

    const first = await invoke(activities, ACTIVITIES.startBuild, start);
    await until(() => starts.get(input.buildId) === 1, "the script started");
    const again = await invoke(activities, ACTIVITIES.startBuild, start);
    assert.deepEqual(again, { kind: "managed", name: first.name });
    assert.equal(commandPuts(s, input.buildId).length, 1, "one PUT: the retry read the command first");
    assert.equal(starts.get(input.buildId), 1, "the script was not started again");

    // Stopping it twice (a re-delivered cancel, a delete of a command already gone) is success.
    const handle: BuildCommandHandle = { kind: "managed", name: first.name };
    await invoke(activities, ACTIVITIES.cancelBuild, { vm: s.vm, handle });
    await invoke(activities, ACTIVITIES.cancelBuild, { vm: s.vm, handle });
    await assertRunCommandGone(s, input.buildId);
  });

  it("a start whose PUT Azure accepted but whose operation poll failed is retried without starting the script again (issue 15.1)", async () => {
    const s = scenario({ powerState: "running" });
    const { starts, executor } = countingStarts(succeed());
    arm.setRunCommandExecutor(executor);
    const input = newInput(s);
    // The PUT lands; the poll of its operation fails (the SDK's own retries are off here).
    arm.inject({
      method: "GET",
      path: /\/providers\/Microsoft\.Compute\/locations\/[^/]+\/operations\//i,
      response: { status: 500 },
    });
    const { status, driver } = await runBuild(s, input, "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
    assert.equal(
      scheduled(driver).filter((name) => name === ACTIVITIES.startBuild).length,
      2,
      "the start was retried",
    );
    assert.equal(commandPuts(s, input.buildId).length, 1);
    assert.equal(starts.get(input.buildId), 1, "one script run for the build");
  });

  it("acquire, renew and release run again leave one holder with one generation", async () => {
    const s = scenario({ powerState: "running" });
    const { activities, input, env, lease } = await startedBuild(s);
    const again = await invoke(activities, ACTIVITIES.acquireLease, {
      builderKey: env.builderKey,
      buildId: input.buildId,
      leaseMs: env.limits.leaseMs,
    });
    assert.deepEqual(
      again.acquired && again.generation,
      lease.generation,
      "the same generation, not a new one",
    );
    await invoke(activities, ACTIVITIES.renewLease, lease);
    await invoke(activities, ACTIVITIES.renewLease, lease);
    const held = await leases.read(env.builderKey);
    assert.equal(held?.record.holder, input.buildId);
    assert.equal(held?.record.generation, lease.generation);
    assert.deepEqual(held?.record.queue, []);
    const release = { builderKey: env.builderKey, buildId: input.buildId, generation: lease.generation };
    await invoke(activities, ACTIVITIES.releaseLease, release);
    await invoke(activities, ACTIVITIES.releaseLease, release);
    const released = await leases.read(env.builderKey);
    assert.equal(released?.record.holder, undefined);
    assert.equal(released?.record.generation, lease.generation);
    // A renew after the release is refused, naming what happened.
    await assert.rejects(invoke(activities, ACTIVITIES.renewLease, lease), (error: unknown) => {
      const failure = decodeActivityFailure(error);
      assert.equal(failure.code, "LeaseLost");
      assert.match(failure.message, /was released, and nobody holds the builder now/);
      return true;
    });
  });

  it("a stop run again deallocates once, and never once the builder is another build's", async () => {
    const s = scenario({ powerState: "running" });
    const { activities, input, lease } = await startedBuild(s);
    const first = await invoke(activities, ACTIVITIES.stopBuilder, { vm: s.vm, lease });
    const again = await invoke(activities, ACTIVITIES.stopBuilder, { vm: s.vm, lease });
    assert.equal(first.powerState, "deallocated");
    assert.equal(again.powerState, "deallocated");
    assert.equal(vmRequests(s, "POST", /\/deallocate$/i).length, 1, "one deallocate");

    // The VM is started again for another build, which now holds the lease: a late stop leaves it alone.
    await invoke(activities, ACTIVITIES.startVm, { vm: s.vm });
    await takeOver(s, `other-${input.buildId}`);
    await assert.rejects(
      invoke(activities, ACTIVITIES.stopBuilder, { vm: s.vm, lease }),
      (error: unknown) => {
        const failure = decodeActivityFailure(error);
        assert.equal(failure.code, "LeaseLost");
        assert.match(failure.message, new RegExp(`build other-${input.buildId} took the builder`));
        return true;
      },
    );
    assert.equal(vmRequests(s, "POST", /\/deallocate$/i).length, 1);
    assert.equal(arm.getVm(s.vm)?.powerState, "running");
  });

  it("a deploy run again makes one revision, also after another build's deploy landed in between (issue 15.4)", async () => {
    const s = scenario();
    const activities = activitiesFor(s);
    const buildId = newInput(s).buildId;
    const deploy = {
      app: appRef(s),
      containerName: "web",
      image: DIGEST_REF,
      revisionSuffix: revisionSuffix(buildId),
    };
    const settled = () =>
      until(
        () => arm.getContainerApp(appRef(s))?.provisioningState === "Succeeded",
        "the app's update finished",
      );

    const first = await invoke(activities, ACTIVITIES.deployImage, deploy);
    await settled();
    assert.deepEqual(await invoke(activities, ACTIVITIES.deployImage, deploy), first);
    assert.equal(appPatches(s), 1, "one PATCH: the second run found its own revision");

    await createContainerAppsGateway(gatewayOptions(arm)).updateImage(appRef(s), {
      containerName: "web",
      image: `${DIGEST_REF.split("@")[0]}:other`,
      revisionSuffix: "bother",
    });
    await settled();
    assert.deepEqual(await invoke(activities, ACTIVITIES.deployImage, deploy), first);
    assert.equal(appPatches(s), 2, "no PATCH of ours over the other build's deploy");
    assert.equal(arm.getContainerApp(appRef(s))?.latestRevisionName, `${s.env.containerApp}--bother`);
  });

  it("a suffix taken by a revision with another image is refused with what to do", async () => {
    const s = scenario();
    const activities = activitiesFor(s);
    const suffix = revisionSuffix(newInput(s).buildId);
    await createContainerAppsGateway(gatewayOptions(arm)).updateImage(appRef(s), {
      containerName: "web",
      image: "registry.example.test/team/app:someone-else",
      revisionSuffix: suffix,
    });
    await until(
      () => arm.getContainerApp(appRef(s))?.provisioningState === "Succeeded",
      "the app's update finished",
    );
    await assert.rejects(
      invoke(activities, ACTIVITIES.deployImage, {
        app: appRef(s),
        containerName: "web",
        image: DIGEST_REF,
        revisionSuffix: suffix,
      }),
      (error: unknown) => {
        const failure = decodeActivityFailure(error);
        assert.equal(failure.code, "ContainerAppRevisionSuffixConflict");
        assert.equal(failure.retryable, false);
        assert.match(failure.hint ?? "", /start the build again/);
        return true;
      },
    );
  });

  it("a build's activity row written twice is one row", async () => {
    const s = scenario();
    const activities = activitiesFor(s);
    const row = {
      builderKey: builderKey(s.vm),
      buildId: newInput(s).buildId,
      environment: s.env.name,
      startedAt: "2030-01-01T12:00:00.000Z",
      endedAt: "2030-01-01T12:05:00.000Z",
      outcome: "succeeded",
      reason: "ok",
      vmMinutes: 5,
    };
    await invoke(activities, ACTIVITIES.recordBuild, row);
    await invoke(activities, ACTIVITIES.recordBuild, { ...row, vmMinutes: 6 });
    const rows = (await leases.listBuilds(builderKey(s.vm))).filter((r) => r.buildId === row.buildId);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.vmMinutes, 6, "the last run's row counts");
  });
});

describe("on the durable driver's at-least-once faults (issue 14 item 2)", () => {
  it("a build whose every activity the host runs twice (a stop before each checkpoint) has each effect once", async () => {
    const s = scenario();
    const { starts, executor } = countingStarts(succeed());
    arm.setRunCommandExecutor(executor);
    const input = newInput(s);
    const { status, driver } = await runBuild(
      s,
      input,
      "V3",
      (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
      {
        faults: { redeliver: (call) => call.delivery === 1 },
      },
    );
    await driver.settled();
    assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
    assert.equal(starts.get(input.buildId), 1, "one script run");
    assert.equal(commandPuts(s, input.buildId).length, 1, "one run command PUT");
    assert.equal(appPatches(s), 1, "one deploy PATCH");
    assert.equal(vmRequests(s, "POST", /\/start$/i).length, 1, "one VM start");
    await assertRunCommandGone(s, input.buildId);
  });

  it("a cancelled build whose stop activities run twice deletes its command and deallocates nothing", async () => {
    const s = scenario({ powerState: "running" });
    const { starts, executor } = countingStarts(runUntilStopped(s));
    arm.setRunCommandExecutor(executor);
    const input = newInput(s);
    const driver = driverFor(s, input, "V3", undefined, {
      faults: { redeliver: (call) => call.delivery === 1 },
    });
    driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    const done = driver.run();
    await until(() => starts.get(input.buildId) === 1, "the script started");
    driver.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "test" });
    const instance = await done;
    await driver.settled();
    assert.equal((instance.output as { phase: string }).phase, "cancelled");
    assert.equal(starts.get(input.buildId), 1);
    assert.equal(vmRequests(s, "POST", /\/deallocate$/i).length, 0);
    await assertRunCommandGone(s, input.buildId);
    assert.equal((await leases.read(builderKey(s.vm)))?.record.holder, undefined);
  });
});

describe("a failed start leaves no script running (issue 15.2)", () => {
  it("the cleanup deletes the command by its name before the lease goes back, though the start never returned a handle", async () => {
    const s = scenario({ powerState: "running" });
    let running = 0;
    const { starts, executor } = countingStarts(
      runUntilStopped(s, (run) => {
        running++;
        run.signal.addEventListener("abort", () => running--);
      }),
    );
    arm.setRunCommandExecutor(executor);
    const input = newInput(s);
    // The first PUT lands but its poll fails; every retry then fails reading the command (below).
    arm.inject({
      method: "GET",
      path: /\/providers\/Microsoft\.Compute\/locations\/[^/]+\/operations\//i,
      response: { status: 500 },
    });
    const runningAtRelease: number[] = [];
    let retried = false;
    const wrap = (activities: ReadonlyMap<string, ActivityHandler>) =>
      new Map(
        [...activities].map(([name, handler]): [string, ActivityHandler] => [
          name,
          name === ACTIVITIES.releaseLease
            ? (data, context) => {
                runningAtRelease.push(running);
                return handler(data, context);
              }
            : name === ACTIVITIES.startBuild
              ? async (data, context) => {
                  try {
                    return await handler(data, context);
                  } finally {
                    if (!retried) {
                      retried = true;
                      // The accepted PUT's script gets going; from now on the command cannot be read.
                      await until(() => starts.get(input.buildId) === 1, "the script started");
                      arm.inject({
                        method: "GET",
                        path: new RegExp(`/runcommands/fb-${input.buildId}$`, "i"),
                        times: 20,
                        response: { status: 500 },
                      });
                    }
                  }
                }
              : handler,
        ]),
      );
    try {
      const driver = driverFor(s, input, "V3", wrap);
      driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
      const instance = await driver.run();
      const status = instance.output as BuildStatus;
      assert.equal(status.phase, "failed");
      assert.match(status.error?.message ?? "", /500/);
      // A 5xx that outlasts the retries: what it was, the command stopped by name, a hint.
      assertReason(
        status,
        status.error?.code ?? "",
        /still failed after every retry .*; its build command fb-\S+ was deleted, which stops its script; builder \S+ was given back$/,
      );
      assert.match(status.error?.hint ?? "", /through every retry: start the build again in a few minutes/);
      assert.equal(starts.get(input.buildId), 1);
      assert.deepEqual(runningAtRelease, [0], "the script was stopped before the lease went back");
    } finally {
      arm.clearFaults();
    }
    await assertRunCommandGone(s, input.buildId);
  });
});

describe("the lease is confirmed right before the command starts (issue 15.3)", () => {
  it("a build whose builder another build took starts nothing and ends LeaseLost, naming that build", async () => {
    const s = scenario({ powerState: "running" });
    const { starts, executor } = countingStarts(succeed());
    arm.setRunCommandExecutor(executor);
    const input = newInput(s);
    const other = `other-${input.buildId}`;
    const wrap = (activities: ReadonlyMap<string, ActivityHandler>) =>
      new Map(
        [...activities].map(([name, handler]): [string, ActivityHandler] => [
          name,
          name === ACTIVITIES.startBuild
            ? async (data, context) => {
                await takeOver(s, other);
                return handler(data, context);
              }
            : handler,
        ]),
      );
    const driver = driverFor(s, input, "V3", wrap);
    driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    const instance = await driver.run();
    const status = instance.output as {
      phase: string;
      error?: { code: string; message: string; hint?: string };
    };
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "LeaseLost");
    assert.match(status.error?.message ?? "", new RegExp(`build ${other} took the builder`));
    assert.match(status.error?.hint ?? "", /FASTBUILD_LEASE_MINUTES/);
    assertReason(
      status as BuildStatus,
      "LeaseLost",
      /its lease on builder \S+ was lost \(another build may use the builder now\)$/,
    );
    assert.equal(commandPuts(s, input.buildId).length, 0, "no run command was started");
    assert.equal(starts.get(input.buildId), undefined);
    assert.equal(
      (await leases.read(builderKey(s.vm)))?.record.holder,
      other,
      "the other build keeps the builder",
    );
    assert.equal(vmRequests(s, "POST", /\/deallocate$/i).length, 0, "the builder was not touched");
  });

  for (const version of [2, 1] as const) {
    it(`the waits between VM-start retries renew the lease${version === 1 ? " (not on version 1's path, kept for its in-flight builds)" : ""}`, async () => {
      const s = scenario({ builds: { leaseMinutes: 1 } });
      arm.setRunCommandExecutor(succeed());
      arm.inject({
        operation: "start",
        vmName: s.vm.vmName,
        times: 3,
        error: { code: "AllocationFailed", message: "no capacity" },
      });
      const input = newInput(s, { orchestratorVersion: version === 1 ? undefined : version });
      const { status, driver } = await runBuild(s, input, "V3", (d) =>
        d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
      );
      assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
      const names = scheduled(driver);
      const lastStart = names.lastIndexOf(ACTIVITIES.startVm);
      const renewals = names
        .slice(names.indexOf(ACTIVITIES.startVm), lastStart)
        .filter((n) => n === ACTIVITIES.renewLease);
      // Retries wait 15, 30 and 60 s: a 1-minute lease is renewed every 30 s of them.
      if (version === 2) assert.ok(renewals.length >= 3, `renewals between the starts: ${renewals.length}`);
      else assert.equal(renewals.length, 0);
    });
  }
});
