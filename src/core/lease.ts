/**
 * The builder lease: one record per builder VM in Table Storage, changed only by compare-and-set
 * on its ETag. Whoever holds a fresh lease owns the VM: a build between acquire and release, or
 * the idle shutdown while it deallocates. Pure decisions here; `mutateRecord` applies one through
 * any `LeaseStore` (Azure Tables in production, the same over Azurite in tests).
 */
import { TransientError } from "./errors.js";
import type { RecentBuild } from "./expectedDuration.js";

/** The holder name the idle shutdown uses while it deallocates a builder. */
export const IDLE_SHUTDOWN_HOLDER = "idle-shutdown";
/** The holder name the idle timer uses while it frees a builder from a build that ended without releasing it. */
export const RECOVERY_HOLDER = "orphan-recovery";

export interface QueueEntry {
  buildId: string;
  /** When it joined the queue. */
  since: string;
  /** When it last asked; entries not refreshed within the stale window are dropped. */
  seenAt: string;
  /**
   * The build's environment and git branch (orchestrator version 7 on, builds with a branch):
   * what a newer build of the same environment and branch supersedes it by (`decideAcquire`).
   */
  environment?: string;
  branch?: string;
  /**
   * The newer build that superseded this one while it waited. It no longer counts in the queue
   * (no one waits behind it, it never takes the lease); its build learns it on its next ask,
   * which removes the entry (or the entry goes stale like any other).
   */
  supersededBy?: string;
}

/** Who is asking for the lease, for supersede: the queue entry's environment and branch. */
export interface QueueScope {
  environment: string;
  branch: string;
  /** Whether joining the queue supersedes older queued builds of this scope (the environment's setting). */
  supersede: boolean;
}

/** Whether a queued entry still waits for the lease (not superseded by a newer build). */
export function isWaiting(entry: QueueEntry): boolean {
  return entry.supersededBy === undefined;
}

/**
 * Marks every entry of the queue that `buildId` (of `scope`) supersedes; `superseded` lists them.
 * The one rule for both writers: the build joining the queue (`decideAcquire`) and `POST /builds`,
 * which marks them as soon as the newer build exists so it can tell them at once.
 */
export function markSuperseded(
  record: BuilderRecord,
  buildId: string,
  scope: QueueScope,
): { record: BuilderRecord; superseded: string[] } {
  const superseded: string[] = [];
  const queue = record.queue.map((entry) => {
    if (entry.buildId === buildId || !supersedes(scope, entry)) return entry;
    superseded.push(entry.buildId);
    return { ...entry, supersededBy: buildId };
  });
  return { record: superseded.length > 0 ? { ...record, queue } : record, superseded };
}

/**
 * Whether a build of `scope` joining the queue supersedes `entry`: the same environment and
 * branch, still waiting (a build holding the builder is never in the queue, so never superseded).
 */
export function supersedes(scope: QueueScope, entry: QueueEntry): boolean {
  return (
    scope.supersede &&
    isWaiting(entry) &&
    entry.environment === scope.environment &&
    entry.branch === scope.branch
  );
}

export interface BuilderRecord {
  /** See `builderKey` in buildInput.ts. */
  key: string;
  holder: string | undefined;
  /** Incremented by every acquisition, so a late release/renew of an old holder is recognisable. */
  generation: number;
  leaseExpiresAt: string | undefined;
  acquiredAt: string | undefined;
  /** Last time a build started or ended, or `fast-build warm` asked for the builder (drives idle shutdown). */
  lastActivityAt: string | undefined;
  queue: QueueEntry[];
  /** Minutes the VM was leased, summed over all builds. */
  vmMinutesTotal: number;
}

export interface StoredRecord {
  record: BuilderRecord;
  etag: string;
}

/** Storage for builder records and per-build activity rows. */
export interface LeaseStore {
  read(key: string): Promise<StoredRecord | undefined>;
  /** Compare-and-set: creates when `etag` is undefined; false when someone else wrote first. */
  write(record: BuilderRecord, etag: string | undefined): Promise<boolean>;
  list(): Promise<BuilderRecord[]>;
  /** Records the build's row; a succeeded build that ran the builder (`base` set) also joins the environment's recent builds. */
  recordBuild(entry: BuildActivityRecord): Promise<void>;
  /** The environment's recent builds that ran the builder and succeeded, oldest first (src/core/expectedDuration.ts). */
  recentBuilds(environment: string): Promise<RecentBuild[]>;
  /**
   * Records a build script's heartbeat from builder `key` (the last one wins). A row of its own,
   * written without a condition: a heartbeat every 30 s must never contend with the lease's
   * compare-and-set, nor make an idle check lose its own.
   */
  recordHeartbeat(key: string, heartbeat: { buildId: string; at: string }): Promise<void>;
  /** The last heartbeat recorded for builder `key`, if any. */
  readHeartbeat(key: string): Promise<{ buildId: string; at: string } | undefined>;
}

