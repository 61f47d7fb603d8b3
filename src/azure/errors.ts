/**
 * The one mapper from what the Azure SDKs throw (RestError, long-running-operation failures,
 * network errors) to the typed errors of src/core/errors.ts, for every gateway: Resource Manager,
 * blobs and tables. Gateways throw nothing else, so activities and retry policies never look at
 * SDK error shapes. The rules are the same for every service; where a service differs (its
 * retryable codes, its conflict statuses, its hints, whether its message may be quoted) that is
 * in {@link SERVICES}.
 */
import {
  ConflictError,
  FastBuildError,
  NotFoundError,
  PermanentError,
  TransientError,
  UnauthorizedError,
} from "../core/errors.js";

export type AzureService = "arm" | "blob" | "table" | "registry";

interface ServiceRules {
  /** Error codes that describe a momentary shortage rather than a bad request: retry with backoff. */
  retryableCodes: ReadonlySet<string>;
  /** Statuses that mean "someone else changed or holds it": retry later, or take the other's result. */
  conflictStatuses: ReadonlySet<number>;
  /**
   * An error with no response that is not a known network failure. ARM's pollers and clients throw
   * those for requests that can never work (a bug); the storage SDKs for a stream cut mid-body.
   */
  unclassified: "transient" | "permanent";
  /** Whether the SDK's message may go into ours: a storage message can quote a SAS URL. */
  quoteMessage: boolean;
  /** The code of a failure without a response or code of its own. */
  unreachableCode: string;
  /** What the user can do, by status, for network failures, capacity errors, or any other permanent one. */
  hints: Partial<Record<number | "network" | "capacity" | "permanent", string>>;
  /** Hints by error code, where one says more than its status's. */
  codeHints?: Readonly<Record<string, string>>;
}

const REGISTRY_ACCESS_HINT =
  "The function app's identity needs AcrPull on the environment's registry (infra/app/roles.bicep).";
const TABLE_ACCESS_HINT = "Check the storage settings and the function app's access to the table.";

const SERVICES: Readonly<Record<AzureService, ServiceRules>> = {
  arm: {
    retryableCodes: new Set([
      "AllocationFailed",
      "ZonalAllocationFailed",
      "OverconstrainedAllocationRequest",
      "OperationPreempted",
      "RetryableError",
      "TooManyRequests",
      "InternalExecutionError",
    ]),
    // Conflicts are "busy, try again later" (e.g. ContainerAppOperationInProgress, a VM mid-transition).
    conflictStatuses: new Set([409]),
    unclassified: "permanent",
    quoteMessage: true,
    unreachableCode: "Unknown",
    hints: {
      400: "Azure rejected the request as invalid; see the message.",
      401: "Check the managed identity / credentials used for Azure.",
      403: "The identity lacks a role on this resource (e.g. Virtual Machine Contributor).",
      404: "Check the resource group and resource names.",
      409: "Another operation is in progress on this resource: retry later.",
      network: "The connection to Azure failed: retry.",
      capacity: "Azure is short of capacity: retry with backoff.",
    },
    codeHints: {
      InvalidAuthenticationTokenAudience:
        "The endpoint refuses tokens for this audience: set FASTBUILD_COMPUTE_AUDIENCE (or FASTBUILD_CONTAINERAPPS_AUDIENCE) to one its /metadata/endpoints lists, or unset it to read it from there.",
    },
  },
  blob: {
    retryableCodes: new Set(),
    // 412: the blob changed since it was read (a lost If-Match).
    conflictStatuses: new Set([409, 412]),
    unclassified: "transient",
    quoteMessage: false,
    unreachableCode: "StorageUnavailable",
    hints: {
      401: "Check the storage credentials.",
      403: "The app's identity needs 'Storage Blob Data Contributor' and 'Storage Blob Delegator' on the account (or the SAS has expired).",
    },
  },
  table: {
    retryableCodes: new Set(),
    // 409: someone created the entity first; 412: someone changed it since we read it.
    conflictStatuses: new Set([409, 412]),
    unclassified: "transient",
    quoteMessage: true,
    unreachableCode: "StorageUnavailable",
    hints: {
      401: TABLE_ACCESS_HINT,
      403: TABLE_ACCESS_HINT,
      permanent: TABLE_ACCESS_HINT,
    },
  },
  // Container Registry's data plane (manifest reads, src/azure/registry.ts).
  registry: {
    retryableCodes: new Set(["TOOMANYREQUESTS"]),
    conflictStatuses: new Set(),
    unclassified: "transient",
    quoteMessage: true,
    unreachableCode: "RegistryUnavailable",
    hints: {
      401: REGISTRY_ACCESS_HINT,
      403: REGISTRY_ACCESS_HINT,
      network: "The connection to the container registry failed: retry.",
    },
  },
};

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

