/**
 * Idle shutdown: deallocate a builder nobody has used for a while. The decision goes through the
 * builder lease: the shutdown *takes the lease* (holder `idle-shutdown`) by compare-and-set before
 * it deallocates, and gives it back afterwards. A build that takes the lease at the same moment
 * wins or loses that same compare-and-set, so a build and a deallocation never overlap; a build
 * arriving during the shutdown queues behind it and starts the VM again when it gets the lease.
 */
import { RUN_COMMAND_PREFIX } from "./buildInput.js";
import {
  IDLE_SHUTDOWN_HOLDER,
  RECOVERY_HOLDER,
  decideRelease,
  isLeaseFresh,
  isQueueEntryLive,
  type BuilderRecord,
} from "./lease.js";
import type { BusyCommand, ExecutionState, PowerState } from "./ports.js";

export interface IdlePolicy {
  /** No build started or ended for this long → deallocate. */
  idleMs: number;
  /** How long the shutdown may hold the lease (covers the deallocate call). */
  shutdownLeaseMs: number;
  /** Queued builds not seen for this long do not keep the builder up. */
  queueStaleMs: number;
  /**
   * A builder's heartbeat younger than this (by the function app's clock, either way: instances'
   * clocks may differ a little) says a build still runs on it.
   */
  heartbeatFreshMs: number;
}

/**
 * What the VM itself says about fast-build's run commands, read just before the decision:
 * - `read`: the commands still busy (none: the VM runs no build);
 * - `unreadable`: Azure could not be asked (a fault, a throttle): the builder is kept, since
 *   "could not look" must never read as "nothing runs";
 * - `unsupported`: the hybrid profile's action Run Command leaves nothing to list; the heartbeat
 *   is then the only signal besides the lease.
 */
export type VmCommandsSignal =
  | { kind: "read"; busy: readonly BusyCommand[] }
  | { kind: "unreadable"; reason: string }
  | { kind: "unsupported" };

/** The last heartbeat a build script posted from this builder, when the function app received it. */
export interface LastHeartbeat {
  buildId: string;
  /** The function app's clock at receipt (the VM's clock is never compared with ours). */
  at: string;
}

/** The two signals independent of the lease, and the warm hours, that decideIdleShutdown weighs. */
export interface IdleSignals {
  commands: VmCommandsSignal;
  heartbeat: LastHeartbeat | undefined;
  /** How many builders the environment's warm hours want up now, and why (src/core/warmHours.ts). */
  warm: { count: number; reason?: string };
  /**
   * Whether the build named on an expired, never released lease still runs (its orchestration's
   * durable status, which survives a restart of the function app). Undefined when no build holds
   * an expired lease.
   */
  expiredHolder?: { buildId: string; running: boolean };
}

/** Signals that all say "nothing runs, not warm" (a VM that is off; tests of the lease alone). */
export const QUIET_SIGNALS: IdleSignals = {
  commands: { kind: "read", busy: [] },
  heartbeat: undefined,
  warm: { count: 0 },
};

const BUSY_EXECUTION: readonly (ExecutionState | undefined)[] = ["Pending", "Running"];
const BUSY_PROVISIONING: readonly string[] = ["creating", "updating"];

/**
 * A run command counts as a running build while its script is pending or running, or while its
 * PUT is still being applied (provisioning Creating/Updating: the handler may be downloading the
 * script, and the instance view says nothing yet). Finished, failed or cancelled commands do not.
 */
export function isBuildCommandBusy(
  command: Pick<BusyCommand, "executionState" | "provisioningState">,
): boolean {
  return (
    BUSY_EXECUTION.includes(command.executionState) ||
    BUSY_PROVISIONING.includes((command.provisioningState ?? "").toLowerCase())
  );
}

/** `40 s`, `3 min`: how long ago, for a reason a person reads. */
function ago(ms: number): string {
  const seconds = Math.round(Math.abs(ms) / 1000);
  const text = seconds < 120 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
  return ms < 0 ? `${text} ahead of this clock` : `${text} ago`;
}

/**
 * Why the VM's own signals say a build runs on it, or undefined when they do not. Any doubt keeps
 * the builder: a deallocation in the middle of a build loses the build, while a builder kept one
 * more timer tick costs a minute of VM time.
 */
