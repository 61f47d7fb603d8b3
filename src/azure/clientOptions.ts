/**
 * Options shared by the ARM gateways, and how they become SDK client options: the endpoint, TLS,
 * retries, and the token audience the endpoint accepts.
 */
import { get } from "node:https";
import type { ComputeManagementClientOptionalParams } from "@azure/arm-compute";
import type { AccessToken, GetTokenOptions, TokenCredential } from "@azure/identity";
import { PUBLIC_ARM_ENDPOINT, type ComputeProfile } from "../config/index.js";
import { PermanentError, TransientError } from "../core/errors.js";

export interface ArmGatewayOptions {
  /** ARM endpoint, e.g. `https://management.azure.com` (or Azure Stack Hub's, or the emulator's). */
  endpoint: string;
  credential: TokenCredential;
  /**
   * Token audience the endpoint accepts (tokens are asked for `<audience>/.default`). Unset: Azure
   * public cloud's for its endpoint, otherwise what the endpoint publishes at `/metadata/endpoints`.
   */
  audience?: string;
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

/**
 * The credential to give the SDK clients: it gets tokens for the endpoint's audience. The SDKs ask
 * for `https://management.azure.com/.default` whatever their endpoint (arm-compute 25.x fixes it in
 * its context), which Azure Stack Hub refuses. `credentialScopes` would fix that, but it is fixed
 * when a client is made, and the audience may first need a request to the endpoint; so the scope is
 * chosen here, on the first token, and the discovered audience is kept for the process.
 */
export function audienceCredential(options: ArmGatewayOptions): TokenCredential {
  const endpoint = trimEndpoint(options.endpoint);
  const audience = async (): Promise<string> =>
    options.audience ??
    (endpoint.toLowerCase() === PUBLIC_ARM_ENDPOINT
      ? PUBLIC_ARM_ENDPOINT
      : discoverAudience(endpoint, options));
  return {
    async getToken(_scopes: string | string[], tokenOptions?: GetTokenOptions): Promise<AccessToken | null> {
      return options.credential.getToken(`${await audience()}/.default`, tokenOptions);
    },
  };
}

const discovered = new Map<string, Promise<string>>();

/**
 * The first audience `<endpoint>/metadata/endpoints?api-version=2015-01-01` lists (unauthenticated;
 * Azure Stack Hub and the public clouds publish it), asked once per endpoint and process. A failed
 * read is not kept: the next token tries again.
 */
export function discoverAudience(
  endpoint: string,
  options: Pick<ArmGatewayOptions, "tlsCa">,
): Promise<string> {
  const key = trimEndpoint(endpoint).toLowerCase();
  let pending = discovered.get(key);
  if (!pending) {
    pending = readAudience(trimEndpoint(endpoint), options.tlsCa);
    discovered.set(key, pending);
    pending.catch(() => discovered.delete(key));
  }
  return pending;
}

const AUDIENCE_HINT =
  "Set FASTBUILD_COMPUTE_AUDIENCE (or FASTBUILD_CONTAINERAPPS_AUDIENCE) to the endpoint's token audience, or check the endpoint setting.";

function readAudience(endpoint: string, ca: string | undefined): Promise<string> {
  const url = `${endpoint}/metadata/endpoints?api-version=2015-01-01`;
  const what = `read the token audience of ${endpoint} from /metadata/endpoints`;
  const unreachable = (cause: Error) =>
    new TransientError(`${what} failed: ${cause.message}`, { code: "AudienceUnavailable", cause });
  return new Promise((resolve, reject) => {
    const request = get(url, { ...(ca ? { ca } : {}), timeout: 30_000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("error", (error) => reject(unreachable(error)));
      response.on("end", () => {
        const status = response.statusCode ?? 0;
        const audience = status === 200 ? firstAudience(Buffer.concat(chunks).toString("utf8")) : undefined;
        if (audience) resolve(audience);
        else if (status >= 500 || status === 429)
          reject(new TransientError(`${what} failed: HTTP ${status}`, { code: "AudienceUnavailable" }));
        else
          reject(
            new PermanentError(`${what} failed: HTTP ${status}, no authentication.audiences`, {
              code: "AudienceUnknown",
              hint: AUDIENCE_HINT,
            }),
          );
      });
    });
    request.on("timeout", () => request.destroy(new Error("timed out")));
    request.on("error", (error) => reject(unreachable(error)));
  });
}

function firstAudience(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { authentication?: { audiences?: unknown } };
    const audiences = body.authentication?.audiences;
    const first: unknown = Array.isArray(audiences) ? audiences[0] : undefined;
    return typeof first === "string" && first !== "" ? first : undefined;
  } catch {
    return undefined;
  }
}

function trimEndpoint(endpoint: string): string {
  return endpoint.replace(/\/+$/, "");
}

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
    endpoint: trimEndpoint(options.endpoint),
    userAgentOptions: { userAgentPrefix: "fast-build" },
  };
  if (options.retry) common.retryOptions = { ...options.retry };
  if (options.tlsCa) common.tlsOptions = { ca: options.tlsCa };
  return common;
}
