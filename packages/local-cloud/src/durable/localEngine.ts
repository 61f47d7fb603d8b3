/**
 * The local durable engine: many orchestration instances, each driven by an `OrchestrationDriver`
 * on durable-functions' own replay engine, behind the `DurableEngine` interface the local functions
 * host serves at the durable client's `rpcBaseUrl`. Status shapes follow the Durable HTTP API.
 */
import { describeError } from "../errors.js";
import type { OrchestrationHandler } from "durable-functions";
import {
  OrchestrationDriver,
  type ActivityHandler,
  type DriverClock,
  type ReplaySchemaName,
} from "./driver.js";
import { TERMINAL_STATUSES, type DurableEngine, type InstanceStatus } from "./engine.js";

export interface LocalDurableEngineOptions {
  /** Orchestrator name → generator function (the same ones `df.app.orchestration` registers). */
  orchestrators: ReadonlyMap<string, OrchestrationHandler>;
  /** Activity name → handler (the same ones `df.app.activity` registers). */
  activities: ReadonlyMap<string, ActivityHandler>;
  /** Default: real time (the simulation). Tests pass `{ kind: "virtual" }`. */
  clock?: DriverClock;
  schema?: ReplaySchemaName;
  stallTimeoutMs?: number;
  log?: (level: string, message: string) => void;
}

export class LocalDurableEngine implements DurableEngine {
  private readonly instances = new Map<
    string,
    { driver: OrchestrationDriver; done: Promise<InstanceStatus> }
  >();

  constructor(private readonly options: LocalDurableEngineOptions) {}

  startNew(name: string, instanceId: string, input: unknown): Promise<void> {
    const orchestrator = this.options.orchestrators.get(name);
    if (!orchestrator) return Promise.reject(new Error(`no orchestrator named ${name}`));
    const existing = this.instances.get(instanceId);
    if (existing && !TERMINAL_STATUSES.has(existing.driver.status().runtimeStatus)) {
      return Promise.reject(
        new Error(`instance ${instanceId} already exists and is ${existing.driver.status().runtimeStatus}`),
      );
    }
    const driver = new OrchestrationDriver({
      name,
      orchestrator,
      instanceId,
      input,
      activities: this.options.activities,
      clock: this.options.clock ?? { kind: "real" },
      ...(this.options.schema ? { schema: this.options.schema } : {}),
      ...(this.options.stallTimeoutMs ? { stallTimeoutMs: this.options.stallTimeoutMs } : {}),
      ...(this.options.log ? { log: this.options.log } : {}),
    });
    // A driver error (non-determinism, a stuck instance) ends the instance as Failed, as the host would.
    const done = driver.run().catch((error: unknown): InstanceStatus => {
      const message = describeError(error);
      this.options.log?.("error", `instance ${instanceId} failed in the driver: ${message}`);
      return { ...driver.status(), runtimeStatus: "Failed", output: message };
    });
    this.instances.set(instanceId, { driver, done });
    return Promise.resolve();
  }

  async getStatus(instanceId: string): Promise<InstanceStatus | undefined> {
    const entry = this.instances.get(instanceId);
    if (!entry) return undefined;
    const status = entry.driver.status();
    // Once the run promise settled, its status (which may record a driver failure) is final.
    const settled = await Promise.race([entry.done, Promise.resolve(undefined)]);
    return settled ?? status;
  }

  async listInstances(): Promise<InstanceStatus[]> {
    const ids = [...this.instances.keys()];
    const statuses = await Promise.all(ids.map((id) => this.getStatus(id)));
    return statuses.filter((s): s is InstanceStatus => s !== undefined);
  }

  raiseEvent(instanceId: string, eventName: string, data: unknown): Promise<void> {
    const entry = this.instances.get(instanceId);
    if (!entry) return Promise.reject(new Error(`no instance ${instanceId}`));
    entry.driver.raiseEvent(eventName, data);
    return Promise.resolve();
  }

  terminate(instanceId: string, reason: string): Promise<void> {
    const entry = this.instances.get(instanceId);
    if (!entry) return Promise.reject(new Error(`no instance ${instanceId}`));
    entry.driver.terminate(reason);
    return Promise.resolve();
  }

  async waitForCompletion(instanceId: string, timeoutMs: number): Promise<InstanceStatus> {
    const entry = this.instances.get(instanceId);
    if (!entry) throw new Error(`no instance ${instanceId}`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`instance ${instanceId} did not finish within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([entry.done, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Terminates every running instance and waits for them to stop. */
  async stop(): Promise<void> {
    for (const { driver } of this.instances.values()) driver.terminate("engine stopped");
    await Promise.all([...this.instances.values()].map((entry) => entry.done));
  }
}
