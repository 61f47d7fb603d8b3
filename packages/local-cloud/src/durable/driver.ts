// The declarations live beside this package (it owns them), and ambient module declarations can only
// be pulled into a program that imports this file by a reference.
// eslint-disable-next-line @typescript-eslint/triple-slash-reference
/// <reference path="../types/durable-functions-internals.d.ts" />
/**
 * Runs one orchestration instance on durable-functions' own replay engine, playing the role the
 * Durable Functions host plays in Azure: it keeps the history, replays the orchestrator from the
 * start with a fresh context after every new event, turns the actions it emits into history
 * (running the real activity handlers, firing timers, delivering raised events) and checks that
 * the orchestrator is deterministic: every replay must emit the actions of the previous one as a
 * prefix. The library does not check this itself (the host does), so a non-deterministic
 * orchestrator would otherwise pass here and corrupt instances in Azure.
 *
 * One new event per replay: the library numbers tasks (and retry timers) in the order it
 * processes history, so feeding one event at a time keeps the driver's numbering in lockstep with
 * the library's without re-implementing its scheduler.
 */
// @azure/functions is a CommonJS bundle whose named exports Node cannot detect: use its default export.
import functions from "@azure/functions";
import type { InvocationContext } from "@azure/functions";
import type { OrchestrationHandler } from "durable-functions";
import {
  createOrchestrator,
  DummyOrchestrationContext,
  DurableOrchestrationInput,
  type ReplayState,
} from "durable-functions/lib/src/util/testingUtils.js";
import { TERMINAL_STATUSES, type InstanceStatus, type RuntimeStatus } from "./engine.js";
import { events, HistoryEventType, type HistoryEvent } from "./history.js";

/** A registered activity: the same handler `df.app.activity` registers. */
export type ActivityHandler = (input: unknown, context: InvocationContext) => unknown;

export type ReplaySchemaName = "V1" | "V3";
const SCHEMA_VERSION: Record<ReplaySchemaName, number> = { V1: 0, V3: 2 };

/**
 * `virtual`: timers fire as soon as nothing else is pending, in `fireAt` order, and the
 * orchestration's clock jumps to their `fireAt` (tests: hours of backoff in milliseconds).
 * `realDelayMs` gives asynchronous work outside the driver (a run command on the emulator) a
 * moment of real time before each virtual timer fires. `real`: timers wait for the wall clock
 * (the local simulation).
 */
export type DriverClock = { kind: "virtual"; start?: Date; realDelayMs?: number } | { kind: "real" };

export interface DriverOptions {
  /** Orchestrator function name (as registered). */
  name: string;
  orchestrator: OrchestrationHandler;
  instanceId: string;
  input: unknown;
  activities: ReadonlyMap<string, ActivityHandler>;
  schema?: ReplaySchemaName;
  clock?: DriverClock;
  /**
   * Virtual clock only: how long (real ms) the orchestration may wait for an external event
   * with nothing else pending before the driver calls it stuck. Default 30 s.
   */
  stallTimeoutMs?: number;
  /** Guard against an orchestrator that never ends. Default 20,000 replays. */
  maxReplays?: number;
  /** Where the orchestrator's and activities' `context.log` lines go. Default: dropped. */
  log?: (level: string, message: string) => void;
  /** Called after each replay with the new status (custom status included). */
  onUpdate?: (status: InstanceStatus) => void;
}

/** The orchestrator emitted actions that do not extend what it emitted before. */
export class NonDeterminismError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NonDeterminismError";
  }
}

interface RetryShape {
  firstRetryIntervalInMilliseconds: number;
  maxNumberOfAttempts: number;
  backoffCoefficient?: number;
  maxRetryIntervalInMilliseconds?: number;
}

type Atomic =
  | { kind: "activity"; name: string; input: unknown; retry: RetryShape | undefined; ref: object }
  | { kind: "timer"; fireAt: Date; ref: { isCanceled?: boolean } }
  | { kind: "event"; name: string; ref: object };

