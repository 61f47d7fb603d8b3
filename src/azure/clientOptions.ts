/**
 * Options shared by the ARM gateways, and how they become SDK client options.
 */
import type { ComputeManagementClientOptionalParams } from "@azure/arm-compute";
import type { TokenCredential } from "@azure/identity";
import type { ComputeProfile } from "../config/index.js";

export interface ArmGatewayOptions {
  /** ARM endpoint, e.g. `https://management.azure.com` (or the emulator's). */
  endpoint: string;
  credential: TokenCredential;
  /** Compute API profile (default `latest`). Container Apps always use the SDK's version. */
  profile?: ComputeProfile;
  /** Extra CA (PEM) to trust, for the local emulator's self-signed certificate. */
  tlsCa?: string;
  /** Pipeline retries of 408/429/5xx/resets (SDK default 3; tests pass 0 where retries are not the subject). */
  retry?: { maxRetries?: number; retryDelayInMs?: number; maxRetryDelayInMs?: number };
  /** Poll interval of long-running operations (SDK default when unset; the server's Retry-After wins). */
  pollIntervalMs?: number;
  /** Location for new run-command resources; read from the VM (once) when unset. */
  location?: string;
}

type Common = Pick<
  ComputeManagementClientOptionalParams,
  "endpoint" | "retryOptions" | "tlsOptions" | "additionalPolicies" | "userAgentOptions"
>;

/** Per-call poller options: the configured interval, or the SDK's default. */
export function pollOptions(options: ArmGatewayOptions): { updateIntervalInMs?: number } {
  return options.pollIntervalMs === undefined ? {} : { updateIntervalInMs: options.pollIntervalMs };
}

/** One SDK client per subscription, made on first use (cold starts pay only for what they call). */
export function perSubscription<T>(make: (subscriptionId: string) => T): (subscriptionId: string) => T {
  const clients = new Map<string, T>();
  return (subscriptionId) => {
    let existing = clients.get(subscriptionId);
    if (existing === undefined) {
      existing = make(subscriptionId);
      clients.set(subscriptionId, existing);
    }
    return existing;
  };
}

export function commonClientOptions(options: ArmGatewayOptions): Common {
  const common: Common = {
    endpoint: options.endpoint.replace(/\/+$/, ""),
    userAgentOptions: { userAgentPrefix: "fast-build" },
  };
  if (options.retry) common.retryOptions = { ...options.retry };
  if (options.tlsCa) common.tlsOptions = { ca: options.tlsCa };
  return common;
}