/** One row per build: what the builder was used for, and for how long. */
export interface BuildActivityRecord {
  builderKey: string;
  buildId: string;
  environment: string;
  startedAt: string;
  endedAt: string;
  outcome: string;
  reason: string;
  vmMinutes: number;
  /**
   * Set only for a build that succeeded after the builder built it: whether the base image was
   * there, and created → ended in ms (what the expected duration of later builds is made of).
   */
  base?: "hit" | "miss";
  durationMs?: number;
}

export function emptyRecord(key: string): BuilderRecord {
  return {
    key,
    holder: undefined,
    generation: 0,
    leaseExpiresAt: undefined,
    acquiredAt: undefined,
    lastActivityAt: undefined,
    queue: [],
    vmMinutesTotal: 0,
  };
}

const ms = (iso: string | undefined): number =>
  iso === undefined ? Number.NEGATIVE_INFINITY : Date.parse(iso);

/** A queued build counts while it has asked for the lease within `staleMs` (it re-asks as it waits). */
export function isQueueEntryLive(entry: QueueEntry, now: Date, staleMs: number): boolean {
  return now.getTime() - ms(entry.seenAt) <= staleMs;
}

export function isLeaseFresh(record: BuilderRecord, now: Date): boolean {
  return record.holder !== undefined && ms(record.leaseExpiresAt) > now.getTime();
}

export type AcquireDecision =
  | { kind: "acquired"; record: BuilderRecord; generation: number; expiresAt: string }
  | { kind: "queued"; record: BuilderRecord; position: number; holder: string | undefined }
  /** A newer build of the same environment and branch superseded this one while it waited: it left the queue. */
  | { kind: "superseded"; record: BuilderRecord; by: string };

export interface LeaseTiming {
  leaseMs: number;
  /** A queued build that has not asked again within this window has gone away. */
  queueStaleMs: number;
}

/**
 * Takes the lease when it is free (no holder, or the holder's lease expired) and no live build
 * queued earlier; otherwise joins (or refreshes its place in) the FIFO queue. Asking again while
 * holding the lease is idempotent (an activity retried after a lost reply must not queue behind itself).
 *
 * With `scope`, the entry records its environment and branch, and a build joining the queue (its
 * first ask) marks every older entry of the same environment and branch that still waits as
 * superseded by it, in the same compare-and-set write: from then on those entries count for no
 * one's position and never take the lease, so a superseded build that never asks again cannot
 * hold the queue up. A superseded build asking again gets `superseded` and leaves the queue.
 */
export function decideAcquire(
  record: BuilderRecord,
  buildId: string,
  now: Date,
  timing: LeaseTiming,
  scope?: QueueScope,
): AcquireDecision {
  const at = now.toISOString();
  const expiresAt = new Date(now.getTime() + timing.leaseMs).toISOString();
  if (record.holder === buildId && isLeaseFresh(record, now)) {
    return {
      kind: "acquired",
      record: { ...record, leaseExpiresAt: expiresAt },
      generation: record.generation,
      expiresAt,
    };
  }
  const live = record.queue.filter(
    (entry) => entry.buildId === buildId || isQueueEntryLive(entry, now, timing.queueStaleMs),
  );
  const own = live.find((entry) => entry.buildId === buildId);
  if (own?.supersededBy !== undefined) {
    return {
      kind: "superseded",
      by: own.supersededBy,
      record: { ...record, queue: live.filter((entry) => entry.buildId !== buildId) },
    };
  }
  // Only a build joining supersedes: one already queued was newer than everything ahead of it
  // when it joined, and what joined after it is newer still.
  const queue =
    own === undefined && scope
      ? markSuperseded({ ...record, queue: live }, buildId, scope).record.queue
      : live;
  const mine = queue.findIndex((entry) => entry.buildId === buildId);
  const ahead = (mine < 0 ? queue : queue.slice(0, mine)).filter(isWaiting).length;
  if (!isLeaseFresh(record, now) && ahead === 0) {
    const generation = record.generation + 1;
    return {
      kind: "acquired",
      generation,
      expiresAt,
      record: {
        ...record,
        holder: buildId,
        generation,
        leaseExpiresAt: expiresAt,
        acquiredAt: at,
        lastActivityAt: at,
        queue: queue.filter((entry) => entry.buildId !== buildId),
      },
    };
  }
  const joined: QueueEntry = {
    buildId,
    since: at,
    seenAt: at,
    ...(scope ? { environment: scope.environment, branch: scope.branch } : {}),
  };
  const nextQueue =
    mine < 0
      ? [...queue, joined]
      : queue.map((entry) => (entry.buildId === buildId ? { ...entry, seenAt: at } : entry));
  return {
    kind: "queued",
    record: { ...record, queue: nextQueue },
    position: ahead + 1,
    holder: record.holder,
  };
}