interface PendingActivity {
  id: number;
  name: string;
  input: unknown;
  retry: RetryShape | undefined;
  /** Failed attempts so far. */
  failures: number;
}
interface PendingTimer {
  id: number;
  fireAt: Date;
  /** The library's action object: `cancel()` flips its `isCanceled`. */
  ref: { isCanceled?: boolean } | undefined;
  /** A retry timer belongs to the activity it re-runs. */
  retryOf: PendingActivity | undefined;
}

// Action types from durable-functions `lib/src/actions/ActionType.js`.
const ACTION = {
  CallActivity: 0,
  CallActivityWithRetry: 1,
  CreateTimer: 5,
  WaitForExternalEvent: 6,
  WhenAny: 11,
  WhenAll: 12,
} as const;

/** Flattens V1 (one array per yield) and V3 (compound actions) alike into the atomic actions, in order. */
export function flattenActions(actions: unknown): Atomic[] {
  const out: Atomic[] = [];
  const seen = new Set<object>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const child of node) visit(child);
      return;
    }
    if (typeof node !== "object" || node === null) return;
    const action = node as Record<string, unknown>;
    const type = action.actionType;
    if (type === ACTION.WhenAny || type === ACTION.WhenAll) {
      visit(action.compoundActions);
      return;
    }
    if (seen.has(node)) {
      // The same task inside two Task.any/all: the host would schedule it twice. Fail here.
      throw new NonDeterminismError(
        `a task was yielded inside a second Task.any/Task.all (${describeAction(action)}); ` +
          "create a fresh task instead of reusing one across compound tasks",
      );
    }
    seen.add(node);
    if (type === ACTION.CallActivity || type === ACTION.CallActivityWithRetry) {
      out.push({
        kind: "activity",
        name: String(action.functionName),
        input: decodeActionInput(action.input),
        retry: type === ACTION.CallActivityWithRetry ? (action.retryOptions as RetryShape) : undefined,
        ref: node,
      });
    } else if (type === ACTION.CreateTimer) {
      out.push({ kind: "timer", fireAt: new Date(action.fireAt as Date | string), ref: node });
    } else if (type === ACTION.WaitForExternalEvent) {
      out.push({ kind: "event", name: String(action.externalEventName), ref: node });
    } else {
      throw new Error(`the local durable driver does not support action type ${String(type)}`);
    }
  };
  visit(actions);
  return out;
}

function describeAction(action: Record<string, unknown>): string {
  if (typeof action.functionName === "string") return `activity ${action.functionName}`;
  if (action.fireAt !== undefined) return `timer at ${new Date(action.fireAt as string).toISOString()}`;
  if (typeof action.externalEventName === "string") return `event ${action.externalEventName}`;
  return `action type ${String(action.actionType)}`;
}

/** The library JSON-encodes string inputs (only); the host hands activities the decoded value. */
function decodeActionInput(input: unknown): unknown {
  if (typeof input === "string") return JSON.parse(input);
  return input === undefined ? undefined : JSON.parse(JSON.stringify(input));
}

/** What the determinism check compares: everything about an action except whether it was cancelled. */
function signature(action: Atomic): string {
  switch (action.kind) {
    case "activity":
      return `activity ${action.name} ${JSON.stringify(action.input)} retry=${JSON.stringify(action.retry ?? null)}`;
    case "timer":
      return `timer ${action.fireAt.toISOString()}`;
    case "event":
      return `event ${action.name}`;
  }
}