export function vmBusyReason(signals: IdleSignals, now: Date, heartbeatFreshMs: number): string | undefined {
  const { commands, heartbeat, expiredHolder } = signals;
  if (expiredHolder?.running) {
    return `build ${expiredHolder.buildId}'s lease expired, but its orchestration still runs: it gives the builder back when it ends`;
  }
  if (commands.kind === "read" && commands.busy.length > 0) {
    const first = commands.busy[0]!;
    const build = first.name.startsWith(RUN_COMMAND_PREFIX)
      ? first.name.slice(RUN_COMMAND_PREFIX.length)
      : first.name;
    const state = first.executionState ?? `provisioning ${first.provisioningState ?? "?"}`;
    const more = commands.busy.length > 1 ? ` (and ${commands.busy.length - 1} more)` : "";
    return `the VM is running build ${build}'s command ${first.name} (${state})${more}`;
  }
  if (commands.kind === "unreadable") {
    return `the VM's run commands could not be read (${commands.reason}); the next check decides`;
  }
  if (heartbeat !== undefined) {
    const age = now.getTime() - Date.parse(heartbeat.at);
    if (Number.isFinite(age) && Math.abs(age) < heartbeatFreshMs) {
      return `build ${heartbeat.buildId}'s heartbeat ${ago(age)}`;
    }
  }
  return undefined;
}

export type IdleDecision =
  | { kind: "keep"; reason: string; shutdownAt?: string }
  | { kind: "deallocate"; record: BuilderRecord; generation: number };

/**
 * When the idle timer will deallocate this builder if nothing happens (undefined: not scheduled,
 * while a lease is fresh; without `now`, while anyone holds it). An expired lease does not hide the
 * last activity: a warm recorded after a build's lease lapsed still keeps the builder up.
 */
export function idleShutdownAt(record: BuilderRecord, idleMs: number, now?: Date): string | undefined {
  if (record.lastActivityAt === undefined) return undefined;
  if (record.holder !== undefined && (now === undefined || isLeaseFresh(record, now))) return undefined;
  return new Date(Date.parse(record.lastActivityAt) + idleMs).toISOString();
}

/**
 * Deallocate only when the VM is up, no lease is fresh, no live build is queued, the VM itself
 * runs no build command and no build's heartbeat is fresh, the warm hours do not want it up, and
 * the last activity is older than the idle window. A record with no activity at all (never used
 * through fast-build) counts as idle: somebody started the VM by hand, and it costs money.
 *
 * Why two signals besides the lease: a lease expires by the clock alone, so one that lapsed while
 * the function app could not renew it (a deploy, an outage) would read as a free builder in the
 * middle of a build. The VM's run commands and the build's heartbeats come from the builder, not
 * from the lease, and either one saying "busy" keeps it.
 */
export function decideIdleShutdown(
  record: BuilderRecord,
  powerState: PowerState,
  now: Date,
  policy: IdlePolicy,
  signals: IdleSignals,
): IdleDecision {
  if (powerState === "deallocated" || powerState === "deallocating") {
    return { kind: "keep", reason: `builder is already ${powerState}` };
  }
  if (isLeaseFresh(record, now)) return { kind: "keep", reason: `leased by ${record.holder ?? "?"}` };
  const waiting = record.queue.filter((entry) => isQueueEntryLive(entry, now, policy.queueStaleMs));
  if (waiting.length > 0) return { kind: "keep", reason: `${waiting.length} build(s) queued` };
  const busy = vmBusyReason(signals, now, policy.heartbeatFreshMs);
  if (busy !== undefined) return { kind: "keep", reason: busy };
  if (signals.warm.count > 0) return { kind: "keep", reason: signals.warm.reason ?? "warm hours" };
  const shutdownAt = idleShutdownAt(record, policy.idleMs, now);
  if (shutdownAt !== undefined && Date.parse(shutdownAt) > now.getTime()) {
    return { kind: "keep", reason: "recently used", shutdownAt };
  }
  const generation = record.generation + 1;
  return {
    kind: "deallocate",
    generation,
    record: {
      ...record,
      holder: IDLE_SHUTDOWN_HOLDER,
      generation,
      leaseExpiresAt: new Date(now.getTime() + policy.shutdownLeaseMs).toISOString(),
      acquiredAt: now.toISOString(),
    },
  };
}

