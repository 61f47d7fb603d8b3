// The declarations live beside this package (it owns them), and ambient module declarations can only
// be pulled into a program that imports this file by a reference.
// eslint-disable-next-line @typescript-eslint/triple-slash-reference
/// <reference path="../types/durable-functions-internals.d.ts" />
/**
 * Runs one orchestration instance on durable-functions' own replay engine, playing the role the
 * Durable Functions host plays in Azure, as strictly as that host.
 *
 * Models: the history the host keeps and replays after every episode; the determinism check the
 * host does and the library does not (every replay must emit the previous replay's actions as a
 * prefix); activities, timers and raised events; retry timers numbered in lockstep with the
 * library; the custom status size limit and what a failing SetCustomStatus does to an episode;
 * the TaskFailed shape of an activity that threw or timed out; Json.NET's reformatting of date
 * strings; activities running at least once (redelivery after a host stop, a timeout while the
 * handler runs on); host stalls; delivery order (one message per episode, timers first, or
 * batches); cancelled timers that still fire; Pending until the first episode; resuming an
 * instance from a saved history as the host does after a restart.
 *
 * Does not model: queues, leases and partitions (one instance, one driver, no two hosts racing);
 * sub-orchestrations, entities, continue-as-new, HTTP tasks and sub-second timer precision of the
 * storage provider; the worker restart that follows a function timeout in Azure (other in-flight
 * activities are not cut off); payload limits other than the custom status; the exact .NET
 * exception JSON in TaskFailed Details (only the fields a reader uses).
 *
 * Numbering: the library numbers tasks (and retry timers) in the order it processes history, so
 * the driver writes each episode's events in the order the library reads them and never puts a
 * retry failure or retry timer after an event that can resume the orchestrator.
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
import { VirtualClock } from "./clock.js";
import { TERMINAL_STATUSES, type InstanceStatus, type RuntimeStatus } from "./engine.js";
import { events, HistoryEventType, inFlightCuts, type HistoryEvent } from "./history.js";
import {
  activityFailure,
  activityTimeout,
  customStatusSizeError,
  orchestratorFailure,
  reformatDates,
  type DateStringMode,
  type TaskFailure,
} from "./hostRules.js";

export { VirtualClock } from "./clock.js";
export { customStatusSizeError } from "./hostRules.js";

/** A registered activity: the same handler `df.app.activity` registers. */
export type ActivityHandler = (input: unknown, context: InvocationContext) => unknown;

export type ReplaySchemaName = "V1" | "V3";
const SCHEMA_VERSION: Record<ReplaySchemaName, number> = { V1: 0, V3: 2 };

/**
 * `virtual`: timers fire as soon as nothing else is pending, in `fireAt` order, and the clock
 * jumps to their `fireAt` (tests: hours of backoff in milliseconds). Pass `clock` to share one
 * {@link VirtualClock} with activities and other drivers (else the driver makes its own from
 * `start`). `realDelayMs` gives asynchronous work outside the driver (a run command on the
 * emulator) a moment of real time before each virtual timer fires. `real`: timers wait for the
 * wall clock (the local simulation).
 */
export type DriverClock =
  { kind: "virtual"; start?: Date; clock?: VirtualClock; realDelayMs?: number } | { kind: "real" };

/** One run of an activity handler, as the fault hooks see it. */
export interface ActivityCall {
  name: string;
  input: unknown;
  /** The task's sequence number (TaskScheduled EventId). */
  id: number;
  /** The RetryOptions attempt, from 1. */
  attempt: number;
  /** How many times this task has been handed to a handler, from 1 (redeliveries count). */
  delivery: number;
}

/** What the next episode delivers, for `faults.stallBefore`. */
export interface NextDelivery {
  kind: "activity-result" | "timer" | "event";
  /** Activity or event name; `timer` for a timer. */
  name: string;
  /** The episode about to run, from 1 (the first is the start). */
  episode: number;
}