/** Replays `history` once on the library's engine with a fresh context. */
export async function replayOnce(
  orchestrator: OrchestrationHandler,
  options: {
    instanceId: string;
    history: readonly HistoryEvent[];
    input: unknown;
    schema: ReplaySchemaName;
    log?: (level: string, message: string) => void;
  },
): Promise<{ state: ReplayState; error: string | undefined }> {
  const run = createOrchestrator(orchestrator);
  // A deep copy: the library converts timestamps to Dates in place and must see a fresh history.
  const history = JSON.parse(JSON.stringify(options.history)) as unknown[];
  const input = new DurableOrchestrationInput(
    options.instanceId,
    history,
    options.input,
    undefined,
    undefined,
    undefined,
    SCHEMA_VERSION[options.schema],
  );
  const log = options.log;
  const context = new DummyOrchestrationContext(options.instanceId, undefined, (level, ...args) =>
    log?.(level, args.map(String).join(" ")),
  );
  try {
    return { state: await run(input, context), error: undefined };
  } catch (error) {
    // The library reports an orchestrator that threw as an error whose message carries the state.
    const text = error instanceof Error ? error.message : String(error);
    const marker = "\n\n$OutOfProcData$:";
    const at = text.indexOf(marker);
    if (at < 0) throw error;
    const state = JSON.parse(text.slice(at + marker.length)) as ReplayState;
    // The message before the marker is not the error (3.5.0 passes a flag there); the state has it.
    return { state, error: state.error ?? text.slice(0, at) };
  }
}

/**
 * Replays `history` cut after each `OrchestratorStarted` boundary and checks that every prefix
 * emits a prefix of the full history's actions. Use it on a finished instance's history.
 */
export async function checkReplayPrefixes(
  orchestrator: OrchestrationHandler,
  options: { instanceId: string; history: readonly HistoryEvent[]; input: unknown; schema: ReplaySchemaName },
): Promise<number> {
  const cuts: number[] = [];
  options.history.forEach((event, index) => {
    if (index > 0 && event.EventType === HistoryEventType.OrchestratorStarted) cuts.push(index);
  });
  cuts.push(options.history.length);
  const full = await replayOnce(orchestrator, options);
  const fullSigs = flattenActions(full.state.actions).map(signature);
  for (const cut of cuts) {
    const partial = await replayOnce(orchestrator, { ...options, history: options.history.slice(0, cut) });
    const sigs = flattenActions(partial.state.actions).map(signature);
    assertPrefix(sigs, fullSigs, `history cut at event ${cut}`);
  }
  return cuts.length;
}

function assertPrefix(previous: readonly string[], next: readonly string[], where: string): void {
  for (let i = 0; i < previous.length; i++) {
    if (previous[i] !== next[i]) {
      throw new NonDeterminismError(
        `non-deterministic orchestrator (${where}): action #${i} was "${previous[i]}" ` +
          `and is now "${next[i] ?? "(missing)"}"`,
      );
    }
  }
}

/** Drives one instance to a terminal state. Create it, then `run()`; raise events at any time. */
export class OrchestrationDriver {
  readonly instanceId: string;
  readonly name: string;
  readonly schema: ReplaySchemaName;
  private readonly options: DriverOptions;
  private readonly clock: DriverClock;
  private readonly history: HistoryEvent[] = [];
  /** Actions (signatures) of the last replay: the next replay must extend them. */
  private emitted: string[] = [];
  /** Sequence number of each emitted action (undefined for event waits), by position. */
  private emittedIds: (number | undefined)[] = [];
  private nextId = 0;
  private readonly activities: PendingActivity[] = [];
  private readonly timers: PendingTimer[] = [];
  private readonly raised: { name: string; data: unknown }[] = [];
  private wake: (() => void) | undefined;
  private terminateReason: string | undefined;
  private virtualNow: Date;
  private runtimeStatus: RuntimeStatus = "Pending";
  private customStatus: unknown = undefined;
  private output: unknown = undefined;
  private readonly createdTime = new Date();
  private lastUpdatedTime = new Date();
  private replays = 0;
  private running: Promise<InstanceStatus> | undefined;