/**
 * The parts of an SDK error we read. Duck-typed: each SDK may bundle its own copy of
 * `@azure/core-rest-pipeline`, so `instanceof RestError` would miss some.
 */
interface SdkErrorLike {
  name?: string;
  message: string;
  statusCode?: unknown;
  code?: unknown;
  response?: { headers?: { get(name: string): string | undefined } };
}

/**
 * Maps an SDK failure of `service` to a typed error, keeping Azure's error code. `what` names the
 * operation for the message (e.g. "start VM rg/fb-1"). An error that is already typed passes through.
 */
export function toTypedError(error: unknown, service: AzureService, what: string): FastBuildError {
  if (error instanceof FastBuildError) return error;
  const rules = SERVICES[service];
  if (!(error instanceof Error)) {
    const text = `${what} failed: ${rules.quoteMessage ? String(error) : "no response"}`;
    const details = { code: rules.unreachableCode, cause: error };
    return rules.unclassified === "transient"
      ? new TransientError(text, details)
      : new PermanentError(text, details);
  }
  const lro = /^The long-running operation has failed(?:\. ([^.\s]+)\. ([\s\S]*))?$/.exec(error.message);
  if (lro) {
    const code = lro[1] ?? "OperationFailed";
    const text = `${what} failed: ${code}: ${lro[2] ?? error.message}`;
    return rules.retryableCodes.has(code)
      ? new TransientError(text, withHint({ code, cause: error }, rules.hints.capacity))
      : new PermanentError(text, { code, cause: error });
  }
  const sdk = error as SdkErrorLike;
  const status = typeof sdk.statusCode === "number" && sdk.statusCode > 0 ? sdk.statusCode : undefined;
  const code =
    sdk.response?.headers?.get("x-ms-error-code") ??
    (typeof sdk.code === "string" ? sdk.code : undefined) ??
    (status !== undefined ? `Http${status}` : rules.unreachableCode);
  const quoted = rules.quoteMessage ? `: ${error.message.split("\n")[0] ?? ""}` : "";
  const text = `${what} failed: ${status ?? "no response"} ${code}${quoted}`;
  const details = { code, cause: error };

  if (status === undefined) {
    if (NETWORK_CODES.has(code) || /socket hang up|ECONNRESET|network/i.test(error.message)) {
      return new TransientError(text, withHint(details, rules.hints.network));
    }
    if (error.name === "AbortError" || rules.unclassified === "transient") {
      return new TransientError(text, details);
    }
    return new PermanentError(text, details);
  }
  return fromResponse(status, code, text, details, rules, sdk);
}

function fromResponse(
  status: number,
  code: string,
  text: string,
  details: { code: string; cause: unknown },
  rules: ServiceRules,
  sdk: SdkErrorLike,
): FastBuildError {
  const hint = rules.codeHints?.[code] ?? rules.hints[status];
  if (status === 404) return new NotFoundError(text, withHint(details, hint));
  if (rules.conflictStatuses.has(status)) return new ConflictError(text, withHint(details, hint));
  if (status === 401) return new UnauthorizedError(text, withHint(details, hint));
  // 501 Not Implemented and 505 HTTP Version Not Supported fail the same way every time.
  const serverTrouble = status >= 500 && status !== 501 && status !== 505;
  if (status === 408 || status === 429 || serverTrouble || rules.retryableCodes.has(code)) {
    const wait = retryAfterMs(sdk);
    return new TransientError(text, {
      ...withHint(details, hint),
      ...(wait === undefined ? {} : { retryAfterMs: wait }),
    });
  }
  return new PermanentError(text, withHint(details, hint ?? rules.hints.permanent));
}

/** Runs an SDK call and rethrows its failure typed. */
export async function callAzure<T>(service: AzureService, what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw toTypedError(error, service, what);
  }
}

/**
 * Milliseconds the server asked us to wait: `retry-after-ms`, `x-ms-retry-after-ms` (Azure's
 * millisecond headers, preferred when present), then `Retry-After` (seconds or an HTTP date).
 */
export function retryAfterMs(error: {
  response?: { headers?: { get(name: string): string | undefined } };
}): number | undefined {
  const headers = error.response?.headers;
  if (!headers) return undefined;
  for (const name of ["retry-after-ms", "x-ms-retry-after-ms"]) {
    const raw = headers.get(name);
    const value = Number(raw);
    if (raw !== undefined && raw.trim() !== "" && Number.isFinite(value) && value >= 0) return value;
  }
  const retryAfter = headers.get("retry-after")?.trim();
  if (retryAfter === undefined || retryAfter === "") return undefined;
  const seconds = Number(retryAfter);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(retryAfter);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function withHint<T extends object>(details: T, hint: string | undefined): T & { hint?: string } {
  return hint === undefined ? details : { ...details, hint };
}
