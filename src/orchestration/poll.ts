/**
 * Polling Azure from the orchestrator: probe, and until the probe says done or the deadline
 * passes, sleep a backoff (durable timer, interrupted by a cancel) and renew the builder lease.
 * Where Azure offers an event (the builder's completion callback) the orchestrator waits for it
 * and polls only as a fallback; where only polling exists, the poll starts at about a second and
 * backs off gently while the awaited thing is expected, then settles at a slower pace.
 */
import type { Task } from "durable-functions";
import { backoffDelayMs, type BackoffPolicy } from "../core/backoff.js";
import type { RunContext, RunInput } from "./context.js";
import type { BuilderLease } from "./lease.js";

/**
 * How one poll waits: `backoffDelayMs` over `firstMs`/`factor`/`maxMs` for the first `expectedMs`
 * of the poll (how long the awaited thing usually takes), then, for a thing that is late, the
 * same formula again from `maxMs` by {@link LATE_FACTOR} up to `lateMaxMs`, so a stuck wait does
 * not fill the orchestration's history with reads.
 */
export interface PollPolicy extends BackoffPolicy {
  expectedMs: number;
  lateMaxMs: number;
}

/** How fast a late poll's waits grow from the policy's `maxMs` to its `lateMaxMs`. */
export const LATE_FACTOR = 1.5;

/** A poll that keeps its one schedule however long it runs. */
const NEVER_LATE = Number.POSITIVE_INFINITY;

/**
 * Every poll of the orchestrator, in one table (waits in ms). Changing a number changes timer
 * times only, never the order of activities and timers, so in-flight builds replay unchanged.
 *
 * - `deploy`: the new revision's health. Container Apps revisions are usually healthy in 10-60 s;
 *   a read every second (plus its round trip, 0.5 s say) sees one healthy at 25 s by 25.5 s
 *   (18 reads; the 1 s → 1.5 s schedule before saw it by 27 s with 14, and the 5 s → 30 s one
 *   at up to 40.6 s), about 80 reads in the first two minutes, then every 15 s: about 140 over a
 *   15-minute deploy timeout. From orchestrator version 6 a read is one ARM request (the
 *   revision; two before, with the app), so this costs fewer requests than the 1.5 s schedule
 *   did. ARM's read limit is a bucket of 250 per subscription refilled at 25 a second
 *   (https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling).
 * - `builderReady`: the VM's power state and agent after a start (a deallocated VM takes 30-90 s):
 *   at most 2 s for three minutes (a VM ready at 60 s is seen by 62.4 s, 27 reads), then every
 *   15 s: about 100 reads over the 10-minute timeout.
 * - `queue`: the lease of a builder another build holds; the build ahead may take minutes, so at
 *   most 5 s for ten minutes (about 120 lease reads), then every 15 s as before (an hour in the
 *   queue: about 310 reads, 240 before).
 * - `command`: the build command's instance view, only a fallback for a lost completion callback
 *   (the callback ends the wait at once) and the source of the log tail: 5 s growing to 30 s.
 * - `exit`: after the callback, the script is only cleaning up; the grace is short anyway.
 */
export const POLLS = {
  deploy: { firstMs: 1_000, factor: 1, maxMs: 1_000, expectedMs: 120_000, lateMaxMs: 15_000 },
  builderReady: { firstMs: 1_000, factor: 1.2, maxMs: 2_000, expectedMs: 180_000, lateMaxMs: 15_000 },
  queue: { firstMs: 1_000, factor: 1.5, maxMs: 5_000, expectedMs: 600_000, lateMaxMs: 15_000 },
  command: { firstMs: 5_000, factor: 1.5, maxMs: 30_000, expectedMs: NEVER_LATE, lateMaxMs: 30_000 },
  exit: { firstMs: 1_000, factor: 1.5, maxMs: 10_000, expectedMs: NEVER_LATE, lateMaxMs: 10_000 },
} as const satisfies Record<string, PollPolicy>;

/**
 * A poll's schedule: the wait after probe `attempt`. `lateSince` is the first attempt made once
 * the poll had run `expectedMs` (the caller keeps it; undefined while the poll is within its
 * expected time).
 */
export function pollWaitMs(policy: PollPolicy, attempt: number, lateSince: number | undefined): number {
  if (lateSince === undefined) return backoffDelayMs(policy, attempt);
  // The late schedule starts where the expected one ends: the last wait, or `maxMs` once reached.
  const from = backoffDelayMs(policy, lateSince);
  return backoffDelayMs({ firstMs: from, factor: LATE_FACTOR, maxMs: policy.lateMaxMs }, attempt - lateSince);
}

/** What to poll, how often, until when, and which lease to keep meanwhile. */
export interface PollOptions<T> {
  /**
   * Reads the state once (`attempt` counts from 0); a value ends the poll with it, undefined
   * polls on. It may throw to end the build.
   */
  probe: (attempt: number) => Generator<Task, T | undefined, unknown>;
  policy: PollPolicy;
  /** When to stop (epoch ms) and what the poll then ends with (or throws); none: poll until done. */
  deadline?: { at: number; expired: () => T };
  /** Renewed between waits while the builder is this build's. */
  lease?: BuilderLease;
  /** A cancel request ends the waits (default); false: the poll runs to its end. */
  interruptible?: boolean;
}

/** Polls until `probe` gives a value or the deadline passes; see {@link PollOptions}. */
export function* pollUntil<T>(
  run: RunContext<RunInput>,
  options: PollOptions<T>,
): Generator<Task, T, unknown> {
  const { deadline, policy } = options;
  const startedAt = run.now();
  let lateSince: number | undefined;
  for (let attempt = 0; ; attempt++) {
    const done = yield* options.probe(attempt);
    if (done !== undefined) return done;
    if (deadline && run.now() >= deadline.at) return deadline.expired();
    if (lateSince === undefined && run.now() - startedAt >= policy.expectedMs) lateSince = attempt;
    const delay = pollWaitMs(policy, attempt, lateSince);
    // The last wait ends at the deadline, yet lasts a second at least: the probe after it decides.
    yield* run.sleep(
      deadline ? Math.min(delay, Math.max(1_000, deadline.at - run.now())) : delay,
      options.interruptible ?? true,
    );
    if (options.lease) yield* options.lease.keep();
  }
}
