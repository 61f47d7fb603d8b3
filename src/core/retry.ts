/**
 * Retry decisions for activities, and how a typed error crosses the activity boundary.
 *
 * The durable host turns a thrown error into text (TaskFailed reason/details) and the orchestrator
 * gets a plain `Error` back, so the class of a `FastBuildError` is lost on the way. Activities
 * therefore throw an error whose message carries a tagged JSON summary (code, retryable, hint,
 * retry-after), and the orchestrator decodes it: permanent failures end the build at once with a
 * message a user can act on; transient ones are retried with backoff, honouring `retryAfterMs`.
 */
import { backoffDelayMs, type BackoffPolicy } from "./backoff.js";
import { describeError, isFastBuildError, TransientError } from "./errors.js";

export interface ActivityFailure {
  code: string;
  message: string;
  hint?: string;
  retryable: boolean;
  retryAfterMs?: number;
}

const OPEN = "[fastbuild-error]";
const CLOSE = "[/fastbuild-error]";

/** Wraps anything an activity threw into an `Error` the orchestrator can decode. */
export function encodeActivityError(error: unknown): Error {
  const failure: ActivityFailure = isFastBuildError(error)
    ? {
        code: error.code,
        message: error.message,
        retryable: error.retryable,
        ...(error.hint === undefined ? {} : { hint: error.hint }),
        ...(error instanceof TransientError && error.retryAfterMs !== undefined
          ? { retryAfterMs: error.retryAfterMs }
          : {}),
      }
    : // Not one of ours: a bug or an unmapped network error. Retrying a bug costs a few seconds;
      // not retrying a network blip fails a build, so lean towards retrying.
      { code: "Unexpected", message: describeError(error), retryable: true };
  const wrapped = new Error(`${failure.message} ${OPEN}${JSON.stringify(failure)}${CLOSE}`, { cause: error });
  wrapped.name = isFastBuildError(error) ? error.name : "ActivityError";
  return wrapped;
}

/** Reads the failure back from what the orchestrator caught (any text that went through the host). */
export function decodeActivityFailure(error: unknown): ActivityFailure {
  const text = error instanceof Error ? error.message : String(error);
  const start = text.indexOf(OPEN);
  const end = text.indexOf(CLOSE, start);
  if (start >= 0 && end > start) {
    try {
      const parsed = JSON.parse(text.slice(start + OPEN.length, end)) as ActivityFailure;
      if (typeof parsed.code === "string" && typeof parsed.retryable === "boolean") return parsed;
    } catch {
      // Fall through: treat as an unknown failure.
    }
  }
  return { code: "Unexpected", message: text.split("\n")[0]?.trim() ?? "unknown error", retryable: true };
}

/** How often an activity is tried at most, and the backoff between its attempts. */
export interface RetryPolicy extends BackoffPolicy {
  maxAttempts: number;
}

/**
 * Policies by what the activity talks to. ARM throttles per subscription and asks for patience
 * (Retry-After), and capacity errors (AllocationFailed) often clear within minutes, so VM start
 * waits longest. Storage and lease writes are cheap and usually recover within seconds.
 */
export const RETRY = {
  arm: { maxAttempts: 6, firstMs: 2_000, factor: 2, maxMs: 60_000 },
  vmStart: { maxAttempts: 6, firstMs: 15_000, factor: 2, maxMs: 120_000 },
  storage: { maxAttempts: 5, firstMs: 1_000, factor: 2, maxMs: 15_000 },
  /**
   * Starting a deploy: another build's update of the same app answers 409
   * `ContainerAppOperationInProgress` until its revision is provisioned (minutes), so the later
   * deploy waits its turn (about 5 minutes in all) instead of failing.
   */
  deploy: { maxAttempts: 10, firstMs: 5_000, factor: 1.5, maxMs: 60_000 },
} as const satisfies Record<string, RetryPolicy>;

/** Delay before attempt `failures + 1`, or undefined when the failure is final. */
export function nextRetryDelayMs(
  policy: RetryPolicy,
  failures: number,
  failure: ActivityFailure,
): number | undefined {
  if (!failure.retryable || failures >= policy.maxAttempts) return undefined;
  const backoff = backoffDelayMs(policy, failures - 1);
  // The server's Retry-After wins when it asks for longer than our own backoff.
  return Math.max(backoff, Math.min(failure.retryAfterMs ?? 0, policy.maxMs * 2));
}
