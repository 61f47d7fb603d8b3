/**
 * Set-up for the HTTP/timer function tests: real Azurite (sources, logs, builder records), the ARM
 * emulator (builder VMs, run commands, container apps), and the host's durable endpoint over the
 * local durable engine running the real build orchestrator with the real activities. A way to call
 * a handler with `@azure/functions`' own `HttpRequest` / `InvocationContext`, as the worker would.
 */
// Installs our @azure/functions-core before the function modules register themselves.
import "@fast-build/local-cloud/host";
import functions, { type HttpHandler } from "@azure/functions";
import { randomUUID } from "node:crypto";
import { loadConfig, type Config } from "../../src/config/index.js";
import { BUILD_ORCHESTRATOR } from "../../src/core/activityContract.js";
import type { BuildStatus } from "../../src/core/api.js";
import type { Deps } from "../../src/functions/deps.js";
import { durableClientInput } from "../../src/functions/register.js";
import { startArmEmulator, type ArmEmulator, type RunCommandExecutor } from "@fast-build/local-cloud/arm";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";
import {
  LocalDurableEngine,
  type LocalDurableEngineOptions,
} from "@fast-build/local-cloud/durable/localEngine";
import { startDurableRpcServer, type DurableRpcServer } from "@fast-build/local-cloud/host/durableRpc";
import { buildOrchestrator } from "../../src/orchestration/build.js";
import { createActivities, createDeps } from "../../src/wiring.js";
import { testWiring, SUB, waitFor } from "../azure/armHelpers.js";

const { HttpRequest, HttpResponse, InvocationContext } = functions;

export { SUB };
export const MAX_UPLOAD_BYTES = 2048;

export { builderResult } from "../fixtures/builderResult.js";

export interface RaisedEvent {
  instanceId: string;
  name: string;
  data: unknown;
}

/**
 * The local durable engine, unchanged, plus a record of the events that reached it: what the
 * functions raised is part of the HTTP API's contract, and an orchestration does not echo an
 * event's data anywhere a test could read it back.
 */
export class ObservedEngine extends LocalDurableEngine {
  readonly events: RaisedEvent[] = [];

  override async raiseEvent(instanceId: string, eventName: string, data: unknown): Promise<void> {
    await super.raiseEvent(instanceId, eventName, data);
    this.events.push({ instanceId, name: eventName, data });
  }
}

/** Scripts of `runsUntilStopped` still running, by the exit that ends them as a real script would. */
const runningScripts = new Set<() => void>();

/**
 * The builder "VM": writes `stdout` and runs until its run command is deleted (a cancel), times
 * out, or the test ends it with {@link endRunningScripts} (as build.sh exits after its result).
 */
export function runsUntilStopped(stdout = ""): RunCommandExecutor {
  return (run) => {
    if (stdout) run.stdout(stdout);
    // No timer of its own: a run command nobody stops must not keep the test process alive.
    return new Promise((resolve) => {
      const exit = (exitCode: number) => {
        runningScripts.delete(end);
        resolve({ exitCode });
      };
      const end = () => exit(0);
      runningScripts.add(end);
      if (run.signal.aborted) exit(137);
      else run.signal.addEventListener("abort", () => exit(137), { once: true });
    });
  };
}

/** Lets every running script exit, as build.sh does once it has reported its result. */
export function endRunningScripts(): void {
  for (const end of [...runningScripts]) end();
}

export interface TestCloud {
  azurite: Azurite;
  arm: ArmEmulator;
  /** The environments' registry (both name it by its login server). */
  registry: LocalRegistry;
  engine: ObservedEngine;
  rpc: DurableRpcServer;
  config: Config;
  deps: Deps;
  /**
   * The host's log channel fails for the next build that starts: the orchestrator's first log
   * line throws, its top-level handler logs the unexpected error, that throws too, and the
   * orchestration ends `Failed`, as an orchestrator function that throws does in Azure. The build
   * orchestrator catches every failure of its own, so this is the one way to crash it for real.
   */
  crashNextBuild(): void;
  /** Waits until the build's published status (as the task hub stores it: JSON) satisfies `done`. */
  published(buildId: string, done: (status: BuildStatus) => boolean): Promise<BuildStatus>;
  /** The orchestrations' and activities' recent log lines that mention `text` (for failure messages). */
  logLines(text: string): string[];
  stop(): Promise<void>;
}