  constructor(options: DriverOptions) {
    this.options = options;
    this.instanceId = options.instanceId;
    this.name = options.name;
    this.schema = options.schema ?? "V3";
    this.clock = options.clock ?? { kind: "virtual" };
    this.virtualNow =
      this.clock.kind === "virtual" ? new Date(this.clock.start ?? Date.UTC(2030, 0, 1)) : new Date();
  }

  /** Queues an external event; it is delivered (or buffered by the library) at the next replay. */
  raiseEvent(name: string, data: unknown): void {
    if (this.isTerminal()) return;
    this.raised.push({ name, data });
    this.wake?.();
  }

  /** Ends the instance as `Terminated` at the next opportunity (running activities finish first). */
  terminate(reason: string): void {
    if (this.isTerminal()) return;
    this.terminateReason = reason;
    this.wake?.();
  }

  /** Runs the instance to a terminal status (idempotent: a second call returns the same run). */
  run(): Promise<InstanceStatus> {
    this.running ??= this.loop();
    return this.running;
  }

  status(): InstanceStatus {
    return {
      name: this.name,
      instanceId: this.instanceId,
      runtimeStatus: this.runtimeStatus,
      input: this.options.input,
      customStatus: this.customStatus,
      output: this.output,
      createdTime: this.createdTime.toISOString(),
      lastUpdatedTime: this.lastUpdatedTime.toISOString(),
    };
  }

  /** A copy of the history so far (for determinism checks and debugging). */
  getHistory(): HistoryEvent[] {
    return this.history.map((event) => ({ ...event }));
  }

  /** Timers the orchestrator left neither fired nor cancelled when it ended (should be none). */
  openTimers(): { id: number; fireAt: string }[] {
    return this.timers
      .filter((timer) => !timer.ref?.isCanceled && !timer.retryOf)
      .map((timer) => ({ id: timer.id, fireAt: timer.fireAt.toISOString() }));
  }

  private isTerminal(): boolean {
    return TERMINAL_STATUSES.has(this.runtimeStatus);
  }

  private now(): Date {
    return this.clock.kind === "virtual" ? new Date(this.virtualNow) : new Date();
  }

  private async loop(): Promise<InstanceStatus> {
    const start = this.now();
    this.runtimeStatus = "Running";
    this.history.push(
      events.orchestratorStarted(start),
      events.executionStarted(start, this.name, this.options.input),
    );
    await this.replay();
    while (!this.isTerminal()) {
      if (this.terminateReason !== undefined) {
        const at = this.now();
        this.history.push(events.orchestratorStarted(at), {
          ...events.orchestratorCompleted(at),
          EventType: HistoryEventType.ExecutionTerminated,
          Input: JSON.stringify(this.terminateReason),
        });
        this.finish("Terminated", this.terminateReason);
        break;
      }
      await this.step();
    }
    return this.status();
  }

  /** Appends exactly one new event (plus what the host writes with it) and replays. */
  private async step(): Promise<void> {
    const event = this.raised.shift();
    if (event) {
      const at = this.now();
      this.history.push(events.orchestratorStarted(at), events.eventRaised(at, event.name, event.data));
      return this.replay();
    }
    const activity = this.activities.shift();
    if (activity) return this.runActivity(activity);

    this.dropCancelledTimers();
    const timer = this.timers.reduce<PendingTimer | undefined>(
      (soonest, candidate) => (!soonest || candidate.fireAt < soonest.fireAt ? candidate : soonest),
      undefined,
    );
    if (this.clock.kind === "real") {
      const delay = timer ? timer.fireAt.getTime() - Date.now() : Infinity;
      if (delay > 0 && (await this.idle(delay)) === "woken") return;
    } else if (timer) {
      // Let work outside the driver (an emulator's run command, another instance) move first.
      if ((await this.idle(this.clock.realDelayMs ?? 0)) === "woken") return;
    } else {
      const limit = this.options.stallTimeoutMs ?? 30_000;
      if ((await this.idle(limit)) === "timeout") {
        throw new Error(
          `orchestration ${this.instanceId} is stuck: nothing pending and no event arrived within ${limit} ms ` +
            `(waiting for: ${this.waitingFor().join(", ") || "nothing"})`,
        );
      }
      return;
    }
    if (!timer) return;
    this.timers.splice(this.timers.indexOf(timer), 1);
    if (this.clock.kind === "virtual" && timer.fireAt > this.virtualNow)
      this.virtualNow = new Date(timer.fireAt);
    const at = this.now();
    this.history.push(events.orchestratorStarted(at), events.timerFired(at, timer.id, timer.fireAt));
    if (timer.retryOf && timer.retryOf.failures < (timer.retryOf.retry?.maxNumberOfAttempts ?? 1)) {
      // Attempts left: the library opens a new task for the next attempt as it sees this event.
      const next = { ...timer.retryOf, id: this.nextId++ };
      this.history.push(events.taskScheduled(at, next.id, next.name, next.input));
      this.activities.push(next);
    }
    this.history.push(events.orchestratorCompleted(at));
    return this.replay();
  }

