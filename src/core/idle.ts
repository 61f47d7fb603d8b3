/**
 * Idle shutdown: deallocate a builder nobody has used for a while. The decision goes through the
 * builder lease: the shutdown *takes the lease* (holder `idle-shutdown`) by compare-and-set before
 * it deallocates, and gives it back afterwards. A build that takes the lease at the same moment
 * wins or loses that same compare-and-set, so a build and a deallocation never overlap; a build
 * arriving during the shutdown queues behind it and starts the VM again when it gets the lease.
 */
import {
  IDLE_SHUTDOWN_HOLDER,
  RECOVERY_HOLDER,
  decideRelease,
  isLeaseFresh,
  isQueueEntryLive,
  type BuilderRecord,
} from "./lease.js";
import type { PowerState } from "./ports.js";

export interface IdlePolicy {
  /** No build started or ended for this long → deallocate. */
  idleMs: number;
  /** How long the shutdown may hold the lease (covers the deallocate call). */
  shutdownLeaseMs: number;
  /** Queued builds not seen for this long do not keep the builder up. */
  queueStaleMs: number;
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
 * Deallocate only when the VM is up, no lease is fresh, no live build is queued, and the last
 * activity is older than the idle window. A record with no activity at all (never used through
 * fast-build) counts as idle: somebody started the VM by hand, and it costs money.
 */
export function decideIdleShutdown(
  record: BuilderRecord,
  powerState: PowerState,
  now: Date,
  policy: IdlePolicy,
): IdleDecision {
  if (powerState === "deallocated" || powerState === "deallocating") {
    return { kind: "keep", reason: `builder is already ${powerState}` };
  }
  if (isLeaseFresh(record, now)) return { kind: "keep", reason: `leased by ${record.holder ?? "?"}` };
  const waiting = record.queue.filter((entry) => isQueueEntryLive(entry, now, policy.queueStaleMs));
  if (waiting.length > 0) return { kind: "keep", reason: `${waiting.length} build(s) queued` };
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
