/**
 * What every phase of a build uses: the durable context's clock and timers, the published status,
 * the log, cancel requests and typed activity calls. One per orchestrator execution (replay builds
 * it again from the same history), handed to the phase modules.
 */
import type { OrchestrationContext, Task } from "durable-functions";
import type { ActivityInput, ActivityName, ActivityOutput } from "../core/activityContract.js";
import type { BuildPhase, BuildStatus } from "../core/api.js";
import { BUILD_EVENTS, type BuildInput } from "../core/buildInput.js";
import { decodeActivityFailure, nextRetryDelayMs, type RetryPolicy } from "../core/retry.js";
import { fitStatus, initialStatus, withPhase, withStep, type StepName } from "../core/status.js";
import { logLine } from "../config/index.js";
import { EventLatch } from "./eventLatch.js";
import { supersededError, type SupersededCancel } from "../core/supersede.js";
import { ActivityFailed, BuildEnded } from "./failures.js";

/** A lease that a wait renews as it passes (lease.ts). */
export interface LeaseKeeper {
  wait(ms: number, interruptible: boolean): Generator<Task, void, unknown>;
}

/**
 * What the context reads of its orchestration's input: a build's, or (the deploy orchestration) a
 * promotion's or rollback's, whose id stands where the build id does (log lines, revision suffix).
 */
export interface RunInput {
  buildId: string;
  environment: string;
  createdAt: string;
  orchestratorVersion?: number | undefined;
}

/** The shared context of one build's phases (or of a promotion's or rollback's deploy). */
export class RunContext<I extends RunInput = BuildInput> {
  readonly df: OrchestrationContext["df"];
  /** The build's status as the API shows it; `publish` makes a change visible. */
  status: BuildStatus;
  readonly cancel: EventLatch;

  constructor(
    private readonly context: OrchestrationContext,
    readonly input: I,
  ) {
    this.df = context.df;
    this.status = initialStatus(input.buildId, input.environment, "", input.createdAt);
    this.cancel = new EventLatch(this.df, BUILD_EVENTS.cancelRequested);
  }

  /** The orchestrator version this build started with (see `ORCHESTRATOR_VERSION`). */
  get version(): number {
    return this.input.orchestratorVersion ?? 1;
  }

  /** The orchestration's clock (epoch ms): the same on every replay. */
  now(): number {
    return this.df.currentUtcDateTime.getTime();
  }

  iso(): string {
    return this.df.currentUtcDateTime.toISOString();
  }

  /**
   * Log lines carry the build id (Application Insights correlates on it), no secrets, and stay one
   * line whatever a message quotes (`logLine`: pure string work, deterministic).
   */
  log(message: string): void {
    if (!this.df.isReplaying) this.context.log(logLine(`build=${this.input.buildId} ${message}`));
  }

  /**
   * Publishes the status fitted into its budget (`fitStatus`): a custom status over Azure's limit
   * fails the instance, and a failed instance runs no cleanup. The fitted status is kept, so the
   * build's output is what was published last.
   */
  publish(): void {
    this.status = fitStatus(this.status);
    this.df.setCustomStatus(this.status);
  }

  phase(phase: BuildPhase): void {
    this.status = withPhase(this.status, phase, this.iso());
    this.publish();
  }

  step(name: StepName, state: "running" | "succeeded" | "failed" | "skipped"): void {
    this.status = withStep(this.status, name, state, this.iso());
    this.publish();
  }

  cancelledError(): BuildEnded {
    const value = this.cancel.value as Partial<Record<keyof SupersededCancel, unknown>> | undefined;
    // `POST /builds` superseded this queued build (version 7 on): it ends as the queue would end it.
    if (typeof value?.supersededBy === "string") {
      this.status = { ...this.status, supersededBy: value.supersededBy };
      const branch = typeof value.branch === "string" ? value.branch : "";
      return new BuildEnded("cancelled", supersededError(value.supersededBy, branch));
    }
    const reason = value?.reason;
    return new BuildEnded("cancelled", {
      code: "Cancelled",
      message: typeof reason === "string" && reason ? `cancelled: ${reason}` : "cancelled on request",
    });
  }

  throwIfCancelled(): void {
    if (this.cancel.fired) throw this.cancelledError();
  }

  /** True when a cancel request has arrived (costs one zero-length timer when none has). */
  *cancelPending(): Generator<Task, boolean, unknown> {
    if (this.cancel.fired) return true;
    const timer = this.df.createTimer(new Date(this.now()));
    const winner: unknown = yield this.df.Task.any([this.cancel.arm(), timer]);
    if (winner === timer) return false;
    timer.cancel();
    return true;
  }

  /** A durable timer that a cancel request interrupts (unless `interruptible` is false: cleanup). */
  *sleep(ms: number, interruptible = true): Generator<Task, void, unknown> {
    const timer = this.df.createTimer(new Date(this.now() + ms));
    if (!interruptible) {
      yield timer;
      return;
    }
    this.throwIfCancelled();
    const cancel = this.cancel.arm();
    const winner: unknown = yield this.df.Task.any([timer, cancel]);
    if (winner !== timer) {
      timer.cancel();
      throw this.cancelledError();
    }
  }

  /**
   * Waits until `until` (epoch ms), or until `event` or a cancel request arrives; true when the
   * time ran out. The caller looks at the latches to see which event it was.
   */
  *waitUntil(until: number, event: EventLatch): Generator<Task, boolean, unknown> {
    const timer = this.df.createTimer(new Date(until));
    const winner: unknown = yield this.df.Task.any([event.arm(), this.cancel.arm(), timer]);
    if (winner === timer) return true;
    timer.cancel(); // else the instance would stay Running until it fires
    return false;
  }

  /**
   * Calls an activity, retrying per `policy` what the activity reported as transient (after a
   * backoff that honours the server's Retry-After). A permanent failure ends the build at once.
   * Input and output are the contract's for `name`. With `lease` (version 2 on), the waits
   * between attempts renew it: VM-start retries alone can outlast a short lease.
   */
  *call<K extends ActivityName>(
    name: K,
    input: ActivityInput<K>,
    policy: RetryPolicy,
    interruptible = true,
    lease?: LeaseKeeper,
  ): Generator<Task, ActivityOutput<K>, unknown> {
    for (let failures = 1; ; failures++) {
      try {
        // The one cast across the durable host: the activity's handler is typed by the same contract.
        return (yield this.df.callActivity(name, input)) as ActivityOutput<K>;
      } catch (error) {
        const failure = decodeActivityFailure(error);
        // Retryability is the gateways' call (AllocationFailed and throttling are retryable there).
        const delay = nextRetryDelayMs(policy, failures, failure);
        if (delay === undefined) throw new ActivityFailed(name, failure);
        this.log(`${name} failed (${failure.code}), attempt ${failures}; retrying in ${delay} ms`);
        if (lease && this.version >= 2) yield* lease.wait(delay, interruptible);
        else yield* this.sleep(delay, interruptible);
      }
    }
  }
}
