/**
 * The function app on the local cloud, wired exactly as in Azure but pointed at the local services:
 * the local Functions host serving the app's own registrations, with the durable engine on
 * durable-functions' replay engine. `npm run sim` and `npm run soak` start it the same way.
 */
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  activityHandlers,
  startLocalHost,
  type HostLogEntry,
  type LocalHost,
} from "@fast-build/local-cloud/host";
import type { ArmEmulator } from "@fast-build/local-cloud/arm";
import type { Azurite } from "@fast-build/local-cloud/azurite";
import { localLoginServer } from "@fast-build/local-cloud/registry";
import { LocalDurableEngine } from "@fast-build/local-cloud/durable/localEngine";
import type { DriverClock } from "@fast-build/local-cloud/durable/driver";
import type { ArmGatewayOptions } from "../src/azure/clientOptions.js";
import type { TokenCredential } from "../src/azure/credentials.js";
import { loadConfig } from "../src/config/index.js";
import { BUILD_ORCHESTRATOR } from "../src/core/activityContract.js";
import { setDeps } from "../src/functions/deps.js";
import { buildOrchestrator } from "../src/orchestration/build.js";
import { DEPLOY_ORCHESTRATOR } from "../src/core/promotion.js";
import { deployOrchestrator } from "../src/orchestration/promote.js";
import { createDeps } from "../src/wiring.js";

const REPO_ROOT = resolve(import.meta.dirname, "..");

export interface FunctionAppOptions {
  /** `FASTBUILD_ENVIRONMENTS`, as the app settings hold it. */
  environments: Record<string, unknown>;
  functionKey: string;
  /** The host's and the orchestrations' log lines are appended here. */
  logFile: string;
  taskHub: string;
  /** Other app settings (`FASTBUILD_LEASE_MINUTES`…). */
  settings?: Record<string, string>;
  /** The SDK pipeline's retries (default: the SDK's own, 3). */
  armRetry?: ArmGatewayOptions["retry"];
  /** The durable timers' clock (default: real time, as in Azure). */
  clock?: DriverClock;
}

/** Starts the function app; `stop()` also clears the wiring it installed. */
export async function startFunctionApp(
  azurite: Azurite,
  arm: ArmEmulator,
  options: FunctionAppOptions,
): Promise<LocalHost> {
  let publicUrl = "";
  // The environments' registries are the local cloud's: read through their ACR-faithful login
  // servers (HTTPS, token exchange), whose certificates the app trusts beside the ARM emulator's.
  const endpoints: Record<string, string> = {};
  const cas = [arm.ca];
  for (const environment of Object.values(options.environments)) {
    const host = (environment as { registry?: unknown } | null)?.registry;
    const found = typeof host === "string" ? localLoginServer(host) : undefined;
    if (found && typeof host === "string" && !endpoints[host]) {
      endpoints[host] = found.loginUrl;
      cas.push(found.ca);
    }
  }
  // Built on first use, after the host is listening, so the callback URL is known.
  setDeps(() =>
    createDeps({
      config: loadConfig({
        FASTBUILD_ENVIRONMENTS: JSON.stringify(options.environments),
        AzureWebJobsStorage: azurite.connectionString,
        FASTBUILD_COMPUTE_ENDPOINT: arm.endpoint,
        FASTBUILD_CONTAINERAPPS_ENDPOINT: arm.endpoint,
        FASTBUILD_PUBLIC_BASE_URL: publicUrl,
        TASK_HUB_NAME: options.taskHub,
        ...options.settings,
      }),
      credential: appServiceIdentity(arm),
      tlsCa: cas.join("\n"),
      registryOptions: { endpoints },
      arm: { pollIntervalMs: 250, ...(options.armRetry ? { retry: options.armRetry } : {}) },
    }),
  );
  const lines: string[] = [];
  const host = await startLocalHost({
    entry: join(REPO_ROOT, "src", "functions", "index.ts"),
    functionKey: options.functionKey,
    engine: (registrations) =>
      new LocalDurableEngine({
        orchestrators: new Map([
          [BUILD_ORCHESTRATOR, buildOrchestrator],
          // Promotions and rollbacks (sim/promote.ts).
          [DEPLOY_ORCHESTRATOR, deployOrchestrator],
        ]),
        activities: activityHandlers(registrations),
        ...(options.clock ? { clock: options.clock } : {}),
        log: (level, message) => lines.push(`${new Date().toISOString()} ${level} durable: ${message}`),
      }),
    log: (entry: HostLogEntry) => {
      lines.push(`${new Date().toISOString()} ${entry.level} ${entry.functionName}: ${entry.message}`);
      if (lines.length >= 50) void flush();
    },
  });
  publicUrl = host.url;
  const flush = () => writeFile(options.logFile, `${lines.splice(0).join("\n")}\n`, { flag: "a" });
  return {
    ...host,
    stop: () =>
      host
        .stop()
        .finally(flush)
        .finally(() => setDeps(undefined)),
  };
}

/**
 * The app's managed identity as App Service hands it to a function app: a token from the emulator's
 * identity endpoint (`IDENTITY_ENDPOINT` with the `X-IDENTITY-HEADER` secret, the protocol of
 * https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference).
 * Spoken here rather than through ManagedIdentityCredential, which reads that endpoint only from
 * process.env: the simulation shares its process with the developer's environment and the tests, so
 * it hands its endpoints to the wiring instead of changing the process's environment.
 * (test/azure/credentials.test.ts runs the real ManagedIdentityCredential against the same endpoint.)
 */
function appServiceIdentity(arm: ArmEmulator): TokenCredential {
  return {
    async getToken(scopes) {
      const resource = (Array.isArray(scopes) ? scopes[0] : scopes)?.replace(/\/\.default$/, "") ?? "";
      const url = new URL(arm.identityEndpoint);
      url.searchParams.set("resource", resource);
      url.searchParams.set("api-version", "2019-08-01");
      const response = await fetch(url, { headers: { "X-IDENTITY-HEADER": arm.identityHeader } });
      if (!response.ok) throw new Error(`identity endpoint answered ${response.status}`);
      const body = (await response.json()) as { access_token: string; expires_on: string };
      return { token: body.access_token, expiresOnTimestamp: Number(body.expires_on) * 1000 };
    },
  };
}
