/**
 * Polling Azure from the orchestrator: probe, and until the probe says done or the deadline
 * passes, sleep a backoff (durable timer, interrupted by a cancel) and renew the builder lease.
 */
import type { Task } from "durable-functions";
import { backoffDelayMs, type BackoffPolicy } from "../core/backoff.js";
import type { RunContext } from "./context.js";
import type { BuilderLease } from "./lease.js";

/** Polling backoff while waiting on Azure: start quick (most builds of an unchanged tree are fast), settle at 30 s. */
export const POLL = { firstMs: 5_000, factor: 1.5, maxMs: 30_000 } as const satisfies BackoffPolicy;
/** Waiting in the builder queue: the build ahead may take a while, so do not hammer the table. */
export const QUEUE_POLL = { firstMs: 2_000, factor: 1.5, maxMs: 15_000 } as const satisfies BackoffPolicy;
/**
 * After the result arrived by callback the script is only cleaning up: look often at first, so the
 * builder goes back to the queue within a second or two.
 */
export const EXIT_POLL = { firstMs: 1_000, factor: 1.5, maxMs: 10_000 } as const satisfies BackoffPolicy;

/** What to poll, how often, until when, and which lease to keep meanwhile. */
export interface PollOptions<T> {
  /**
   * Reads the state once (`attempt` counts from 0); a value ends the poll with it, undefined
   * polls on. It may throw to end the build.
   */
  probe: (attempt: number) => Generator<Task, T | undefined, unknown>;
  policy: BackoffPolicy;
  /** When to stop (epoch ms) and what the poll then ends with (or throws); none: poll until done. */
  deadline?: { at: number; expired: () => T };
  /** Renewed between waits while the builder is this build's. */
  lease?: BuilderLease;
  /** A cancel request ends the waits (default); false: the poll runs to its end. */
  interruptible?: boolean;
}

/** Polls until `probe` gives a value or the deadline passes; see {@link PollOptions}. */
export function* pollUntil<T>(run: RunContext, options: PollOptions<T>): Generator<Task, T, unknown> {
  const { deadline } = options;
  for (let attempt = 0; ; attempt++) {
    const done = yield* options.probe(attempt);
    if (done !== undefined) return done;
    if (deadline && run.now() >= deadline.at) return deadline.expired();
    const delay = backoffDelayMs(options.policy, attempt);
    // The last wait ends at the deadline, yet lasts a second at least: the probe after it decides.
    yield* run.sleep(
      deadline ? Math.min(delay, Math.max(1_000, deadline.at - run.now())) : delay,
      options.interruptible ?? true,
    );
    if (options.lease) yield* options.lease.keep();
  }
}
