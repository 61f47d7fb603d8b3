/**
 * Typed errors shared by every room. Each says whether retrying can help, keeps the cause, and
 * carries a hint a user can act on. HTTP handlers map `status` to the response code; activities
 * throw them and let durable retry options decide (a non-retryable error fails fast).
 */
export interface ErrorDetails {
  /** Stable machine-readable code, e.g. `AllocationFailed`, `SourceDigestMismatch`. */
  code: string;
  /** What the user can do about it. */
  hint?: string;
  cause?: unknown;
}

export abstract class FastBuildError extends Error {
  abstract readonly retryable: boolean;
  /** The HTTP status an API handler answers with. */
  abstract readonly status: number;
  readonly code: string;
  readonly hint: string | undefined;

  constructor(message: string, details: ErrorDetails) {
    super(message, { cause: details.cause });
    this.name = new.target.name;
    this.code = details.code;
    this.hint = details.hint;
  }
}

/** The caller sent something we will not act on. Nothing ran. */
export class InvalidInputError extends FastBuildError {
  readonly retryable = false;
  readonly status = 400;
}

export class NotFoundError extends FastBuildError {
  readonly retryable = false;
  readonly status = 404;
}

/** The target is busy or in the wrong state (e.g. a container app already provisioning). */
export class ConflictError extends FastBuildError {
  readonly retryable = true;
  readonly status = 409;
}

/** The request or the uploaded source is bigger than the limit. Nothing was kept. */
export class PayloadTooLargeError extends FastBuildError {
  readonly retryable = false;
  readonly status = 413;
}

export class UnauthorizedError extends FastBuildError {
  readonly retryable = false;
  readonly status = 401;
}

/** Throttling, 5xx, resets: worth another try, after `retryAfterMs` when the server said so. */
export class TransientError extends FastBuildError {
  readonly retryable = true;
  readonly status = 503;
  readonly retryAfterMs: number | undefined;

  constructor(message: string, details: ErrorDetails & { retryAfterMs?: number }) {
    super(message, details);
    this.retryAfterMs = details.retryAfterMs;
  }
}

/** Will fail the same way again (bad request to Azure, quota, auth, a failed build). */
export class PermanentError extends FastBuildError {
  readonly retryable = false;
  readonly status = 502;
}

export class ConfigError extends FastBuildError {
  readonly retryable = false;
  readonly status = 500;
  readonly problems: readonly string[];

  /** `hint` replaces the default (app settings) one, e.g. for the CLI's own settings. */
  constructor(problems: readonly string[], hint?: string) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`, {
      code: "InvalidConfiguration",
      hint: hint ?? "Fix the app settings listed above (see README, Configuration).",
    });
    this.problems = problems;
  }
}

export function isFastBuildError(error: unknown): error is FastBuildError {
  return error instanceof FastBuildError;
}

/** A short, safe description of any thrown value (no stack). */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