export type RenewDecision =
  { kind: "renewed"; record: BuilderRecord; expiresAt: string } | { kind: "lost"; cause: string };

/**
 * Extends the lease of the holder of exactly this generation; anyone else has lost it, and
 * `cause` says to whom (a lease goes to another holder only once it expired or was released).
 */
export function decideRenew(
  record: BuilderRecord,
  holder: string,
  generation: number,
  now: Date,
  leaseMs: number,
): RenewDecision {
  if (record.holder !== holder || record.generation !== generation) {
    return { kind: "lost", cause: lossCause(record, holder, generation) };
  }
  const expiresAt = new Date(now.getTime() + leaseMs).toISOString();
  return { kind: "renewed", record: { ...record, leaseExpiresAt: expiresAt }, expiresAt };
}

function lossCause(record: BuilderRecord, holder: string, generation: number): string {
  const mine = `build ${holder}'s lease (generation ${generation})`;
  if (record.holder === undefined) return `${mine} was released, and nobody holds the builder now`;
  if (record.holder === holder) return `${mine} was replaced by its own generation ${record.generation}`;
  const taker = record.holder === IDLE_SHUTDOWN_HOLDER ? "the idle shutdown" : `build ${record.holder}`;
  return `${mine} expired and ${taker} took the builder (generation ${record.generation}) at ${record.acquiredAt ?? "an unknown time"}`;
}

/**
 * Gives the lease up (when `holder` still holds `generation`, or any generation when undefined)
 * and leaves the queue. Returns the minutes the holder had the VM. Releasing twice is harmless.
 */
export function decideRelease(
  record: BuilderRecord,
  holder: string,
  generation: number | undefined,
  now: Date,
): { record: BuilderRecord; vmMinutes: number } {
  const queue = record.queue.filter((entry) => entry.buildId !== holder);
  const holds = record.holder === holder && (generation === undefined || record.generation === generation);
  if (!holds) return { record: { ...record, queue }, vmMinutes: 0 };
  const vmMinutes = Math.max(0, (now.getTime() - ms(record.acquiredAt)) / 60_000);
  return {
    vmMinutes: Number.isFinite(vmMinutes) ? vmMinutes : 0,
    record: {
      ...record,
      queue,
      holder: undefined,
      leaseExpiresAt: undefined,
      acquiredAt: undefined,
      lastActivityAt: now.toISOString(),
      vmMinutesTotal: record.vmMinutesTotal + (Number.isFinite(vmMinutes) ? vmMinutes : 0),
    },
  };
}

/**
 * Reads, decides and writes with compare-and-set until a write wins (another writer in between
 * means the decision was made on stale data, so it is made again on the new record).
 */
export async function mutateRecord<T>(
  store: LeaseStore,
  key: string,
  decide: (record: BuilderRecord) => { record: BuilderRecord | undefined; result: T },
  attempts = 10,
): Promise<T> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const stored = await store.read(key);
    const { record, result } = decide(stored?.record ?? emptyRecord(key));
    if (record === undefined) return result;
    if (await store.write(record, stored?.etag)) return result;
  }
  // Too many writers at once: worth another try later, so transient.
  throw new TransientError(`builder record ${key} changed under us ${attempts} times in a row`, {
    code: "LeaseContention",
  });
}