export async function startTestCloud(): Promise<TestCloud> {
  // A real registry: from orchestrator version 5 every build asks it (through its login server)
  // before the lease.
  const [azurite, arm, registry] = await Promise.all([startAzurite(), startArmEmulator(), startRegistry()]);
  const environment = (vm: string, app: string) => ({
    subscriptionId: SUB,
    resourceGroup: "rg-builds",
    builderVm: vm,
    registry: registry.host,
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
    FASTBUILD_COMPUTE_ENDPOINT: arm.endpoint,
    FASTBUILD_CONTAINERAPPS_ENDPOINT: arm.endpoint,
    FASTBUILD_MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
    FASTBUILD_IDLE_SHUTDOWN_MINUTES: "30",
  });
  for (const [vmName, appName] of [
    ["builder-dev", "demo"],
    ["builder-prod", "shop"],
  ] as const) {
    arm.addVm({ subscriptionId: SUB, resourceGroup: "rg-builds", vmName }, { powerState: "running" });
    arm.addContainerApp(
      { subscriptionId: SUB, resourceGroup: "rg-builds", appName },
      { containers: [{ name: "main", image: `${registry.host}/apps/${appName}:old` }] },
    );
  }
  arm.setRunCommandExecutor(runsUntilStopped());

  const wiring = testWiring(arm);
  const deps: Deps = createDeps({
    ...wiring,
    tlsCa: `${wiring.tlsCa ?? ""}\n${registry.ca}`,
    registryOptions: { endpoints: { [registry.host]: registry.loginUrl }, maxRetries: 0 },
    config,
  });

  let crashArmed = false;
  const crashing = new Set<string>();
  const lines: string[] = [];
  const log: NonNullable<LocalDurableEngineOptions["log"]> = (level, message) => {
    lines.push(`${level} ${message}`);
    if (lines.length > 500) lines.shift();
    const buildId = /^build=(\S+) /.exec(message)?.[1];
    if (buildId === undefined) return;
    if (crashArmed && message.startsWith(`build=${buildId} started for environment`)) {
      crashArmed = false;
      crashing.add(buildId);
    }
    if (crashing.has(buildId)) throw new Error("the host's log channel is unavailable");
  };

  const engine = new ObservedEngine({
    orchestrators: new Map([[BUILD_ORCHESTRATOR, buildOrchestrator]]),
    activities: createActivities(deps),
    // Real time, not the virtual clock: the tests hold builds in their waits (for the source, for
    // the builder's result) while they call the API, and a virtual clock would fire the source
    // deadline and the lease-renewal timers at once. Every move the tests need comes from an event
    // (source, callback, cancel) or a fast activity, so no test waits on a timer.
    clock: { kind: "real" },
    log,
  });
  const rpc = await startDurableRpcServer(() => engine, { taskHubName: "fastbuild" });

  const published = async (buildId: string, done: (status: BuildStatus) => boolean) => {
    const read = async () => {
      const custom = (await engine.getStatus(buildId))?.customStatus;
      return custom === undefined ? undefined : (JSON.parse(JSON.stringify(custom)) as BuildStatus);
    };
    const status = await waitFor(read, (value) => value !== undefined && done(value));
    if (status === undefined) throw new Error(`build ${buildId} published no status`);
    return status;
  };

  return {
    azurite,
    arm,
    registry,
    engine,
    rpc,
    config,
    deps,
    crashNextBuild: () => {
      crashArmed = true;
    },
    published,
    logLines: (text) => lines.filter((line) => line.includes(text)),
    stop: async () => {
      await engine.stop();
      await Promise.all([rpc.stop(), azurite.stop(), arm.stop(), registry.stop()]);
    },
  };
}

/** Ends every build that is still running through the API (cancel), so the next test finds free builders. */
export async function cancelRunningBuilds(cloud: TestCloud, cancel: HttpHandler): Promise<void> {
  const running = (await cloud.engine.listInstances()).filter(
    (instance) => !["Completed", "Failed", "Terminated"].includes(instance.runtimeStatus),
  );
  await Promise.all(
    running.map(async ({ instanceId }) => {
      // 202, or 409/503 for a build that ended meanwhile: either way it is on its way out.
      await call(cloud.rpc, cancel, "cancelBuild", {
        method: "POST",
        path: `builds/${instanceId}/cancel`,
        params: { id: instanceId },
      });
    }),
  );
  // A build whose result already arrived (409 above) retires its command once the script exits.
  endRunningScripts();
  await Promise.all(
    running.map(async ({ instanceId }) => {
      await cloud.engine.waitForCompletion(instanceId, 60_000).catch(async (error: unknown) => {
        const status = await cloud.engine.getStatus(instanceId);
        throw new Error(
          `build ${instanceId} did not end after a cancel: ${JSON.stringify(status?.customStatus)}\n` +
            cloud.logLines(instanceId).join("\n"),
          { cause: error },
        );
      });
    }),
  );
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

/** A timer context, for calling timer handlers directly; with `rpc`, it has the durable client input. */
export function timerContext(
  functionName: string,
  logs: string[],
  rpc?: DurableRpcServer,
): InstanceType<typeof InvocationContext> {
  const context = new InvocationContext({
    invocationId: randomUUID(),
    functionName,
    logHandler: (level, ...args) => logs.push(`${level} ${args.map(String).join(" ")}`),
    options: {
      trigger: { type: "timerTrigger", name: "timer" },
      extraInputs: rpc ? [durableClientInput] : [],
    },
  });
  if (rpc) context.extraInputs.set(durableClientInput, rpc.clientBindingData());
  return context;
}
