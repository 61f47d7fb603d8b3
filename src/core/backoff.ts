/**
 * The one backoff formula of the project: activity retries (core/retry.ts), the orchestrator's
 * polls while it waits on Azure (orchestration/poll.ts) and the CLI's polls of the API
 * (cli/follow.ts) all grow their waits this way, each with its own policy.
 */

/** Exponential backoff: the first wait, how much each next one grows, and where it stops growing. */
export interface BackoffPolicy {
  firstMs: number;
  factor: number;
  maxMs: number;
}

/**
 * The wait before attempt `attempt + 1`: `firstMs` for attempt 0, then each wait `factor` times the
 * one before (rounded to a whole millisecond at every step), never more than `maxMs`. Pure and
 * exact, so an orchestrator replaying its history computes the same timers every time.
 */
export function backoffDelayMs(policy: BackoffPolicy, attempt: number): number {
  let delay = Math.min(policy.maxMs, policy.firstMs);
  // Rounding at each step (not once at the end) keeps the timers an orchestration already wrote
  // into its history the same as before this formula was shared.
  for (let n = 0; n < attempt && delay < policy.maxMs; n++) {
    delay = Math.min(policy.maxMs, Math.round(delay * policy.factor));
  }
  return delay;
}