export interface DriverFaults {
  /**
   * After a run of the handler: true = the host stopped before checkpointing its result, so the
   * handler runs again and only the last run's outcome is recorded (side effects of both stay).
   */
  redeliver?: (call: ActivityCall) => boolean;
  /**
   * True = this run exceeds host.json's functionTimeout: the host records the timeout failure at
   * start + `functionTimeoutMs` while the handler keeps running (await `driver.settled()`). On a
   * virtual clock the handler first works up to `timeoutGraceMs` of real time at its start.
   */
  timeout?: (call: ActivityCall) => boolean;
  /** Ms the host is down before the next episode (virtual ms on a virtual clock). 0 = none. */
  stallBefore?: (next: NextDelivery) => number;
}

/**
 * How messages reach episodes. `one-at-a-time`: one per episode, events first, then activity
 * results, then timers. `timers-first`: the same, but a timer due now goes before everything else.
 * `batched`: everything pending and due in one episode with one timestamp, in arrival order, as
 * DurableTask.Core's dispatcher hands a session all its new messages at once
 * (Azure/durabletask `src/DurableTask.Core/TaskOrchestrationDispatcher.cs`).
 */
export type DeliveryOrdering = "one-at-a-time" | "timers-first" | "batched";

export interface DriverOptions {
  /** Orchestrator function name (as registered). */
  name: string;
  orchestrator: OrchestrationHandler;
  instanceId: string;
  input: unknown;
  activities: ReadonlyMap<string, ActivityHandler>;
  schema?: ReplaySchemaName;
  clock?: DriverClock;
  ordering?: DeliveryOrdering;
  faults?: DriverFaults;
  /** host.json functionTimeout in ms (`"00:10:00"` = 600,000); needed by `faults.timeout`. */
  functionTimeoutMs?: number;
  /**
   * Virtual clock, `faults.timeout`: real ms a timed-out run may work (until it settles) before
   * the clock moves to its deadline and the host records the timeout; it runs on after that as a
   * straggler. Default 5,000.
   */
  timeoutGraceMs?: number;
  /** Default `json.net`, what the current extension bundle does (see `hostRules.ts`). */
  dateStrings?: DateStringMode;
  /** Continue the instance from this history (another driver's `getHistory()`), as after a host restart. */
  history?: readonly HistoryEvent[];
  /** With `history`: events raised but not yet delivered (another driver's `undeliveredEvents()`). */
  undelivered?: readonly { name: string; data: unknown }[];
  /** Stop (as a crash would) before the episode after this many; `run()` then resolves non-terminal. */
  stopAfterEpisodes?: number;
  /** Ms before the host picks up a new instance (virtual ms on a virtual clock). Default 0. */
  pickupDelayMs?: number;
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
  /** Runs handed to a handler so far. */
  deliveries: number;
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
  const cuts = [...inFlightCuts(options.history), options.history.length];
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

type Outcome = { ok: true; value: unknown } | ({ ok: false } & TaskFailure);

/** A message for the next episode; `seq` is its arrival order. */
type Delivery =
  | { kind: "event"; name: string; data: unknown; seq: number }
  | { kind: "result"; activity: PendingActivity; outcome: Outcome; seq: number }
  | { kind: "timer"; timer: PendingTimer; seq: number };

/**
 * A retry failure or a retry timer makes the library number a task as it reads the event; behind
 * an event that resumes the orchestrator (which numbers its new tasks first) the driver's numbers
 * would no longer match, so such a message never follows one that is not.
 */
function isRetryMessage(d: Delivery): boolean {
  if (d.kind === "result") return !d.outcome.ok && d.activity.retry !== undefined;
  return d.kind === "timer" && d.timer.retryOf !== undefined;
}

/** Drives one instance to a terminal state. Create it, then `run()`; raise events at any time. */
export class OrchestrationDriver {
  readonly instanceId: string;
  readonly name: string;
  readonly schema: ReplaySchemaName;
  private readonly options: DriverOptions;
  /** The virtual clock, or undefined on the wall clock. */
  private readonly clock: VirtualClock | undefined;
  private readonly ordering: DeliveryOrdering;
  private readonly dates: DateStringMode;
  private readonly history: HistoryEvent[];
  /** Actions (signatures) of the last replay: the next replay must extend them. */
  private emitted: string[] = [];
  /** Sequence number of each emitted action (undefined for event waits), by position. */
  private emittedIds: (number | undefined)[] = [];
  private nextId = 0;
  private readonly activities: PendingActivity[] = [];
  private readonly timers: PendingTimer[] = [];
  private readonly raised: Extract<Delivery, { kind: "event" }>[] = [];
  /** Batched ordering: activity outcomes not yet delivered. */
  private readonly completed: Extract<Delivery, { kind: "result" }>[] = [];
  private seq = 0;
  /** Handlers still running after the host gave up on them (timeouts, a crash). */
  private readonly stragglers = new Set<Promise<unknown>>();
  private wake: (() => void) | undefined;
  private terminateReason: string | undefined;
  private stopped = false;
  private readonly stopSignal: Promise<"stopped">;
  private signalStop: () => void = () => undefined;
  private runtimeStatus: RuntimeStatus = "Pending";
  private customStatus: unknown = undefined;
  private output: unknown = undefined;
  private createdTime: Date;
  private lastUpdatedTime: Date;
  private replays = 0;
  private episodes = 0;
  private lastActions: unknown = [];
  private running: Promise<InstanceStatus> | undefined;