  private waitingFor(): string[] {
    return flattenActionsSafe(this.lastActions)
      .filter((action) => action.kind === "event")
      .map((action) => (action.kind === "event" ? action.name : ""));
  }

  private lastActions: unknown = [];

  /** Waits for `ms` of real time or until an event/terminate arrives. */
  private idle(ms: number): Promise<"woken" | "timeout"> {
    if (this.raised.length > 0 || this.terminateReason !== undefined) return Promise.resolve("woken");
    return new Promise((resolve) => {
      const timer =
        ms === Infinity
          ? undefined
          : ms <= 0
            ? setImmediate(() => done("timeout"))
            : setTimeout(() => done("timeout"), Math.min(ms, 2 ** 31 - 1));
      const done = (why: "woken" | "timeout") => {
        this.wake = undefined;
        if (timer !== undefined) {
          if (ms <= 0) clearImmediate(timer as NodeJS.Immediate);
          else clearTimeout(timer as NodeJS.Timeout);
        }
        resolve(why);
      };
      this.wake = () => done("woken");
    });
  }

  private dropCancelledTimers(): void {
    for (let i = this.timers.length - 1; i >= 0; i--) {
      if (this.timers[i]?.ref?.isCanceled) this.timers.splice(i, 1);
    }
  }

  private async runActivity(activity: PendingActivity): Promise<void> {
    const handler = this.options.activities.get(activity.name);
    let outcome: { ok: true; value: unknown } | { ok: false; reason: string; details: string };
    if (!handler) {
      outcome = { ok: false, reason: `activity ${activity.name} is not registered`, details: "" };
    } else {
      const log = this.options.log;
      const context = new functions.InvocationContext({
        functionName: activity.name,
        invocationId: `${this.instanceId}:${activity.id}:${activity.failures}`,
        logHandler: (level, ...args) => log?.(level, args.map(String).join(" ")),
      });
      try {
        const value: unknown = await handler(activity.input, context);
        // What crosses the host is JSON: round-trip so activities cannot hand the orchestrator live objects.
        outcome = { ok: true, value: value === undefined ? undefined : JSON.parse(JSON.stringify(value)) };
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        const details = error instanceof Error ? `${error.name}: ${error.message}` : "";
        outcome = { ok: false, reason, details };
      }
    }
    const at = this.now();
    this.history.push(events.orchestratorStarted(at));
    if (outcome.ok) {
      this.history.push(events.taskCompleted(at, activity.id, outcome.value));
    } else {
      this.history.push(events.taskFailed(at, activity.id, outcome.reason, outcome.details));
      if (activity.retry) {
        // The library answers a failed retryable task with a timer task, also after the last attempt.
        const failed = { ...activity, failures: activity.failures + 1 };
        const timerId = this.nextId++;
        const fireAt = new Date(at.getTime() + retryDelayMs(failed.retry!, failed.failures));
        this.history.push(events.timerCreated(at, timerId, fireAt));
        this.timers.push({ id: timerId, fireAt, ref: undefined, retryOf: failed });
      }
    }
    this.history.push(events.orchestratorCompleted(at));
    return this.replay();
  }

