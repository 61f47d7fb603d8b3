/**
 * The local durable engine: many orchestration instances, each driven by an `OrchestrationDriver`
 * on durable-functions' own replay engine, behind the `DurableEngine` interface the local functions
 * host serves at the durable client's `rpcBaseUrl`. Status shapes follow the Durable HTTP API.
 * The host can crash and restart: every running instance stops mid-run and resumes from its
 * history (plus the events still queued for it), as the Durable host does after a restart.
 */
import { describeError } from "../errors.js";
import type { OrchestrationHandler } from "durable-functions";
import { VirtualClock } from "./clock.js";
import {
  OrchestrationDriver,
  type ActivityHandler,
  type DeliveryOrdering,
  type DriverClock,
  type DriverFaults,
  type ReplaySchemaName,
} from "./driver.js";
import { TERMINAL_STATUSES, type DurableEngine, type InstanceStatus } from "./engine.js";
import type { HistoryEvent } from "./history.js";
import type { DateStringMode } from "./hostRules.js";

export interface LocalDurableEngineOptions {
  /** Orchestrator name → generator function (the same ones `df.app.orchestration` registers). */
  orchestrators: ReadonlyMap<string, OrchestrationHandler>;
  /** Activity name → handler (the same ones `df.app.activity` registers). */
  activities: ReadonlyMap<string, ActivityHandler>;
  /**
   * Default: real time (the simulation). Tests pass `{ kind: "virtual" }`; all instances then share
   * one virtual clock (`clock`, or one the engine makes from `start`).
   */
  clock?: DriverClock;
  schema?: ReplaySchemaName;
  ordering?: DeliveryOrdering;
  faults?: DriverFaults;
  functionTimeoutMs?: number;
  dateStrings?: DateStringMode;
  /** Ms before the host picks up a new instance (virtual ms on a virtual clock); it reads `Pending` until then. */
  pickupDelayMs?: number;
  stallTimeoutMs?: number;
  log?: (level: string, message: string) => void;
}

interface Instance {
  name: string;
  input: unknown;
  driver: OrchestrationDriver;
  /** Resolves at a terminal status, across restarts. */
  done: Promise<InstanceStatus>;
  settle: (status: InstanceStatus) => void;
  /** Stopped by `crash()` and not restarted yet. */
  crashed: boolean;
}

export class LocalDurableEngine implements DurableEngine {
  private readonly instances = new Map<string, Instance>();
  private readonly clock: DriverClock;

  constructor(private readonly options: LocalDurableEngineOptions) {
    const clock = options.clock ?? { kind: "real" };
    this.clock =
      clock.kind === "virtual" && !clock.clock
        ? {
            kind: "virtual",
            clock: new VirtualClock(clock.start),
            ...(clock.realDelayMs ? { realDelayMs: clock.realDelayMs } : {}),
          }
        : clock;
  }

  /** The host's clock (the shared virtual clock's time, or the wall clock). */
  now(): Date {
    return this.clock.kind === "virtual" ? this.clock.clock!.now() : new Date();
  }

  startNew(name: string, instanceId: string, input: unknown): Promise<void> {
    const orchestrator = this.options.orchestrators.get(name);
    if (!orchestrator) return Promise.reject(new Error(`no orchestrator named ${name}`));
    const existing = this.instances.get(instanceId);
    if (existing && !TERMINAL_STATUSES.has(existing.driver.status().runtimeStatus)) {
      return Promise.reject(
        new Error(`instance ${instanceId} already exists and is ${existing.driver.status().runtimeStatus}`),
      );
    }
    let settle: (status: InstanceStatus) => void = () => undefined;
    const done = new Promise<InstanceStatus>((resolve) => (settle = resolve));
    const pickup = this.options.pickupDelayMs ? { pickupDelayMs: this.options.pickupDelayMs } : {};
    const driver = this.driver(name, instanceId, input, pickup);
    const instance: Instance = { name, input, driver, done, settle, crashed: false };
    this.instances.set(instanceId, instance);
    this.start(instanceId, instance);
    return Promise.resolve();
  }