export type WarmDecision =
  | { kind: "recorded"; record: BuilderRecord }
  | { kind: "in-use"; holder: string }
  | { kind: "shutting-down"; since: string | undefined };

/**
 * `fast-build warm` counts as use of the builder: the same `lastActivityAt` that a build's start
 * and end set, so the idle rule above (and `idleShutdownAt`) needs no case of its own. It is one
 * compare-and-set on the record, without taking the lease (a warm must never make a build queue):
 * - an idle check that read the record before this write loses its own compare-and-set and
 *   decides again on the next tick, with the fresh activity; one reading after it keeps the VM;
 * - a fresh lease means the VM is in use (a build) or on its way down (the idle shutdown itself):
 *   nothing is written; the caller must not start a VM the shutdown is deallocating.
 * A later activity already on the record is kept (clocks of two hosts may differ slightly).
 */
export function decideWarm(record: BuilderRecord, now: Date): WarmDecision {
  if (isLeaseFresh(record, now)) {
    return record.holder === IDLE_SHUTDOWN_HOLDER
      ? { kind: "shutting-down", since: record.acquiredAt }
      : { kind: "in-use", holder: record.holder ?? "?" };
  }
  const at = now.toISOString();
  const last = record.lastActivityAt;
  return {
    kind: "recorded",
    record: { ...record, lastActivityAt: last !== undefined && last > at ? last : at },
  };
}

/**
 * Gives the shutdown's lease back once the VM is deallocated. It does not count as activity: the
 * idle clock keeps the time of the last build, and the shutdown's minutes are not build minutes.
 */
export function finishIdleShutdown(record: BuilderRecord, generation: number, now: Date): BuilderRecord {
  const released = decideRelease(record, IDLE_SHUTDOWN_HOLDER, generation, now).record;
  if (record.holder !== IDLE_SHUTDOWN_HOLDER || record.generation !== generation) {
    return released;
  }
  return { ...released, lastActivityAt: record.lastActivityAt, vmMinutesTotal: record.vmMinutesTotal };
}

/**
 * The build holding a fresh lease on this builder, if a build holds it (not the builder functions
 * themselves). The idle timer asks whether that build's orchestration still runs.
 */
export function leaseHoldingBuild(record: BuilderRecord, now: Date): string | undefined {
  const holder = record.holder;
  if (holder === undefined || holder === IDLE_SHUTDOWN_HOLDER || holder === RECOVERY_HOLDER) return undefined;
  return isLeaseFresh(record, now) ? holder : undefined;
}

/**
 * Takes the lease from a build whose orchestration ended without giving it back (it crashed, or
 * was terminated: neither runs the build's cleanup). The recovery holds it while it stops that
 * build's command, then gives it back; queued builds wait behind it and never beside the orphaned
 * script. The orphan's minutes on the VM count as build minutes.
 */
export function decideRecovery(
  record: BuilderRecord,
  now: Date,
  leaseMs: number,
): { record: BuilderRecord; generation: number } {
  const orphan = record.holder;
  const generation = record.generation + 1;
  const minutes = (now.getTime() - Date.parse(record.acquiredAt ?? "")) / 60_000;
  return {
    generation,
    record: {
      ...record,
      holder: RECOVERY_HOLDER,
      generation,
      leaseExpiresAt: new Date(now.getTime() + leaseMs).toISOString(),
      acquiredAt: now.toISOString(),
      queue: record.queue.filter((entry) => entry.buildId !== orphan),
      vmMinutesTotal: record.vmMinutesTotal + (Number.isFinite(minutes) && minutes > 0 ? minutes : 0),
    },
  };
}

/**
 * Gives the recovery's lease back. The orphaned build's end is the builder's last activity (the
 * idle clock starts from now); the recovery's own minutes are not build minutes.
 */
export function finishRecovery(record: BuilderRecord, generation: number, now: Date): BuilderRecord {
  const released = decideRelease(record, RECOVERY_HOLDER, generation, now).record;
  if (record.holder !== RECOVERY_HOLDER || record.generation !== generation) return released;
  return { ...released, vmMinutesTotal: record.vmMinutesTotal };
}
