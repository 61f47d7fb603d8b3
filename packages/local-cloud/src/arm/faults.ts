/**
 * HTTP faults as Azure Resource Manager shows them to a client, injected one at a time or at random
 * (a seeded rate per kind), and the counters a soak prints.
 *
 * How the Azure SDK reacts (@typespec/ts-http-runtime 0.3.6, `retryStrategies/`, the pipeline under
 * @azure/core-rest-pipeline): `throttlingRetryStrategy.ts` retries a 429 or 503 only when it carries
 * `Retry-After` (or `retry-after-ms`); `exponentialRetryStrategy.ts` retries other 5xx (not 501/505)
 * and the system errors `ECONNRESET`, `ETIMEDOUT`… So a lost reply is retried by the SDK, which sends
 * the same request again although the first one was carried out.
 */
import type { FaultStats, HttpFaultKind, LostReply, RandomFaults } from "./types.js";
import type { Reply } from "./http.js";

export const HTTP_FAULT_KINDS: readonly HttpFaultKind[] = [
  "throttled",
  "internalError",
  "unavailable",
  "connectionReset",
  "replyLost",
];

/** The ARM error code each refusing kind answers with (a reset connection has none). */
export const FAULT_CODES = {
  throttled: "SubscriptionRequestsThrottled",
  internalError: "InternalServerError",
  unavailable: "ServiceUnavailable",
  gatewayTimeout: "GatewayTimeout",
} as const;

/** What the emulator does with a request: answer this instead of processing it, or process it first. */
export type FaultAction = { before: Reply | "reset" } | { after: LostReply } | { delayMs: number };

/**
 * The reply of one fault kind. Bodies follow what ARM sends: throttling per
 * https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling
 * (429, `Retry-After` in seconds; code `SubscriptionRequestsThrottled`, as
 * learn.microsoft.com/troubleshoot/azure/azure-kubernetes/error-code-toomanyrequestsreceived-subscriptionrequeststhrottled
 * shows it), ARM's `InternalServerError` / `ServiceUnavailable` error envelope.
 */
export function faultAction(
  kind: HttpFaultKind,
  options: { retryAfterSeconds?: number; lostReply?: LostReply } = {},
): FaultAction {
  switch (kind) {
    case "throttled":
      return {
        before: {
          status: 429,
          headers: { "Retry-After": String(options.retryAfterSeconds ?? 1) },
          body: {
            error: {
              code: FAULT_CODES.throttled,
              message: `Number of requests for subscription exceeded the limit. Please try again after '${options.retryAfterSeconds ?? 1}' seconds.`,
            },
          },
        },
      };
    case "internalError":
      return { before: internalError() };
    case "unavailable":
      return {
        before: {
          status: 503,
          body: {
            error: { code: FAULT_CODES.unavailable, message: "The service is temporarily unavailable." },
          },
        },
      };
    case "connectionReset":
      return { before: "reset" };
    case "replyLost":
      return { after: options.lostReply ?? "reset" };
  }
}

/**
 * The reply a client gets instead of the real one when the request was carried out but its answer
 * was lost. `gatewayTimeout` is ARM's own 504 when the provider answers too late, as recorded in
 * Azure/azure-cli#31815 (`Microsoft.App`) and arminreiter/AzureBillingApi#4 (headers, 504).
 */
export function lostReply(how: Exclude<LostReply, "reset">, path: string): Reply {
  if (how === "internalError") return internalError();
  const provider = /\/providers\/Microsoft\.App\//i.test(path) ? "Microsoft.App" : "Microsoft.Compute";
  return {
    status: 504,
    headers: { "x-ms-failure-cause": "service" },
    body: {
      error: {
        code: FAULT_CODES.gatewayTimeout,
        message: `The gateway did not receive a response from '${provider}' within the specified time period.`,
      },
    },
  };
}

function internalError(): Reply {
  return {
    status: 500,
    body: { error: { code: FAULT_CODES.internalError, message: "Encountered internal server error." } },
  };
}

/** Decides, request by request, whether a random fault applies and which. */
export class RandomFaultPicker {
  private readonly next: () => number;
  private readonly methods: Set<string> | undefined;
  private readonly cumulative: [HttpFaultKind, number][] = [];

  constructor(readonly config: RandomFaults) {
    const problems: string[] = [];
    let sum = 0;
    for (const [kind, rate] of Object.entries(config.rates)) {
      if (!HTTP_FAULT_KINDS.includes(kind as HttpFaultKind))
        problems.push(`unknown fault kind '${kind}' (use ${HTTP_FAULT_KINDS.join(", ")})`);
      else if (typeof rate !== "number" || !(rate >= 0 && rate <= 1))
        problems.push(`rate of '${kind}' must be a number from 0 to 1, got ${String(rate)}`);
      else if (rate > 0) this.cumulative.push([kind as HttpFaultKind, (sum += rate)]);
    }
    if (sum > 1 + 1e-9) problems.push(`the rates add up to ${sum.toFixed(3)}; they must not exceed 1`);
    for (const { operation, rate } of config.operations ?? []) {
      if (!(rate >= 0 && rate <= 1))
        problems.push(`rate of failed '${operation}' operations must be from 0 to 1, got ${String(rate)}`);
    }
    if (!Number.isSafeInteger(config.seed))
      problems.push(`seed must be an integer, got ${String(config.seed)}`);
    if (problems.length > 0) throw new Error(`random faults: ${problems.join("; ")}`);
    this.next = mulberry32(config.seed);
    this.methods = config.methods && new Set(config.methods.map((m) => m.toUpperCase()));
  }

  /** One draw per matching request, so the same seed decides alike over the same request sequence. */
  pick(method: string, path: string): HttpFaultKind | undefined {
    if (this.methods && !this.methods.has(method)) return undefined;
    if (this.config.path && !this.config.path.test(path)) return undefined;
    const draw = this.next();
    return this.cumulative.find(([, upTo]) => draw < upTo)?.[0];
  }

  /** The error a long-running VM operation ends with, when it is picked to fail. */
  pickOperation(operation: string): { code: string; message: string } | undefined {
    const fault = this.config.operations?.find((f) => f.operation === operation);
    if (!fault) return undefined;
    return this.next() < fault.rate ? fault.error : undefined;
  }
}

/** Counts requests and the faults they got. */
export class FaultCounter {
  private requests = 0;
  private readonly http = new Map<string, number>();
  private readonly operations = new Map<string, number>();

  request(): void {
    this.requests++;
  }

  httpFault(kind: string): void {
    this.http.set(kind, (this.http.get(kind) ?? 0) + 1);
  }

  operationFault(code: string): void {
    this.operations.set(code, (this.operations.get(code) ?? 0) + 1);
  }

  stats(): FaultStats {
    return {
      requests: this.requests,
      httpFaults: Object.fromEntries(this.http),
      operationFaults: Object.fromEntries(this.operations),
    };
  }
}

/** mulberry32: a small, fast, seedable generator of floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
