/**
 * What the local functions runtime needs from a durable engine: the operations the Durable
 * Functions HTTP/RPC API offers a client. The local engine (built on durable-functions' own replay
 * engine) implements it; the local host serves it at the `rpcBaseUrl` the real durable client calls.
 */
export type RuntimeStatus = "Pending" | "Running" | "Completed" | "Failed" | "Terminated" | "ContinuedAsNew";

/** The statuses an instance never leaves. */
export const TERMINAL_STATUSES: ReadonlySet<RuntimeStatus> = new Set<RuntimeStatus>([
  "Completed",
  "Failed",
  "Terminated",
]);

export interface InstanceStatus {
  name: string;
  instanceId: string;
  runtimeStatus: RuntimeStatus;
  input: unknown;
  customStatus: unknown;
  output: unknown;
  createdTime: string;
  lastUpdatedTime: string;
}

export interface DurableEngine {
  /** Starts an orchestration; throws if `instanceId` already exists and is not terminal. */
  startNew(name: string, instanceId: string, input: unknown): Promise<void>;
  getStatus(instanceId: string): Promise<InstanceStatus | undefined>;
  listInstances(): Promise<InstanceStatus[]>;
  raiseEvent(instanceId: string, eventName: string, data: unknown): Promise<void>;
  terminate(instanceId: string, reason: string): Promise<void>;
  /** Resolves when the instance reaches a terminal status (for tests and the simulation). */
  waitForCompletion(instanceId: string, timeoutMs: number): Promise<InstanceStatus>;
  stop(): Promise<void>;
}