  private async replay(): Promise<void> {
    if (++this.replays > (this.options.maxReplays ?? 20_000)) {
      throw new Error(
        `orchestration ${this.instanceId} exceeded ${this.options.maxReplays ?? 20_000} replays`,
      );
    }
    // Everything before the newest OrchestratorStarted has been seen by the orchestrator once.
    let lastStarted = -1;
    this.history.forEach((event, index) => {
      if (event.EventType === HistoryEventType.OrchestratorStarted) lastStarted = index;
    });
    for (let i = 0; i < lastStarted; i++) this.history[i]!.IsPlayed = true;

    const { state, error } = await replayOnce(this.options.orchestrator, {
      instanceId: this.instanceId,
      history: this.history,
      input: this.options.input,
      schema: this.schema,
      log: this.options.log,
    });
    this.lastActions = state.actions;
    const actions = flattenActions(state.actions);
    const sigs = actions.map(signature);
    assertPrefix(this.emitted, sigs, `replay ${this.replays}`);
    const fresh = actions.slice(this.emitted.length);
    this.emitted = sigs;
    this.customStatus = state.customStatus;
    // Each replay builds new action objects; a timer cancelled in this replay is cancelled on
    // this replay's object, so pending timers must look at the newest one.
    actions.slice(0, this.emittedIds.length).forEach((action, index) => {
      const id = this.emittedIds[index];
      const timer = action.kind === "timer" ? this.timers.find((t) => t.id === id) : undefined;
      if (timer && action.kind === "timer") timer.ref = action.ref;
    });

    const at = this.now();
    const scheduled: HistoryEvent[] = [];
    for (const action of fresh) {
      if (action.kind === "event") {
        this.emittedIds.push(undefined); // matched by name; takes no sequence number
        continue;
      }
      const id = this.nextId++;
      this.emittedIds.push(id);
      if (action.kind === "activity") {
        scheduled.push(events.taskScheduled(at, id, action.name, action.input));
        this.activities.push({
          id,
          name: action.name,
          input: action.input,
          retry: action.retry,
          failures: 0,
        });
      } else {
        scheduled.push(events.timerCreated(at, id, action.fireAt));
        this.timers.push({ id, fireAt: action.fireAt, ref: action.ref, retryOf: undefined });
      }
    }
    // The host appends what the orchestrator scheduled to the episode that scheduled it.
    const completedAt = this.history.findLastIndex(
      (e) => e.EventType === HistoryEventType.OrchestratorCompleted,
    );
    if (completedAt > lastStarted) this.history.splice(completedAt, 0, ...scheduled);
    else this.history.push(...scheduled, events.orchestratorCompleted(at));

    if (error !== undefined) this.finish("Failed", error);
    else if (state.isDone) this.finish("Completed", state.output);
    else this.touch();
  }

  private finish(status: RuntimeStatus, output: unknown): void {
    this.runtimeStatus = status;
    this.output = output;
    this.touch();
  }

  private touch(): void {
    this.lastUpdatedTime = new Date();
    this.options.onUpdate?.(this.status());
  }
}

function flattenActionsSafe(actions: unknown): Atomic[] {
  try {
    return flattenActions(actions);
  } catch {
    return [];
  }
}

/** The host's retry delay: first interval × coefficient^(attempt-1), capped. */
export function retryDelayMs(retry: RetryShape, failures: number): number {
  const raw =
    retry.firstRetryIntervalInMilliseconds * (retry.backoffCoefficient ?? 1) ** Math.max(0, failures - 1);
  const cap = retry.maxRetryIntervalInMilliseconds;
  return cap !== undefined && cap > 0 ? Math.min(raw, cap) : raw;
}
