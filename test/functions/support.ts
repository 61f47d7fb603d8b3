/**
 * Set-up for the HTTP/timer function tests: real Azurite (sources, logs, builder records), the ARM
 * emulator (builder VMs), the host's durable endpoint over an in-memory engine, and a way to call a
 * handler with `@azure/functions`' own `HttpRequest` / `InvocationContext`, as the worker would.
 */
// Installs our @azure/functions-core before the function modules register themselves.
import "../../src/local/host/index.js";
import functions, { type HttpHandler } from "@azure/functions";
import { randomUUID } from "node:crypto";
import type { TokenCredential } from "@azure/identity";
import { createBlobStores } from "../../src/azure/blobs.js";
import { createComputeGateway } from "../../src/azure/compute.js";
import { TableLeaseStore } from "../../src/azure/tables.js";
import { loadConfig, type Config } from "../../src/config/index.js";
import type { Deps } from "../../src/functions/deps.js";
import { durableClientInput } from "../../src/functions/register.js";
import { startArmEmulator, type ArmEmulator } from "../../src/local/arm/index.js";
import { startAzurite, type Azurite } from "../../src/local/azurite.js";
import { startDurableRpcServer, type DurableRpcServer } from "../../src/local/host/durableRpc.js";
import { MemoryEngine } from "../host/memoryEngine.js";

const { HttpRequest, HttpResponse, InvocationContext } = functions;

export const SUB = "00000000-0000-0000-0000-00000000abcd";
export const MAX_UPLOAD_BYTES = 2048;

/** The emulator checks only that a Bearer token is present: a credential at the protocol boundary. */
const staticCredential: TokenCredential = {
  getToken: () => Promise.resolve({ token: "test-token", expiresOnTimestamp: Date.now() + 3_600_000 }),
};

export interface TestCloud {
  azurite: Azurite;
  arm: ArmEmulator;
  engine: MemoryEngine;
  rpc: DurableRpcServer;
  config: Config;
  deps: Deps;
  stop(): Promise<void>;
}

export async function startTestCloud(): Promise<TestCloud> {
  const [azurite, arm] = await Promise.all([startAzurite(), startArmEmulator()]);
  const engine = new MemoryEngine();
  const rpc = await startDurableRpcServer(() => engine, { taskHubName: "fastbuild" });
  const environment = (vm: string, app: string) => ({
    subscriptionId: SUB,
    resourceGroup: "rg-builds",
    builderVm: vm,
    registry: "127.0.0.1:5000",
    imageRepository: `apps/${app}`,
    containerApp: app,
    containerName: "main",
    binaryName: "app",
  });
  const config = loadConfig({
    FASTBUILD_ENVIRONMENTS: JSON.stringify({
      dev: environment("builder-dev", "demo"),
      prod: environment("builder-prod", "shop"),
    }),
    AzureWebJobsStorage: azurite.connectionString,
    FASTBUILD_ARM_ENDPOINT: arm.endpoint,
    FASTBUILD_MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
    FASTBUILD_IDLE_SHUTDOWN_MINUTES: "30",
  });
  const blobs = createBlobStores(config.storage, undefined, { pipeline: { retryOptions: { maxTries: 1 } } });
  const deps: Deps = {
    config,
    sources: blobs.sources,
    logs: blobs.logs,
    compute: createComputeGateway({
      endpoint: arm.endpoint,
      credential: staticCredential,
      tlsCa: arm.ca,
      retry: { maxRetries: 0 },
      pollIntervalMs: 10,
    }),
    leases: new TableLeaseStore({
      tableName: config.storage.activityTable,
      connectionString: azurite.connectionString,
    }),
    now: () => new Date(),
  };
  return {
    azurite,
    arm,
    engine,
    rpc,
    config,
    deps,
    stop: async () => {
      await Promise.all([rpc.stop(), azurite.stop(), arm.stop()]);
    },
  };
}

export interface CallInit {
  method: string;
  /** Path under /api/, e.g. `builds/abc/source`. */
  path: string;
  params?: Record<string, string>;
  body?: string;
  headers?: Record<string, string>;
}

export interface CallResult {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
  logs: string[];
}

/** Calls a handler the way the worker does: its own request and context, the durable client bound. */
export async function call(
  rpc: DurableRpcServer,
  handler: HttpHandler,
  functionName: string,
  init: CallInit,
): Promise<CallResult> {
  const logs: string[] = [];
  const request = new HttpRequest({
    method: init.method,
    url: `http://127.0.0.1/api/${init.path}`,
    headers: { ...(init.body !== undefined ? { "content-type": "application/json" } : {}), ...init.headers },
    params: init.params ?? {},
    ...(init.body !== undefined ? { body: { string: init.body } } : {}),
  });
  const context = new InvocationContext({
    invocationId: randomUUID(),
    functionName,
    logHandler: (level, ...args) => logs.push(`${level} ${args.map(String).join(" ")}`),
    options: {
      trigger: { type: "httpTrigger", name: "request" },
      extraInputs: [durableClientInput],
    },
  });
  context.extraInputs.set(durableClientInput, rpc.clientBindingData());
  const result = await handler(request, context);
  const response = result instanceof HttpResponse ? result : new HttpResponse(result);
  const text = await response.text();
  let body: unknown;
  try {
    body = text ? (JSON.parse(text) as unknown) : undefined;
  } catch {
    body = text;
  }
  return { status: response.status, headers: response.headers, body, text, logs };
}

/** A timer context, for calling timer handlers directly. */
export function timerContext(functionName: string, logs: string[]): InstanceType<typeof InvocationContext> {
  return new InvocationContext({
    invocationId: randomUUID(),
    functionName,
    logHandler: (level, ...args) => logs.push(`${level} ${args.map(String).join(" ")}`),
    options: { trigger: { type: "timerTrigger", name: "timer" } },
  });
}
