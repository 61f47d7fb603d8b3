/**
 * Turns whatever the Azure SDKs throw (RestError, long-running-operation failures, network errors)
 * into the typed errors of src/core/errors.ts, keeping Azure's error code and message. Gateways
 * throw nothing else, so activities and retry policies never look at SDK error shapes.
 */
import {
  ConflictError,
  FastBuildError,
  NotFoundError,
  PermanentError,
  TransientError,
  UnauthorizedError,
} from "../core/errors.js";

/** Azure codes that describe a momentary shortage rather than a bad request: retry with backoff. */
const RETRYABLE_CODES = new Set([
  "AllocationFailed",
  "ZonalAllocationFailed",
  "OverconstrainedAllocationRequest",
  "OperationPreempted",
  "RetryableError",
  "TooManyRequests",
  "InternalExecutionError",
]);

/** Network-level failures the pipeline reports without a status code. */
const NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "REQUEST_SEND_ERROR",
  "UND_ERR_SOCKET",
]);

interface RestErrorLike {
  name?: string;
  message: string;
  statusCode?: number;
  code?: string;
  response?: { headers?: { get(name: string): string | undefined } };
}

/**
 * Classifies an SDK error. `what` names the operation for the message (e.g. "start VM fb-1").
 * An error that is already typed passes through unchanged.
 */
export function classifyArmError(error: unknown, what: string): FastBuildError {
  if (error instanceof FastBuildError) return error;
  if (!(error instanceof Error)) {
    return new PermanentError(`${what}: ${String(error)}`, { code: "Unknown", cause: error });
  }
  const lro = /^The long-running operation has failed(?:\. ([^.\s]+)\. ([\s\S]*))?$/.exec(error.message);
  if (lro) {
    const code = lro[1] ?? "OperationFailed";
    const message = lro[2] ?? error.message;
    const text = `${what} failed: ${code}: ${message}`;
    return RETRYABLE_CODES.has(code)
      ? new TransientError(text, {
          code,
          cause: error,
          hint: "Azure is short of capacity: retry with backoff.",
        })
      : new PermanentError(text, { code, cause: error });
  }
  const rest = error as RestErrorLike;
  const status = typeof rest.statusCode === "number" ? rest.statusCode : undefined;
  const code = rest.code ?? (status !== undefined ? `Http${status}` : "Unknown");
  const text = `${what} failed: ${status ?? "no response"} ${code}: ${error.message}`;
  const details = { code, cause: error };
  if (status === undefined) {
    if (NETWORK_CODES.has(code) || /socket hang up|ECONNRESET|network/i.test(error.message)) {
      return new TransientError(text, { ...details, hint: "The connection to Azure failed: retry." });
    }
    if (error.name === "AbortError") return new TransientError(text, details);
    return new PermanentError(text, details);
  }
  if (status === 404)
    return new NotFoundError(text, { ...details, hint: "Check the resource group and resource names." });
  if (status === 409) {
    // Conflicts are "busy, try again later" (e.g. ContainerAppOperationInProgress, a VM mid-transition).
    return new ConflictError(text, {
      ...details,
      hint: "Another operation is in progress on this resource: retry later.",
    });
  }
  if (status === 401) {
    return new UnauthorizedError(text, {
      ...details,
      hint: "Check the managed identity / credentials used for Azure.",
    });
  }
  if (
    status === 408 ||
    status === 429 ||
    (status >= 500 && status !== 501 && status !== 505) ||
    RETRYABLE_CODES.has(code)
  ) {
    return new TransientError(text, { ...details, retryAfterMs: retryAfterMs(rest) });
  }
  const hint =
    status === 403
      ? "The identity lacks a role on this resource (e.g. Virtual Machine Contributor)."
      : status === 400
        ? "Azure rejected the request as invalid; see the message."
        : undefined;
  return new PermanentError(text, hint ? { ...details, hint } : details);
}

/** Milliseconds the server asked us to wait: retry-after-ms, x-ms-retry-after-ms, then Retry-After. */
export function retryAfterMs(error: {
  response?: { headers?: { get(name: string): string | undefined } };
}): number | undefined {
  const headers = error.response?.headers;
  if (!headers) return undefined;
  for (const name of ["retry-after-ms", "x-ms-retry-after-ms"]) {
    const value = Number(headers.get(name));
    if (headers.get(name) !== undefined && Number.isFinite(value) && value >= 0) return value;
  }
  const retryAfter = headers.get("retry-after");
  if (retryAfter === undefined) return undefined;
  const seconds = Number(retryAfter);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(retryAfter);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** Runs an SDK call and rethrows its failure classified. */
export async function armCall<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw classifyArmError(error, what);
  }
}