  constructor(options: DriverOptions) {
    this.options = options;
    this.instanceId = options.instanceId;
    this.name = options.name;
    this.schema = options.schema ?? "V3";
    this.ordering = options.ordering ?? "one-at-a-time";
    this.dates = options.dateStrings ?? "json.net";
    const clock = options.clock ?? { kind: "virtual" };
    if (clock.kind === "virtual" && clock.clock && clock.start) {
      throw new Error("clock: pass either `start` or a shared `clock` (give the VirtualClock its start)");
    }
    this.clock = clock.kind === "virtual" ? (clock.clock ?? new VirtualClock(clock.start)) : undefined;
    if (options.faults?.timeout && options.functionTimeoutMs === undefined) {
      throw new Error(
        "faults.timeout needs functionTimeoutMs: host.json's functionTimeout in ms (600000 for 00:10:00)",
      );
    }
    if (options.undelivered && !options.history) {
      throw new Error("undelivered events resume an instance: pass them together with its `history`");
    }
    this.history = (options.history ?? []).map((event) => ({ ...event }));
    for (const event of options.undelivered ?? [])
      this.raised.push({ kind: "event", ...event, seq: this.seq++ });
    this.createdTime = this.now();
    this.lastUpdatedTime = this.createdTime;
    this.stopSignal = new Promise((resolve) => (this.signalStop = () => resolve("stopped")));
  }

  /** The host's clock: the virtual clock's time, or the wall clock. */
  now(): Date {
    return this.clock ? this.clock.now() : new Date();
  }

  /** Queues an external event; it is delivered (or buffered by the library) at a later episode. */
  raiseEvent(name: string, data: unknown): void {
    if (this.isTerminal()) return;
    this.raised.push({ kind: "event", name, data, seq: this.seq++ });
    this.wake?.();
  }

  /** Ends the instance as `Terminated` at the next opportunity (running activities finish first). */
  terminate(reason: string): void {
    if (this.isTerminal()) return;
    this.terminateReason = reason;
    this.wake?.();
  }

  /**
   * Stops the host here, as a crash would: nothing more is recorded (a running activity's outcome
   * is lost; its handler runs on as a straggler) and `run()` resolves with the non-terminal status.
   * Resume with `new OrchestrationDriver({ ...options, history: getHistory(), undelivered: undeliveredEvents() })`.
   */
  crash(): void {
    this.stopped = true;
    this.signalStop();
    this.wake?.();
  }

