/**
 * A small in-memory `DurableEngine` for the host and HTTP-handler tests: it keeps the contract
 * (start refuses a live duplicate id, events and terminate only reach live instances, statuses have
 * every field, waitForCompletion resolves on a terminal status) without running orchestrator code.
 * Tests move an instance along with `publish` / `complete`, the way an orchestration would, and
 * read what the functions sent with `events`.
 */
import { ConflictError, NotFoundError } from "../../src/core/errors.js";
import type { DurableEngine, InstanceStatus, RuntimeStatus } from "../../src/local/durable/engine.js";

const TERMINAL: ReadonlySet<RuntimeStatus> = new Set(["Completed", "Failed", "Terminated"]);

export interface RaisedEvent {
  instanceId: string;
  name: string;
  data: unknown;
}

export class MemoryEngine implements DurableEngine {
  readonly instances = new Map<string, InstanceStatus>();
  readonly events: RaisedEvent[] = [];
  readonly terminations: { instanceId: string; reason: string }[] = [];
  private readonly waiters = new Map<string, ((status: InstanceStatus) => void)[]>();

  startNew(name: string, instanceId: string, input: unknown): Promise<void> {
    const existing = this.instances.get(instanceId);
    if (existing && !TERMINAL.has(existing.runtimeStatus)) {
      return Promise.reject(
        new ConflictError(`instance ${instanceId} already exists`, { code: "InstanceExists" }),
      );
    }
    const now = new Date().toISOString();
    this.instances.set(instanceId, {
      name,
      instanceId,
      runtimeStatus: "Running",
      input: structuredClone(input),
      customStatus: null,
      output: null,
      createdTime: now,
      lastUpdatedTime: now,
    });
    return Promise.resolve();
  }

  getStatus(instanceId: string): Promise<InstanceStatus | undefined> {
    const status = this.instances.get(instanceId);
    return Promise.resolve(status ? structuredClone(status) : undefined);
  }

  listInstances(): Promise<InstanceStatus[]> {
    return Promise.resolve([...this.instances.values()].map((status) => structuredClone(status)));
  }

  raiseEvent(instanceId: string, eventName: string, data: unknown): Promise<void> {
    const status = this.instances.get(instanceId);
    if (!status) return Promise.reject(new NotFoundError(`no instance ${instanceId}`, { code: "NotFound" }));
    // A live instance buffers the event; an ended one ignores it, as the durable host does.
    if (!TERMINAL.has(status.runtimeStatus)) this.events.push({ instanceId, name: eventName, data });
    return Promise.resolve();
  }

  terminate(instanceId: string, reason: string): Promise<void> {
    const status = this.instances.get(instanceId);
    if (!status) return Promise.reject(new NotFoundError(`no instance ${instanceId}`, { code: "NotFound" }));
    if (!TERMINAL.has(status.runtimeStatus)) {
      this.terminations.push({ instanceId, reason });
      this.update(instanceId, { runtimeStatus: "Terminated", output: reason });
    }
    return Promise.resolve();
  }

  waitForCompletion(instanceId: string, timeoutMs: number): Promise<InstanceStatus> {
    const status = this.instances.get(instanceId);
    if (!status) return Promise.reject(new NotFoundError(`no instance ${instanceId}`, { code: "NotFound" }));
    if (TERMINAL.has(status.runtimeStatus)) return Promise.resolve(structuredClone(status));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`instance ${instanceId} still running`)), timeoutMs);
      const list = this.waiters.get(instanceId) ?? [];
      list.push((done) => {
        clearTimeout(timer);
        resolve(done);
      });
      this.waiters.set(instanceId, list);
    });
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }

  /** What the orchestration would publish with `setCustomStatus`. */
  publish(instanceId: string, customStatus: unknown): void {
    this.update(instanceId, { customStatus });
  }

  /** Ends the instance the way an orchestration's return or failure would. */
  complete(instanceId: string, runtimeStatus: "Completed" | "Failed", output: unknown = null): void {
    this.update(instanceId, { runtimeStatus, output });
  }

  private update(instanceId: string, change: Partial<InstanceStatus>): void {
    const status = this.instances.get(instanceId);
    if (!status) throw new Error(`no instance ${instanceId}`);
    const next = { ...status, ...change, lastUpdatedTime: new Date().toISOString() };
    this.instances.set(instanceId, next);
    if (TERMINAL.has(next.runtimeStatus)) {
      for (const wake of this.waiters.get(instanceId) ?? []) wake(structuredClone(next));
      this.waiters.delete(instanceId);
    }
  }
}
