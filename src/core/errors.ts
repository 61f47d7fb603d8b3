/**
 * Typed errors shared by every room, named for what a retry should do (inngest's
 * `NonRetriableError` / `RetryAfterError`): each says whether trying again can help
 * (`retryable`, and `retryAfterMs` when the server said how long to wait), keeps the cause, and
 * carries a hint a user can act on. Activities throw them and let durable retry options decide
 * (a non-retryable error fails fast). They carry no HTTP status: the HTTP layer maps `kind` to a
 * status code at its edge (src/functions/http.ts), and the CLI maps the API's answers back.
 */
export interface ErrorDetails {
  /** Stable machine-readable code, e.g. `AllocationFailed`, `SourceDigestMismatch`. */
  code: string;
  /** What the user can do about it. */
  hint?: string;
  cause?: unknown;
}

/**
 * What went wrong, as the caller needs to tell it apart. The first five are about the request
 * (the caller can fix it); `transient` and `permanent` are failures of a service we depend on;
 * `config` is our own settings.
 */
export type ErrorKind =
  | "invalid-input"
  | "unauthorized"
  | "not-found"
  | "conflict"
  | "too-large"
  | "transient"
  | "permanent"
  | "config"
  | "forbidden";

export abstract class FastBuildError extends Error {
  abstract readonly kind: ErrorKind;
  /** Whether the same call can succeed later; false means fail now, with the hint. */
  abstract readonly retryable: boolean;
  readonly code: string;
  readonly hint: string | undefined;

  constructor(message: string, details: ErrorDetails) {
    super(message, { cause: details.cause });
    this.name = new.target.name;
    this.code = details.code;
    this.hint = details.hint;
  }
}

/** Worth another try: the same call can succeed later (inngest's `RetryAfterError` family). */
export abstract class RetryableError extends FastBuildError {
  readonly retryable = true;
}

/** Trying again fails the same way: fail now, with the hint (inngest's `NonRetriableError`). */
export abstract class NonRetryableError extends FastBuildError {
  readonly retryable = false;
}

/** Throttling, 5xx, resets: worth another try, after `retryAfterMs` when the server said so. */
export class TransientError extends RetryableError {
  readonly kind = "transient";
  readonly retryAfterMs: number | undefined;

  constructor(message: string, details: ErrorDetails & { retryAfterMs?: number }) {
    super(message, details);
    this.retryAfterMs = details.retryAfterMs;
  }
}

/**
 * The target is busy or in the wrong state (e.g. a container app already provisioning): retryable,
 * since the other operation ends; a caller that knows the state is final (a build that has ended)
 * says so in `code`.
 */
export class ConflictError extends RetryableError {
  readonly kind = "conflict";
}

/** Will fail the same way again (bad request to Azure, quota, auth, a failed build). */
export class PermanentError extends NonRetryableError {
  readonly kind = "permanent";
}

/** The caller sent something we will not act on. Nothing ran. */
export class InvalidInputError extends NonRetryableError {
  readonly kind = "invalid-input";
}

/** No such build, blob or resource. */
export class NotFoundError extends NonRetryableError {
  readonly kind = "not-found";
}

/** The request or the uploaded source is bigger than the limit. Nothing was kept. */
export class PayloadTooLargeError extends NonRetryableError {
  readonly kind = "too-large";
}

/** The credentials were refused. */
export class UnauthorizedError extends NonRetryableError {
  readonly kind = "unauthorized";
}

/** The caller is known but may not do this (an approval by someone who is not an approver). */
export class ForbiddenError extends NonRetryableError {
  readonly kind = "forbidden";
}

/** Our own settings are wrong: nothing works until they are fixed. */
export class ConfigError extends NonRetryableError {
  readonly kind = "config";
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