  /** Runs the instance to a terminal status, or until it stops (idempotent: a second call returns the same run). */
  run(): Promise<InstanceStatus> {
    this.running ??= this.loop();
    return this.running;
  }

  /** Resolves once every handler the host stopped waiting for (timeouts, a crash) has finished. */
  async settled(): Promise<void> {
    while (this.stragglers.size > 0) await Promise.allSettled([...this.stragglers]);
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

  /** A copy of the history so far (for determinism checks, resuming and debugging). */
  getHistory(): HistoryEvent[] {
    return this.history.map((event) => ({ ...event }));
  }

  /** Events raised but not yet in the history (they wait in the host's queue across a restart). */
  undeliveredEvents(): { name: string; data: unknown }[] {
    return this.raised.map(({ name, data }) => ({ name, data }));
  }

  /** The history's size: events, and bytes of its JSON. */
  historyStats(): { events: number; bytes: number } {
    return { events: this.history.length, bytes: Buffer.byteLength(JSON.stringify(this.history)) };
  }

  /** Timers the orchestrator left neither fired nor cancelled (should be none when it ends). */
  openTimers(): { id: number; fireAt: string }[] {
    return this.timers
      .filter((timer) => !timer.ref?.isCanceled && !timer.retryOf)
      .map((timer) => ({ id: timer.id, fireAt: timer.fireAt.toISOString() }));
  }

  private isTerminal(): boolean {
    return TERMINAL_STATUSES.has(this.runtimeStatus);
  }

  private async loop(): Promise<InstanceStatus> {
    if (this.options.pickupDelayMs) await this.pause(this.options.pickupDelayMs);
    if (this.options.history) {
      await this.resume();
    } else {
      const start = this.now();
      this.createdTime = start;
      this.history.push(
        events.orchestratorStarted(start),
        events.executionStarted(start, this.name, this.options.input),
      );
      this.episodes++;
      await this.replay();
    }
    while (!this.isTerminal() && !this.stopped) {
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
      const limit = this.options.stopAfterEpisodes;
      if (limit !== undefined && this.episodes >= limit) {
        this.crash();
        break;
      }
      const batch = await this.collect();
      if (!batch || this.stopped) continue;
      const ms = this.options.faults?.stallBefore?.(this.describe(batch[0]!)) ?? 0;
      if (ms > 0) await this.pause(ms);
      if (this.stopped) continue;
      await this.deliver(batch);
    }
    // The host discards what arrives for an ended instance: cancelled timers never fire then.
    if (this.isTerminal()) this.timers.splice(0);
    return this.status();
  }

  private describe(d: Delivery): NextDelivery {
    const episode = this.episodes + 1;
    if (d.kind === "event") return { kind: "event", name: d.name, episode };
    if (d.kind === "result") return { kind: "activity-result", name: d.activity.name, episode };
    return { kind: "timer", name: "timer", episode };
  }

  /** The next episode's messages, per the ordering; undefined when woken or stopped (look again). */
  private async collect(): Promise<Delivery[] | undefined> {
    if (this.ordering === "batched") return this.collectBatch();
    if (this.ordering === "timers-first") {
      const due = this.dueTimers()[0];
      if (due) return [{ kind: "timer", timer: due, seq: this.seq++ }];
    }
    const event = this.raised.shift();
    if (event) return [event];
    const activity = this.activities.shift();
    if (activity) {
      const result = await this.runActivity(activity);
      return result && [result];
    }
    const timer = await this.nextTimer();
    return timer && [timer];
  }

  private async collectBatch(): Promise<Delivery[] | undefined> {
    while (this.activities.length > 0) {
      const result = await this.runActivity(this.activities.shift()!);
      if (!result) return undefined;
      this.completed.push(result);
    }
    const due = this.dueTimers().map((timer): Delivery => ({ kind: "timer", timer, seq: this.seq++ }));
    const pending = [...this.raised, ...this.completed, ...due].sort((a, b) => a.seq - b.seq);
    if (pending.length === 0) {
      const timer = await this.nextTimer();
      if (!timer) return undefined;
      // Every timer due at that instant arrives with it.
      const others = this.dueTimers().filter((t) => timer.kind !== "timer" || t !== timer.timer);
      pending.push(timer, ...others.map((t): Delivery => ({ kind: "timer", timer: t, seq: this.seq++ })));
    }
    const batch: Delivery[] = [];
    for (const d of pending) {
      if (isRetryMessage(d) && batch.some((taken) => !isRetryMessage(taken))) break;
      batch.push(d);
    }
    for (const d of batch) {
      if (d.kind === "event") this.raised.splice(this.raised.indexOf(d), 1);
      if (d.kind === "result") this.completed.splice(this.completed.indexOf(d), 1);
    }
    return batch;
  }

  /** Timers (cancelled ones too) whose time has come, soonest first. */
  private dueTimers(): PendingTimer[] {
    const now = this.now();
    return this.timers.filter((t) => t.fireAt <= now).sort((a, b) => a.fireAt.getTime() - b.fireAt.getTime());
  }

  /**
   * Waits for the soonest timer. On the virtual clock only a live timer moves the clock (a
   * cancelled one fires once the clock reaches it); with nothing to wait for, an event must come
   * within `stallTimeoutMs`.
   */
  private async nextTimer(): Promise<Delivery | undefined> {
    const now = this.now();
    const candidates = this.clock
      ? this.timers.filter((t) => t.fireAt <= now || !t.ref?.isCanceled)
      : this.timers;
    const timer = candidates.reduce<PendingTimer | undefined>(
      (soonest, candidate) => (!soonest || candidate.fireAt < soonest.fireAt ? candidate : soonest),
      undefined,
    );
    if (!this.clock) {
      const delay = timer ? timer.fireAt.getTime() - Date.now() : Infinity;
      if (delay > 0 && (await this.idle(delay)) === "woken") return undefined;
    } else if (timer) {
      // Let work outside the driver (an emulator's run command, another instance) move first.
      const realDelay = this.options.clock?.kind === "virtual" ? (this.options.clock.realDelayMs ?? 0) : 0;
      if ((await this.idle(realDelay)) === "woken") return undefined;
    } else {
      const limit = this.options.stallTimeoutMs ?? 30_000;
      if ((await this.idle(limit)) === "timeout") {
        throw new Error(
          `orchestration ${this.instanceId} is stuck: nothing pending and no event arrived within ${limit} ms ` +
            `(waiting for: ${this.waitingFor().join(", ") || "nothing"})`,
        );
      }
      return undefined;
    }
    if (!timer) return undefined;
    this.clock?.advanceTo(timer.fireAt);
    return { kind: "timer", timer, seq: this.seq++ };
  }

  private waitingFor(): string[] {
    return flattenActionsSafe(this.lastActions).flatMap((action) =>
      action.kind === "event" ? [action.name] : [],
    );
  }

  /** Waits for `ms` of real time or until an event, a terminate or a crash arrives. */
  private idle(ms: number): Promise<"woken" | "timeout"> {
    if (this.raised.length > 0 || this.terminateReason !== undefined || this.stopped) {
      return Promise.resolve("woken");
    }
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

  /** The host is away for `ms`: virtual ms on the virtual clock (for everything on it), else real ms. */
  private async pause(ms: number): Promise<void> {
    if (this.clock) {
      this.clock.advance(ms);
      return;
    }
    await this.race(new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** `work`, unless the driver stops first (then `work` is tracked as a straggler). */
  private async race<T>(work: Promise<T>): Promise<T | "stopped"> {
    const outcome = await Promise.race([work, this.stopSignal]);
    if (outcome === "stopped") this.track(work);
    return outcome;
  }

  private track(work: Promise<unknown>): void {
    const tracked = work.finally(() => this.stragglers.delete(tracked));
    this.stragglers.add(tracked);
  }

  /** Runs the activity (again while `faults.redeliver` says so); undefined when the driver stopped. */
  private async runActivity(
    activity: PendingActivity,
  ): Promise<Extract<Delivery, { kind: "result" }> | undefined> {
    const faults = this.options.faults;
    for (;;) {
      activity.deliveries++;
      const call: ActivityCall = {
        name: activity.name,
        input: activity.input,
        id: activity.id,
        attempt: activity.failures + 1,
        delivery: activity.deliveries,
      };
      const startedAt = this.now().getTime();
      const timeoutMs = this.options.functionTimeoutMs;
      const invocation = this.invoke(activity);
      let outcome: Outcome | "stopped";
      if (timeoutMs !== undefined && faults?.timeout?.(call)) {
        // The host fails the call at its deadline; the handler runs on (Azure does not stop it either).
        this.track(invocation);
        if (this.clock) {
          // A handler's work takes no virtual time: what it does before it blocks (or all of it,
          // when its reply is what came too late) happens at its start, before the host's deadline.
          // Jumping the clock first would run the orchestrator's retry alongside the first run's
          // opening steps, a race Azure never has 10 minutes apart (and, on the emulator, two PUTs
          // of one run command whose first operation never ends: a straggler that never settles).
          let timer: NodeJS.Timeout | undefined;
          const grace = new Promise(
            (resolve) => (timer = setTimeout(resolve, this.options.timeoutGraceMs ?? 5_000)),
          );
          await this.race(Promise.race([invocation, grace]));
          clearTimeout(timer);
          this.clock.advanceTo(new Date(startedAt + timeoutMs));
        } else await this.race(new Promise((resolve) => setTimeout(resolve, timeoutMs)));
        outcome = { ok: false, ...activityTimeout(activity.name, timeoutMs) };
      } else if (timeoutMs !== undefined && !this.clock) {
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<"timeout">(
          (resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)),
        );
        const first = await this.race(Promise.race([invocation, deadline]));
        clearTimeout(timer);
        if (first === "timeout") this.track(invocation);
        outcome = first === "timeout" ? { ok: false, ...activityTimeout(activity.name, timeoutMs) } : first;
      } else {
        outcome = await this.race(invocation);
      }
      if (outcome === "stopped" || this.stopped) return undefined;
      if (faults?.redeliver?.(call)) continue;
      return { kind: "result", activity, outcome, seq: this.seq++ };
    }
  }

  /** One run of the handler; never rejects. */
  private async invoke(activity: PendingActivity): Promise<Outcome> {
    const handler = this.options.activities.get(activity.name);
    if (!handler) return { ok: false, reason: `activity ${activity.name} is not registered`, details: "" };
    const log = this.options.log;
    const context = new functions.InvocationContext({
      functionName: activity.name,
      invocationId: `${this.instanceId}:${activity.id}:${activity.failures}:${activity.deliveries}`,
      logHandler: (level, ...args) => log?.(level, args.map(String).join(" ")),
    });
    try {
      const value: unknown = await handler(activity.input, context);
      // What crosses the host is JSON: round-trip so activities cannot hand the orchestrator live objects.
      if (value === undefined) return { ok: true, value: undefined };
      return { ok: true, value: reformatDates(JSON.parse(JSON.stringify(value)), this.dates, true) };
    } catch (error) {
      return { ok: false, ...activityFailure(activity.name, error) };
    }
  }

  /** Writes one episode with `batch`'s messages, in order, and replays. */
  private async deliver(batch: Delivery[]): Promise<void> {
    this.episodes++;
    const at = this.now();
    this.history.push(events.orchestratorStarted(at));
    for (const d of batch) {
      if (d.kind === "event") {
        this.history.push(events.eventRaised(at, d.name, d.data));
      } else if (d.kind === "result") {
        const { activity, outcome } = d;
        if (outcome.ok) {
          this.history.push(events.taskCompleted(at, activity.id, outcome.value));
          continue;
        }
        this.history.push(events.taskFailed(at, activity.id, outcome.reason, outcome.details));
        if (activity.retry) {
          // The library answers a failed retryable task with a timer task, also after the last attempt.
          const failed = { ...activity, failures: activity.failures + 1 };
          const timerId = this.nextId++;
          const fireAt = new Date(at.getTime() + retryDelayMs(activity.retry, failed.failures));
          this.history.push(events.timerCreated(at, timerId, fireAt));
          this.timers.push({ id: timerId, fireAt, ref: undefined, retryOf: failed });
        }
      } else {
        const { timer } = d;
        this.timers.splice(this.timers.indexOf(timer), 1);
        this.history.push(events.timerFired(at, timer.id, timer.fireAt));
        const retryOf = timer.retryOf;
        if (retryOf && retryOf.failures < (retryOf.retry?.maxNumberOfAttempts ?? 1)) {
          // Attempts left: the library opens a new task for the next attempt as it sees this event.
          const next = { ...retryOf, id: this.nextId++, deliveries: 0 };
          this.history.push(events.taskScheduled(at, next.id, next.name, next.input));
          this.activities.push(next);
        }
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
    const lastStarted = this.history.findLastIndex(
      (e) => e.EventType === HistoryEventType.OrchestratorStarted,
    );
    this.history.forEach((event, index) => (event.IsPlayed = index < lastStarted));

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

    // OutOfProcOrchestrationShim.cs ScheduleDurableTaskEvents calls SetCustomStatus with the
    // episode's final status *before* it schedules the episode's actions; when that throws,
    // TaskOrchestrationShim.cs fails the orchestration, so none of the episode's actions (nor
    // its output) is kept. The previous episode's status stays.
    const statusError = customStatusSizeError(state.customStatus);
    if (statusError !== undefined) {
      if (this.history.at(-1)?.EventType !== HistoryEventType.OrchestratorCompleted) {
        this.history.push(events.orchestratorCompleted(this.now()));
      }
      this.finish("Failed", orchestratorFailure(this.name, statusError));
      return;
    }

    const fresh = actions.slice(this.emitted.length);
    this.emitted = sigs;
    this.customStatus = reformatDates(state.customStatus, this.dates, false);
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
        // durable-js JSON-encodes a top-level string itself, so only nested strings are reparsed.
        const input = reformatDates(action.input, this.dates, true);
        scheduled.push(events.taskScheduled(at, id, action.name, input));
        this.activities.push({
          id,
          name: action.name,
          input,
          retry: action.retry,
          failures: 0,
          deliveries: 0,
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

    if (error !== undefined) this.finish("Failed", orchestratorFailure(this.name, error));
    else if (state.isDone) this.finish("Completed", reformatDates(state.output, this.dates, false));
    else this.finish("Running", undefined);
  }

  /**
   * Continues from `options.history` as the host does after a restart: a TaskScheduled without a
   * result is delivered again (the activity runs again), a TimerCreated without TimerFired stays
   * pending, events already in the history stay buffered in it. The orchestrator's actions are
   * matched to the history's TaskScheduled/TimerCreated in order; the driver's own retry events
   * (a TimerCreated right after a retryable TaskFailed, a TaskScheduled right after its TimerFired)
   * are recognised by position.
   */
  private async resume(): Promise<void> {
    const started = this.history.find((e) => e.EventType === HistoryEventType.ExecutionStarted);
    if (!started || started.Name !== this.name) {
      throw new Error(
        `cannot resume ${this.instanceId}: its history ${started ? `is of orchestrator ${started.Name}` : "has no ExecutionStarted"}, not ${this.name}`,
      );
    }
    this.createdTime = new Date(started.Timestamp);
    const { state } = await replayOnce(this.options.orchestrator, {
      instanceId: this.instanceId,
      history: this.history,
      input: this.options.input,
      schema: this.schema,
    });
    const actions = flattenActions(state.actions);
    const open = new Map<number, PendingActivity>();
    const known = new Map<number, PendingActivity>();
    const timers = new Map<number, PendingTimer>();
    let position = 0;
    const nextUserAction = (event: HistoryEvent) => {
      while (actions[position]?.kind === "event") this.emittedIds[position++] = undefined;
      const action = actions[position];
      const expected =
        event.EventType === HistoryEventType.TaskScheduled
          ? `activity ${event.Name ?? ""} ${event.Input ?? "undefined"}`
          : `timer ${event.FireAt ?? ""}`;
      const actual =
        action?.kind === "activity"
          ? `activity ${action.name} ${JSON.stringify(reformatDates(action.input, this.dates, true))}`
          : action?.kind === "timer"
            ? `timer ${action.fireAt.toISOString()}`
            : "(nothing)";
      if (expected !== actual) {
        throw new NonDeterminismError(
          `cannot resume ${this.instanceId}: the history has "${expected}" (event ${event.EventId}) ` +
            `where the orchestrator now emits "${actual}"`,
        );
      }
      this.emittedIds[position++] = event.EventId;
      return action!;
    };
    this.history.forEach((event, index) => {
      const previous = this.history[index - 1];
      switch (event.EventType) {
        case HistoryEventType.TaskScheduled: {
          const retryTimer =
            previous?.EventType === HistoryEventType.TimerFired ? timers.get(previous.TimerId!) : undefined;
          const activity: PendingActivity = retryTimer?.retryOf
            ? { ...retryTimer.retryOf, id: event.EventId, deliveries: 0 }
            : (() => {
                const action = nextUserAction(event);
                const retry = action.kind === "activity" ? action.retry : undefined;
                const input = event.Input === undefined ? undefined : (JSON.parse(event.Input) as unknown);
                return { id: event.EventId, name: event.Name!, input, retry, failures: 0, deliveries: 0 };
              })();
          open.set(activity.id, activity);
          known.set(activity.id, activity);
          break;
        }
        case HistoryEventType.TimerCreated: {
          const failed =
            previous?.EventType === HistoryEventType.TaskFailed
              ? known.get(previous.TaskScheduledId!)
              : undefined;
          const fireAt = new Date(event.FireAt!);
          if (failed?.retry) {
            timers.set(event.EventId, {
              id: event.EventId,
              fireAt,
              ref: undefined,
              retryOf: { ...failed, failures: failed.failures + 1 },
            });
          } else {
            const action = nextUserAction(event);
            timers.set(event.EventId, {
              id: event.EventId,
              fireAt,
              ref: action.kind === "timer" ? action.ref : undefined,
              retryOf: undefined,
            });
          }
          break;
        }
        case HistoryEventType.TaskCompleted:
        case HistoryEventType.TaskFailed:
          open.delete(event.TaskScheduledId!);
          break;
        case HistoryEventType.TimerFired:
          // Kept in `timers` for a retry TaskScheduled that follows; not pending any more.
          timers.get(event.TimerId!)!.fireAt = new Date(NaN);
          break;
        case HistoryEventType.OrchestratorStarted:
          this.episodes++;
          break;
      }
    });
    this.emitted = actions.slice(0, position).map(signature);
    this.emittedIds.length = position;
    const ids = this.history.flatMap((e) =>
      e.EventType === HistoryEventType.TaskScheduled || e.EventType === HistoryEventType.TimerCreated
        ? [e.EventId]
        : [],
    );
    this.nextId = ids.length > 0 ? Math.max(...ids) + 1 : 0;
    this.activities.push(...[...open.values()].sort((a, b) => a.id - b.id));
    this.timers.push(...[...timers.values()].filter((t) => !Number.isNaN(t.fireAt.getTime())));
    // A replay now schedules whatever the orchestrator emits beyond the history and sets the status.
    await this.replay();
  }

  private finish(status: RuntimeStatus, output: unknown): void {
    this.runtimeStatus = status;
    this.output = output;
    this.lastUpdatedTime = this.now();
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
