/**
 * The idle shutdown's two-signal rule in a model of everything around it: three builds, the idle
 * timer, the builder VM, the lease record (compare-and-set on a version, as Table Storage's
 * ETags), the heartbeat row, function-app restarts, lease expiries, VM faults and clock skew.
 * The decisions are production's own (src/core/lease.ts, src/core/idle.ts); the model plays the
 * I/O around them in the order production does it:
 * - a build takes the lease (one compare-and-set), and its start activity renews it, removes other
 *   commands of ours, refuses to start beside one that is still busy, and puts its command: one step
 *   (one activity: seconds, against a lease of minutes; a restart in between re-runs it from the renew);
 * - the timer reads the record, then (a later step) the VM's signals, then (later still) writes
 *   its decision with compare-and-set on the version it read, then deallocates, then gives the
 *   lease back: other events interleave between each of those;
 * - a restart loses the timer's in-flight state, moves the clock on (lease expiry), and the
 *   heartbeats posted while the app was down are lost; build scripts keep running on the VM;
 * - a VM fault fails the next reads of the VM's run commands; clocks of the app's instances differ
 *   by up to ±30 s, and every decision reads its own instance's clock.
 * Invariants: the VM is never deallocated while a build's command runs on it; never two builds'
 * commands at once; and after every build ended and the time of a lease passed, the builder is free.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { RUN_COMMAND_PREFIX, runCommandName } from "../../src/core/buildInput.js";
import {
  decideIdleShutdown,
  finishIdleShutdown,
  type IdleDecision,
  type IdleSignals,
  type VmCommandsSignal,
} from "../../src/core/idle.js";
import {
  decideAcquire,
  decideRelease,
  decideRenew,
  emptyRecord,
  isLeaseFresh,
  type BuilderRecord,
} from "../../src/core/lease.js";

const LEASE_MS = 60_000;
const TIMING = { leaseMs: LEASE_MS, queueStaleMs: 3 * LEASE_MS };
const POLICY = {
  idleMs: 2 * 60_000,
  // Production's values (src/builders/idleShutdown.ts SHUTDOWN_LEASE_MS, HEARTBEAT_FRESH_MS).
  shutdownLeaseMs: 20 * 60_000,
  queueStaleMs: 3 * LEASE_MS,
  //'s value (src/builders/idleShutdown.ts HEARTBEAT_FRESH_MS).
  heartbeatFreshMs: 5 * 60_000,
};
const MAX_SKEW_MS = 30_000;
const BUILDS = ["b0", "b1", "b2"];

type Event =
  | { k: "build"; b: number; dt: number; skew: number; choice: number }
  | { k: "tick"; dt: number; skew: number }
  | { k: "restart"; downMs: number; finish: boolean }
  | { k: "vmFault"; reads: number }
  | { k: "scriptEnds"; b: number };

const event: fc.Arbitrary<Event> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant("build" as const),
      b: fc.integer({ min: 0, max: 2 }),
      dt: fc.integer({ min: 0, max: 20_000 }),
      skew: fc.integer({ min: -MAX_SKEW_MS, max: MAX_SKEW_MS }),
      choice: fc.integer({ min: 0, max: 9 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant("tick" as const),
      dt: fc.integer({ min: 0, max: 60_000 }),
      skew: fc.integer({ min: -MAX_SKEW_MS, max: MAX_SKEW_MS }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("restart" as const),
      downMs: fc.integer({ min: 0, max: 30 * 60_000 }),
      finish: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("vmFault" as const), reads: fc.integer({ min: 1, max: 3 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("scriptEnds" as const), b: fc.integer({ min: 0, max: 2 }) }),
  },
);

type BuildPhase = "new" | "queued" | "leased" | "running" | "ended" | "done";
interface Build {
  id: string;
  phase: BuildPhase;
  generation: number;
  /** The orchestration's durable status: running from its first step to its release. */
  orchestrationRunning: boolean;
}
type TimerPhase =
  | { at: "idle" }
  | { at: "read"; record: BuilderRecord; version: number }
  | { at: "decided"; decision: Extract<IdleDecision, { kind: "deallocate" }>; version: number }
  | { at: "deallocated"; generation: number };