  private driver(
    name: string,
    instanceId: string,
    input: unknown,
    resume: Pick<
      ConstructorParameters<typeof OrchestrationDriver>[0],
      "history" | "undelivered" | "pickupDelayMs"
    >,
  ): OrchestrationDriver {
    const o = this.options;
    return new OrchestrationDriver({
      name,
      orchestrator: o.orchestrators.get(name)!,
      instanceId,
      input,
      activities: o.activities,
      clock: this.clock,
      ...(o.schema ? { schema: o.schema } : {}),
      ...(o.ordering ? { ordering: o.ordering } : {}),
      ...(o.faults ? { faults: o.faults } : {}),
      ...(o.functionTimeoutMs !== undefined ? { functionTimeoutMs: o.functionTimeoutMs } : {}),
      ...(o.dateStrings ? { dateStrings: o.dateStrings } : {}),
      ...(o.stallTimeoutMs ? { stallTimeoutMs: o.stallTimeoutMs } : {}),
      ...(o.log ? { log: o.log } : {}),
      ...resume,
    });
  }

  private start(instanceId: string, instance: Instance): void {
    const driver = instance.driver;
    // A driver error (non-determinism, a stuck instance) ends the instance as Failed, as the host would.
    void driver.run().then(
      (status) => {
        if (TERMINAL_STATUSES.has(status.runtimeStatus)) instance.settle(status);
      },
      (error: unknown) => {
        const message = describeError(error);
        this.options.log?.("error", `instance ${instanceId} failed in the driver: ${message}`);
        instance.settle({ ...driver.status(), runtimeStatus: "Failed", output: message });
      },
    );
  }

  async getStatus(instanceId: string): Promise<InstanceStatus | undefined> {
    const entry = this.instances.get(instanceId);
    if (!entry) return undefined;
    const status = entry.driver.status();
    // Once the instance settled, its status (which may record a driver failure) is final.
    const settled = await Promise.race([entry.done, Promise.resolve(undefined)]);
    return settled ?? status;
  }

  /** A copy of an instance's history (for timelines and debugging); undefined for an unknown id. */
  history(instanceId: string): HistoryEvent[] | undefined {
    return this.instances.get(instanceId)?.driver.getHistory();
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

  /**
   * The host goes down: every running instance stops where it is (an activity's result not yet
   * recorded is lost). Events raised meanwhile queue up. `restart()` brings the host back.
   */
  async crash(): Promise<void> {
    const running = [...this.instances.values()].filter(
      (i) => !TERMINAL_STATUSES.has(i.driver.status().runtimeStatus),
    );
    for (const instance of running) {
      instance.crashed = true;
      instance.driver.crash();
    }
    await Promise.all(running.map((instance) => instance.driver.run().catch(() => undefined)));
  }

  /** The host comes back: each instance that did not end resumes from its history and queued events. */
  restart(): void {
    for (const [instanceId, instance] of this.instances) {
      const old = instance.driver;
      if (!instance.crashed) continue;
      instance.driver = this.driver(instance.name, instanceId, instance.input, {
        history: old.getHistory(),
        undelivered: old.undeliveredEvents(),
      });
      instance.crashed = false;
      this.start(instanceId, instance);
    }
  }

  /** Resolves once no activity handler the host gave up on is still running. */
  async settled(): Promise<void> {
    await Promise.all([...this.instances.values()].map((i) => i.driver.settled()));
  }

  /** Terminates every running instance and waits for them to stop. */
  async stop(): Promise<void> {
    for (const instance of this.instances.values()) {
      // A crashed host that never came back: its instances stay as they were.
      if (instance.crashed) instance.settle(instance.driver.status());
      else instance.driver.terminate("engine stopped");
    }
    await Promise.all([...this.instances.values()].map((entry) => entry.done));
  }
}