function runModel(events: readonly Event[], hybrid: boolean): void {
  let now = Date.UTC(2030, 0, 7, 3);
  let store: { record: BuilderRecord; version: number } = {
    record: { ...emptyRecord("builder"), lastActivityAt: new Date(now).toISOString() },
    version: 1,
  };
  let heartbeat: { buildId: string; at: string } | undefined;
  let power: "running" | "deallocated" = "running";
  /** Build ids whose command runs on the VM now. */
  const commands = new Set<string>();
  let vmFaults = 0;
  let timer: TimerPhase = { at: "idle" };
  const builds: Build[] = BUILDS.map((id) => ({
    id,
    phase: "new",
    generation: 0,
    orchestrationRunning: false,
  }));

  const clock = (skew: number) => new Date(now + skew);
  /** Read, decide, compare-and-set in one step: what mutateRecord's retries amount to. */
  const mutate = (decide: (record: BuilderRecord) => BuilderRecord | undefined): void => {
    const next = decide(store.record);
    if (next) store = { record: next, version: store.version + 1 };
  };
  const cas = (record: BuilderRecord, version: number): boolean => {
    if (store.version !== version) return false;
    store = { record, version: version + 1 };
    return true;
  };
  const listCommands = (): VmCommandsSignal => {
    if (hybrid) return { kind: "unsupported" };
    if (vmFaults > 0) {
      vmFaults--;
      return { kind: "unreadable", reason: "500 InternalServerError" };
    }
    const busy = [...commands].map((id) => ({
      name: runCommandName(id),
      executionState: "Running" as const,
      provisioningState: "Succeeded",
    }));
    return { kind: "read", busy };
  };
  const endBuildOnVm = (build: Build) => {
    commands.delete(build.id);
    if (build.phase === "running") build.phase = "ended";
  };

  const stepBuild = (build: Build, at: Date, choice: number) => {
    switch (build.phase) {
      case "new":
      case "queued": {
        build.orchestrationRunning = true;
        let decided: ReturnType<typeof decideAcquire> | undefined;
        mutate((record) => (decided = decideAcquire(record, build.id, at, TIMING)).record);
        if (decided?.kind === "acquired") {
          build.phase = "leased";
          build.generation = decided.generation;
        } else build.phase = "queued";
        return;
      }
      case "leased": {
        // The start activity: renew, remove the other commands of ours, refuse beside a busy one,
        // start the VM if needed, put the command (each after a renew of the lease).
        let lost = false;
        mutate((record) => {
          const renewed = decideRenew(record, build.id, build.generation, at, LEASE_MS);
          if (renewed.kind === "lost") lost = true;
          return renewed.kind === "renewed" ? renewed.record : undefined;
        });
        if (lost) {
          build.phase = "done";
          build.orchestrationRunning = false;
          return;
        }
        if (!hybrid) {
          const others = [...commands].filter((id) => id !== build.id);
          if (others.length > 0 && vmFaults > 0) {
            // The removal failed (its listing did); the refusal lists again: a read that fails
            // too, or one that still shows a busy command, refuses the start (it is retried).
            vmFaults--;
            if (vmFaults > 0) {
              vmFaults--;
              return;
            }
            return;
          }
          for (const id of others) {
            if (id === build.id) continue;
            const other = builds.find((b) => b.id === id)!;
            endBuildOnVm(other); // deleting its run command stops its script
          }
        } else if ([...commands].some((id) => id !== build.id)) {
          // The action Run Command runs one at a time: Azure refuses a second one (409).
          return;
        }
        power = "running";
        assert.equal(
          [...commands].filter((id) => id !== build.id).length,
          0,
          `build ${build.id} started beside ${[...commands].join(", ")}`,
        );
        commands.add(build.id);
        build.phase = "running";
        return;
      }
      case "running": {
        if (choice < 5) {
          // A heartbeat; lost one time in ten (best effort).
          if (choice > 0) heartbeat = { buildId: build.id, at: at.toISOString() };
        } else if (choice < 8) {
          let lost = false;
          mutate((record) => {
            const renewed = decideRenew(record, build.id, build.generation, at, LEASE_MS);
            if (renewed.kind === "lost") lost = true;
            return renewed.kind === "renewed" ? renewed.record : undefined;
          });
          // A lost lease: the orchestration cancels its command and ends.
          if (lost) {
            endBuildOnVm(build);
            build.phase = "done";
            build.orchestrationRunning = false;
          }
        } else endBuildOnVm(build);
        return;
      }
      case "ended": {
        mutate((record) => decideRelease(record, build.id, build.generation, at).record);
        build.phase = "done";
        build.orchestrationRunning = false;
        return;
      }
      case "done":
        return;
    }
  };

  const stepTimer = (at: Date) => {
    switch (timer.at) {
      case "idle":
        timer = { at: "read", record: store.record, version: store.version };
        return;
      case "read": {
        const holder = timer.record.holder;
        const building = builds.find((b) => b.id === holder);
        if (building && isLeaseFresh(timer.record, at)) {
          // runIdleShutdown: a fresh lease held by a running orchestration is kept; one whose
          // orchestration ended is an orphan (recoverOrphan: not modelled, the build ended).
          timer = { at: "idle" };
          return;
        }
        const signals: IdleSignals = {
          commands: power === "deallocated" ? { kind: "read", busy: [] } : listCommands(),
          heartbeat,
          warm: { count: 0 },
          ...(building
            ? { expiredHolder: { buildId: building.id, running: building.orchestrationRunning } }
            : {}),
        };
        const decision = decideIdleShutdown(timer.record, power, at, POLICY, signals);
        timer =
          decision.kind === "deallocate"
            ? { at: "decided", decision, version: timer.version }
            : { at: "idle" };
        return;
      }
      case "decided":
        // The compare-and-set, and right after it (one invocation, seconds, against a shutdown
        // lease of 20 minutes) the deallocation's request.
        if (!cas(timer.decision.record, timer.version)) {
          timer = { at: "idle" };
          return;
        }
        assert.equal(commands.size, 0, `deallocated during build(s) ${[...commands].join(", ")}`);
        power = "deallocated";
        timer = { at: "deallocated", generation: timer.decision.generation };
        return;
      case "deallocated": {
        const generation = timer.generation;
        mutate((record) => finishIdleShutdown(record, generation, at));
        timer = { at: "idle" };
        return;
      }
    }
  };

  for (const e of events) {
    switch (e.k) {
      case "build":
        now += e.dt;
        stepBuild(builds[e.b]!, clock(e.skew), e.choice);
        break;
      case "tick":
        now += e.dt;
        stepTimer(clock(e.skew));
        break;
      case "restart":
        // The function app is down for downMs: the timer's state is gone (a lease it held stays
        // until it expires), heartbeats posted meanwhile are lost, scripts may finish meanwhile.
        timer = { at: "idle" };
        now += e.downMs;
        if (e.finish) for (const b of builds) if (b.phase === "running") endBuildOnVm(b);
        break;
      case "vmFault":
        vmFaults += e.reads;
        break;
      case "scriptEnds": {
        const b = builds[e.b]!;
        if (b.phase === "running") endBuildOnVm(b);
        break;
      }
    }
  }

  // No leaked lease: let every build end and a lease's time pass; the builder is then free.
  for (const b of builds) {
    if (b.phase === "running") endBuildOnVm(b);
    if (b.phase === "ended") stepBuild(b, clock(0), 0);
    if (b.phase === "leased" || b.phase === "queued" || b.phase === "new") {
      // A build that never got to run gives up (its orchestration releases on its way out).
      mutate((record) => decideRelease(record, b.id, undefined, clock(0)).record);
      b.phase = "done";
      b.orchestrationRunning = false;
    }
  }
  // A lease written by a clock up to MAX_SKEW_MS ahead, read by one up to MAX_SKEW_MS behind.
  now += Math.max(LEASE_MS, POLICY.shutdownLeaseMs) + 2 * MAX_SKEW_MS + 1;
  assert.ok(
    !isLeaseFresh(store.record, clock(MAX_SKEW_MS)) && !isLeaseFresh(store.record, clock(-MAX_SKEW_MS)),
    `the lease leaked: held by ${store.record.holder ?? "?"} until ${store.record.leaseExpiresAt ?? "?"}`,
  );
  const next = decideAcquire(store.record, "late", clock(0), TIMING);
  assert.equal(next.kind, "acquired", "a build after everything ended must get the builder");
  assert.ok(RUN_COMMAND_PREFIX.length > 0);
}

describe("idle shutdown with two signals (model, production decisions)", () => {
  it("never deallocates during a build, never runs two builds at once, never leaks the lease (10,000 interleavings)", () => {
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 150 }), fc.boolean(), (events, hybrid) =>
        runModel(events, hybrid),
      ),
      { numRuns: 10_000 },
    );
  });
});
