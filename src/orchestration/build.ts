/**
 * The build orchestrator: from a started build to a healthy Container App revision (issue 3,
 * steps 1-8). Deterministic: it reads time and ids only from `context.df`, does no I/O (activities
 * do), and logs only when not replaying, always with the build id and never with a secret.
 *
 * Every build ends in a terminal phase with a reason, and the cleanup (release the builder lease,
 * record the build's activity) runs on every path: success, failure, timeout and cancel.
 */
import type { OrchestrationContext, OrchestrationHandler, Task, TimerTask } from "durable-functions";
import {
  ACTIVITIES,
  type AcquireLeaseResult,
  type BuildProgress,
  type ContainerAppStatus,
  type DeployInput,
  type LeaseRef,
  type ReadAppInput,
  type RecordBuildInput,
  type ResolvedEnvironment,
  type StartBuildInput,
} from "../core/activityContract.js";
import type { ApiError, BuildPhase, BuildStatus } from "../core/api.js";
import type { BuildResult } from "../core/buildResult.js";
import {
  BUILD_EVENTS,
  buildCompletedSchema,
  buildInputSchema,
  revisionSuffix,
  type BuildInput,
} from "../core/buildInput.js";
import type { BuildCommandHandle, RevisionStatus, VmStatus } from "../core/ports.js";
import {
  decodeActivityFailure,
  nextRetryDelayMs,
  RETRY,
  type ActivityFailure,
  type RetryPolicy,
} from "../core/retry.js";
import { deployReference, isDigestReference } from "../core/imageReference.js";
import { clampLines, finished, initialStatus, withPhase, withStep, type StepName } from "../core/status.js";

/** Polling backoff while waiting on Azure: start quick (most builds of an unchanged tree are fast), settle at 30 s. */
export const POLL = { firstMs: 5_000, factor: 1.5, maxMs: 30_000 } as const;
/** Waiting in the builder queue: the build ahead may take a while, so do not hammer the table. */
export const QUEUE_POLL = { firstMs: 2_000, factor: 1.5, maxMs: 15_000 } as const;
/**
 * After the result arrived by callback the script is only cleaning up: look often at first, so the
 * builder goes back to the queue within a second or two.
 */
export const EXIT_POLL = { firstMs: 1_000, factor: 1.5, maxMs: 10_000 } as const;

const TERMINAL_EXECUTION = new Set(["Succeeded", "Failed", "TimedOut", "Canceled"]);
/**
 * The builder posts its completion callback just before it prints its result line and removes its
 * workspace (and the private folder with its callback token). Deleting the run command stops the
 * script, so after a callback we give the script this long to exit before deleting it.
 */
const COMMAND_EXIT_GRACE_MS = 60_000;

/** Ends the build early with a terminal phase; caught by the orchestrator's top level. */
class BuildEnded extends Error {
  constructor(
    readonly phase: BuildPhase,
    readonly error: ApiError | undefined,
  ) {
    super(error?.message ?? phase);
    this.name = "BuildEnded";
  }
}

type Df = OrchestrationContext["df"];

/**
 * An external event waited for at several points. The library hands a raised event to the most
 * recently created waiter for its name (or buffers it until one exists), so the latch always
 * waits with a fresh waiter and remembers it: if the event landed on that waiter after its race
 * was decided by another task, `fired` still sees it. Reusing one waiter in two `Task.any`s
 * instead would make the host schedule it twice.
 */
class EventLatch {
  private waiter: Task | undefined;
  constructor(
    private readonly df: Df,
    readonly name: string,
  ) {}

  get fired(): boolean {
    return this.waiter?.isCompleted === true;
  }

  get value(): unknown {
    return this.waiter?.result;
  }

  arm(): Task {
    if (this.fired) throw new Error(`event ${this.name} already arrived; check fired before arming`);
    this.waiter = this.df.waitForExternalEvent(this.name);
    return this.waiter;
  }

  /** Drops an event that was read and rejected, so the next `arm` waits for a new one. */
  reset(): void {
    this.waiter = undefined;
  }
}

const nextDelay = (
  previous: number | undefined,
  policy: { firstMs: number; factor: number; maxMs: number },
) => (previous === undefined ? policy.firstMs : Math.min(policy.maxMs, Math.round(previous * policy.factor)));

class BuildRun {
  private readonly df: Df;
  status: BuildStatus;
  private env: ResolvedEnvironment | undefined;
  private lease: LeaseRef | undefined;
  private leaseRenewAt = 0;
  private handle: BuildCommandHandle | undefined;
  /** The build command's result was read (callback or instance view): nothing left to stop. */
  private commandFinished = false;
  /** The instance view showed the command in a terminal state (the script has exited). */
  private commandExited = false;
  /** What stopping the build command did to the builder, for the build's reason (hybrid: deallocated). */
  stopNote: string | undefined;
  private startedAt: string | undefined;
  /** The lease went back (after the build command, or in the final cleanup). */
  private released = false;
  private vmMinutes = 0;
  private readonly cancel: EventLatch;
  private readonly callback: EventLatch;

  constructor(
    private readonly context: OrchestrationContext,
    readonly input: BuildInput,
  ) {
    this.df = context.df;
    this.status = initialStatus(input.buildId, input.environment, "", input.createdAt);
    this.cancel = new EventLatch(this.df, BUILD_EVENTS.cancelRequested);
    this.callback = new EventLatch(this.df, BUILD_EVENTS.buildCompleted);
  }

  private now(): number {
    return this.df.currentUtcDateTime.getTime();
  }

  private iso(): string {
    return this.df.currentUtcDateTime.toISOString();
  }

  /** Log lines carry the build id (Application Insights correlates on it) and no secrets. */
  log(message: string): void {
    if (!this.df.isReplaying) this.context.log(`build=${this.input.buildId} ${message}`);
  }

  private publish(): void {
    this.df.setCustomStatus(this.status);
  }

  private phase(phase: BuildPhase): void {
    this.status = withPhase(this.status, phase, this.iso());
    this.publish();
  }

  private step(name: StepName, state: "running" | "succeeded" | "failed" | "skipped"): void {
    this.status = withStep(this.status, name, state, this.iso());
    this.publish();
  }

  private cancelledError(): BuildEnded {
    const reason = (this.cancel.value as { reason?: unknown } | undefined)?.reason;
    return new BuildEnded("cancelled", {
      code: "Cancelled",
      message: typeof reason === "string" && reason ? `cancelled: ${reason}` : "cancelled on request",
    });
  }

  private throwIfCancelled(): void {
    if (this.cancel.fired) throw this.cancelledError();
  }

  /** True when a cancel request has arrived (costs one zero-length timer when none has). */
  private *cancelPending(): Generator<Task, boolean, unknown> {
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
   * Calls an activity, retrying per `policy` what the activity reported as transient (after a
   * backoff that honours the server's Retry-After). A permanent failure ends the build at once.
   */
  *call<T>(
    name: string,
    input: unknown,
    policy: RetryPolicy,
    interruptible = true,
  ): Generator<Task, T, unknown> {
    for (let failures = 1; ; failures++) {
      try {
        return (yield this.df.callActivity(name, input)) as T;
      } catch (error) {
        const failure = decodeActivityFailure(error);
        // Retryability is the gateways' call (AllocationFailed and throttling are retryable there).
        const delay = nextRetryDelayMs(policy, failures, failure);
        if (delay === undefined) throw new ActivityFailed(name, failure);
        this.log(`${name} failed (${failure.code}), attempt ${failures}; retrying in ${delay} ms`);
        yield* this.sleep(delay, interruptible);
      }
    }
  }

  /** Renews the builder lease when half of its term has passed (called between waits). */
  *keepLease(): Generator<Task, void, unknown> {
    if (!this.lease || !this.env || this.now() < this.leaseRenewAt) return;
    try {
      yield* this.call<{ expiresAt: string }>(
        ACTIVITIES.renewLease,
        { ...this.lease, leaseMs: this.env.limits.leaseMs },
        RETRY.storage,
      );
    } catch (error) {
      if (error instanceof ActivityFailed && error.failure.code === "LeaseLost") {
        this.lease = undefined;
        throw new BuildEnded("failed", {
          code: "LeaseLost",
          message: "the builder lease was lost (the build ran past its lease without renewing)",
          hint: "Start the build again.",
        });
      }
      throw error;
    }
    this.leaseRenewAt = this.now() + this.env.limits.leaseMs / 2;
  }

  *execute(): Generator<Task, void, unknown> {
    const input = this.input;
    this.publish();
    this.log(`started for environment ${input.environment}`);

    // 1. The environment must exist in configuration; its settings are fixed in history from here on.
    const env = yield* this.call<ResolvedEnvironment>(
      ACTIVITIES.resolveEnvironment,
      { environment: input.environment },
      RETRY.storage,
    );
    this.env = env;
    this.status = { ...this.status, builder: { name: env.vm.vmName } };

    // 2. One build per builder VM: take the lease, or wait in the visible queue.
    this.step("lease", "running");
    let queueDelay: number | undefined;
    for (;;) {
      const lease = yield* this.call<AcquireLeaseResult>(
        ACTIVITIES.acquireLease,
        { builderKey: env.builderKey, buildId: input.buildId, leaseMs: env.limits.leaseMs },
        RETRY.storage,
      );
      if (lease.acquired) {
        this.lease = { builderKey: env.builderKey, buildId: input.buildId, generation: lease.generation };
        this.leaseRenewAt = this.now() + env.limits.leaseMs / 2;
        break;
      }
      if (this.status.queuePosition !== lease.position) {
        this.log(`queued at position ${lease.position} behind ${lease.holder ?? "an earlier build"}`);
      }
      this.status = { ...this.status, queuePosition: lease.position };
      this.publish();
      queueDelay = nextDelay(queueDelay, QUEUE_POLL);
      yield* this.sleep(queueDelay);
    }
    // A cancel raised while that last acquire ran is delivered only to a waiter: look before using
    // the builder, so a build cancelled in the queue never starts it (cleanup gives the lease back).
    if (queueDelay !== undefined && (yield* this.cancelPending())) throw this.cancelledError();
    this.startedAt = this.iso();
    this.status = { ...this.status, queuePosition: undefined };
    this.step("lease", "succeeded");

    // 3. Start the builder. The client uploads in parallel (the upload does not need us); its
    //    SourceUploaded event is buffered until we wait for it below.
    this.phase("starting-builder");
    this.step("builder", "running");
    yield* this.ensureBuilderReady(env);
    this.step("builder", "succeeded");

    this.phase("waiting-for-source");
    this.step("source", "running");
    yield* this.waitForSource(env);
    this.step("source", "succeeded");

    // 4-6. Run the build command and wait for its result.
    this.phase("building");
    this.step("build", "running");
    const result = yield* this.runBuild(env);
    this.step("build", "succeeded");
    // The builder's part is done: retire the command and give the builder to the next build in
    // the queue now, instead of holding it through the deploy (which never touches the VM).
    yield* this.finishBuildCommand();
    yield* this.releaseBuilder();

    // 7. Deploy the image unless the caller asked not to.
    if (!input.deploy || !result.image) {
      this.step("deploy", "skipped");
      return;
    }
    this.phase("deploying");
    this.step("deploy", "running");
    const changed = yield* this.deploy(env, result.image, result.digest);
    this.step("deploy", changed ? "succeeded" : "skipped");
  }

  private *ensureBuilderReady(env: ResolvedEnvironment): Generator<Task, void, unknown> {
    let vm = yield* this.call<VmStatus>(ACTIVITIES.startVm, { vm: env.vm }, RETRY.vmStart);
    const deadline = this.now() + env.limits.vmReadyTimeoutMs;
    let delay: number | undefined;
    while (!(vm.powerState === "running" && vm.agentReady)) {
      this.status = { ...this.status, builder: { ...this.status.builder, powerState: vm.powerState } };
      this.publish();
      if (this.now() >= deadline) {
        throw new BuildEnded("failed", {
          code: "BuilderNotReady",
          message: `builder ${env.vm.vmName} is ${vm.powerState}${vm.powerState === "running" ? " but its VM agent is not ready" : ""} after ${Math.round(env.limits.vmReadyTimeoutMs / 60_000)} minutes`,
          hint: "Check the VM in the Azure portal (boot diagnostics, VM agent status), then start the build again.",
        });
      }
      delay = nextDelay(delay, POLL);
      yield* this.sleep(Math.min(delay, Math.max(1_000, deadline - this.now())));
      yield* this.keepLease();
      if (vm.powerState === "deallocated" || vm.powerState === "stopped") {
        // Someone stopped it again while we waited (a manual stop): start it once more.
        vm = yield* this.call<VmStatus>(ACTIVITIES.startVm, { vm: env.vm }, RETRY.vmStart);
      } else {
        vm = yield* this.call<VmStatus>(ACTIVITIES.getVmStatus, { vm: env.vm }, RETRY.arm);
      }
    }
    this.status = { ...this.status, builder: { ...this.status.builder, powerState: vm.powerState } };
    this.publish();
  }

  private *waitForSource(env: ResolvedEnvironment): Generator<Task, void, unknown> {
    const source = new EventLatch(this.df, BUILD_EVENTS.sourceUploaded);
    // Counted from the build's creation: the client was told to upload right away. A build that
    // queued for long still gets a short grace period for an upload that is under way.
    const deadline = Math.max(
      Date.parse(this.input.createdAt) + env.limits.sourceTimeoutMs,
      this.now() + 60_000,
    );
    while (!source.fired) {
      this.throwIfCancelled();
      if (this.now() >= deadline) {
        throw new BuildEnded("failed", {
          code: "SourceNeverUploaded",
          message: `source never uploaded: no upload was reported within ${Math.round(env.limits.sourceTimeoutMs / 60_000)} minutes`,
          hint: "Upload the archive to the URL from POST /api/builds and call POST /api/builds/{id}/source, or start a new build.",
        });
      }
      // Wait in slices no longer than half a lease term, renewing the lease in between.
      const until = Math.min(deadline, this.now() + env.limits.leaseMs / 2);
      const timer = this.df.createTimer(new Date(until));
      const winner: unknown = yield this.df.Task.any([source.arm(), this.cancel.arm(), timer]);
      if (winner !== timer) timer.cancel();
      if (winner === timer) yield* this.keepLease();
    }
    this.log("source uploaded");
  }

  private *runBuild(env: ResolvedEnvironment): Generator<Task, BuildResult, unknown> {
    const input = this.input;
    const startInput: StartBuildInput = {
      buildId: input.buildId,
      environment: env,
      sourceDigest: input.sourceDigest,
      baseKey: input.baseKey,
      rebuildBase: input.rebuildBase,
      callbackToken: input.callbackToken,
      timeoutSeconds: Math.ceil(env.limits.buildTimeoutMs / 1000),
      ...(input.commit ? { commit: input.commit } : {}),
    };
    this.handle = yield* this.call<BuildCommandHandle>(ACTIVITIES.startBuild, startInput, RETRY.arm);
    this.log(`build command ${this.handle.name} started`);
    const deadline = this.now() + env.limits.buildTimeoutMs;

    // 5. The callback usually arrives first; polling the instance view covers a lost callback.
    let result: BuildResult | undefined;
    let progress: BuildProgress | undefined;
    let delay: number | undefined;
    for (;;) {
      this.throwIfCancelled();
      if (this.callback.fired) {
        const parsed = buildCompletedSchema.safeParse(this.callback.value);
        if (parsed.success && parsed.data.buildId === input.buildId) {
          result = parsed.data;
          this.commandFinished = true;
          break;
        }
        this.log("ignored a completion callback that is not a valid result for this build");
        // Wait for the next callback (or the instance view) instead of re-reading this one.
        this.callback.reset();
      }
      if (this.now() >= deadline) {
        yield* this.stopBuildCommand();
        throw new BuildEnded("timed-out", {
          code: "BuildTimeout",
          message: `the build did not finish within ${Math.round(env.limits.buildTimeoutMs / 60_000)} minutes; it was stopped`,
          hint: "See the build log; raise FASTBUILD_BUILD_TIMEOUT_MINUTES if the build needs longer.",
        });
      }
      delay = nextDelay(delay, POLL);
      const timer: TimerTask = this.df.createTimer(new Date(Math.min(deadline, this.now() + delay)));
      const winner: unknown = yield this.df.Task.any([this.callback.arm(), this.cancel.arm(), timer]);
      if (winner !== timer) {
        timer.cancel(); // else the instance would stay Running until it fires
        if (this.cancel.fired) {
          yield* this.stopBuildCommand();
          throw this.cancelledError();
        }
        continue;
      }
      yield* this.keepLease();
      if (this.now() >= deadline) continue;
      progress = yield* this.call<BuildProgress>(
        ACTIVITIES.readBuild,
        { vm: env.vm, handle: this.handle, buildId: input.buildId },
        RETRY.arm,
      );
      if (progress.logTail.length > 0)
        this.status = { ...this.status, logTail: clampLines(progress.logTail) };
      this.publish();
      if (TERMINAL_EXECUTION.has(progress.executionState)) {
        this.commandFinished = true;
        this.commandExited = true;
        if (progress.result) {
          result = progress.result;
          break;
        }
        throw new BuildEnded(progress.executionState === "TimedOut" ? "timed-out" : "failed", {
          code: progress.executionState === "TimedOut" ? "BuildTimeout" : "NoBuildResult",
          message: `the build command ended (${progress.executionState}${progress.exitCode === undefined ? "" : `, exit code ${progress.exitCode}`}) without a result${progress.message ? `: ${progress.message}` : ""}`,
          hint: "See the last lines of the build log below, and the full log at the logs URL.",
        });
      }
    }

    // 6. The script's one-line result decides.
    this.status = {
      ...this.status,
      ...(result.logTail && result.logTail.length > 0 ? { logTail: clampLines(result.logTail) } : {}),
      ...(result.image
        ? { image: { reference: result.image, ...(result.digest ? { digest: result.digest } : {}) } }
        : {}),
      cache: {
        base: result.baseCacheHit ? "hit" : "miss",
        skipped: result.skipped,
        ...(result.baseKey ? { baseKey: result.baseKey } : {}),
      },
      timings: { ...this.status.timings, stepsMs: result.timings },
    };
    if (result.status !== "succeeded" || result.exitCode !== 0) {
      throw new BuildEnded("failed", {
        code: "BuildFailed",
        message: `the build failed${result.failedStep ? ` in step ${result.failedStep}` : ""} (${result.exitReason}, exit code ${result.exitCode})${result.message ? `: ${result.message}` : ""}`,
        hint: "See the last lines of the build log below, and the full log at the logs URL.",
      });
    }
    if (!result.image && this.input.deploy) {
      throw new BuildEnded("failed", {
        code: "NoImage",
        message: "the build succeeded but reported no image",
      });
    }
    return result;
  }

  /**
   * Stops a build command whose result was not read (cancel, timeout, failure), before the lease
   * is released: deleting the managed run command stops its script. The action Run Command
   * (hybrid profile) cannot be cancelled, and a managed one we could not delete may still run, so
   * releasing the lease then would let the next build overlap the script: deallocating the VM
   * stops it (the next build starts the VM again). `stopNote` says what was done, for the reason.
   */
  private *stopBuildCommand(): Generator<Task, void, unknown> {
    const handle = this.handle;
    const env = this.env;
    this.handle = undefined;
    if (!handle || !env) return;
    if (handle.kind === "managed") {
      try {
        yield* this.call<void>(ACTIVITIES.cancelBuild, { vm: env.vm, handle }, RETRY.arm, false);
        this.log(`build command ${handle.name} deleted`);
        return;
      } catch (error) {
        this.log(`could not delete build command ${handle.name}: ${describe(error)}`);
      }
    }
    const why =
      handle.kind === "action"
        ? "the hybrid profile's Run Command cannot be cancelled"
        : "its run command could not be deleted";
    if (!this.lease) {
      // The lease was lost: the VM may be another build's by now, never deallocate it under that build.
      this.stopNote = `the build script could not be stopped (${why}) and the builder lease was lost, so builder ${env.vm.vmName} was left running`;
    } else {
      try {
        const vm = yield* this.call<VmStatus>(ACTIVITIES.stopBuilder, { vm: env.vm }, RETRY.arm, false);
        this.status = { ...this.status, builder: { ...this.status.builder, powerState: vm.powerState } };
        this.stopNote = `builder ${env.vm.vmName} was deallocated to stop the build script (${why}); the next build starts it again`;
      } catch (error) {
        this.stopNote = `the build script may still be running on builder ${env.vm.vmName}: ${why} and deallocating the VM failed (${describe(error)})`;
      }
    }
    this.log(this.stopNote);
  }

  /**
   * Deletes a managed run command whose result was read. Azure keeps run commands as resources
   * on the VM (with their parameters and blob URIs) until deleted, and they accumulate; best
   * effort, it never fails the build. The action Run Command leaves no resource behind.
   */
  private *retireBuildCommand(): Generator<Task, void, unknown> {
    const handle = this.handle;
    const env = this.env;
    this.handle = undefined;
    if (!handle || !env || handle.kind !== "managed") return;
    if (!this.commandExited) yield* this.awaitCommandExit(env, handle);
    try {
      yield* this.call<void>(ACTIVITIES.cancelBuild, { vm: env.vm, handle }, RETRY.arm, false);
      this.log(`build command ${handle.name} deleted`);
    } catch (error) {
      this.log(`could not delete build command ${handle.name} (it stays on the VM): ${describe(error)}`);
    }
  }

  /** After a callback: waits (at most COMMAND_EXIT_GRACE_MS) until the instance view shows the script ended. */
  private *awaitCommandExit(
    env: ResolvedEnvironment,
    handle: BuildCommandHandle,
  ): Generator<Task, void, unknown> {
    const until = this.now() + COMMAND_EXIT_GRACE_MS;
    let delay: number | undefined;
    for (;;) {
      try {
        const progress = yield* this.call<BuildProgress>(
          ACTIVITIES.readBuild,
          { vm: env.vm, handle, buildId: this.input.buildId },
          RETRY.arm,
          false,
        );
        if (TERMINAL_EXECUTION.has(progress.executionState)) return;
      } catch (error) {
        this.log(`could not read build command ${handle.name}: ${describe(error)}`);
        return;
      }
      if (this.now() >= until) return;
      delay = nextDelay(delay, EXIT_POLL);
      try {
        // A cancel request ends the grace at once: deleting the command stops the script.
        yield* this.sleep(Math.min(delay, Math.max(1_000, until - this.now())));
      } catch (error) {
        if (error instanceof BuildEnded) return;
        throw error;
      }
    }
  }

  /** The build command's result was read (callback or instance view). */
  get resultRead(): boolean {
    return this.commandFinished;
  }

  /** Before the lease goes back: stop a build command still running, or retire a finished one. */
  *finishBuildCommand(): Generator<Task, void, unknown> {
    if (this.commandFinished) yield* this.retireBuildCommand();
    else yield* this.stopBuildCommand();
  }

  /**
   * Points the app's container at the built image and waits for the revision that creates; or,
   * when the app already runs exactly that image on a healthy revision, leaves it alone (a new
   * revision would run the same bytes). Returns whether the app was changed.
   */
  private *deploy(
    env: ResolvedEnvironment,
    image: string,
    digest: string | undefined,
  ): Generator<Task, boolean, unknown> {
    const reference = deployReference(image, digest);
    if (!isDigestReference(reference)) {
      // The builder reported no digest (an older build.sh, or a registry that did not say): deploy
      // the tag. A tag can move, so such a deploy is never skipped as "unchanged".
      this.log(`no image digest reported; deploying the tag ${reference}`);
    } else if (yield* this.keepsRunning(env, reference)) {
      return false;
    }
    const deployInput: DeployInput = {
      app: env.app,
      containerName: env.containerName,
      image: reference,
      revisionSuffix: revisionSuffix(this.input.buildId),
    };
    const { revisionName } = yield* this.call<{ revisionName: string }>(
      ACTIVITIES.deployImage,
      deployInput,
      RETRY.arm,
    );
    this.status = {
      ...this.status,
      revision: { name: revisionName },
      deployment: {
        reference,
        unchanged: false,
        message: `updating container app ${env.app.appName} to ${reference}: revision ${revisionName}`,
      },
    };
    this.publish();
    this.log(`deploying ${reference} as revision ${revisionName}`);
    const deadline = this.now() + env.limits.deployTimeoutMs;
    let delay: number | undefined;
    for (;;) {
      // Report on the revision this build created, never on whichever one happens to be active.
      const revision = yield* this.call<RevisionStatus>(
        ACTIVITIES.getRevision,
        { app: env.app, revisionName },
        RETRY.arm,
      );
      this.status = {
        ...this.status,
        revision: {
          name: revisionName,
          healthState: revision.healthState,
          provisioningState: revision.provisioningState,
        },
      };
      if (revision.provisioningState === "Provisioned" && revision.healthState === "Healthy") {
        this.status = {
          ...this.status,
          deployment: {
            reference,
            unchanged: false,
            message: `container app ${env.app.appName} now runs ${reference} in revision ${revisionName}`,
          },
        };
        this.publish();
        return true;
      }
      this.publish();
      if (revision.provisioningState === "Failed" || revision.healthState === "Unhealthy") {
        throw new BuildEnded("failed", {
          code: "DeployFailed",
          message: `revision ${revisionName} is ${revision.provisioningState}/${revision.healthState}; the previous revision keeps serving`,
          hint: "Check the revision's logs in the Container App (startup probe, port, crash on start), fix, and build again.",
        });
      }
      if (this.now() >= deadline) {
        // The build itself succeeded; its deploy did not: a failed build (not a build timeout).
        throw new BuildEnded("failed", {
          code: "DeployTimeout",
          message: `revision ${revisionName} was not healthy within ${Math.round(env.limits.deployTimeoutMs / 60_000)} minutes; the previous revision keeps serving`,
          hint: "Check the revision in the Container App; raise FASTBUILD_DEPLOY_TIMEOUT_MINUTES if it needs longer to start.",
        });
      }
      delay = nextDelay(delay, POLL);
      yield* this.sleep(Math.min(delay, Math.max(1_000, deadline - this.now())));
      yield* this.keepLease();
    }
  }

  /**
   * True when the app's container already runs `reference` (a digest: the same bytes) on its latest
   * revision, and that revision is ready and healthy: then the deploy has nothing to change, and
   * the status reports that revision. A revision with this image that is not the ready one (still
   * provisioning, or failed) or not healthy does not count: the deploy goes ahead with a new one.
   */
  private *keepsRunning(env: ResolvedEnvironment, reference: string): Generator<Task, boolean, unknown> {
    const readInput: ReadAppInput = { app: env.app };
    const app = yield* this.call<ContainerAppStatus>(ACTIVITIES.readApp, readInput, RETRY.arm);
    const ready = app.latestReadyRevisionName;
    if (app.images[env.containerName] !== reference || !ready || ready !== app.latestRevisionName) {
      return false;
    }
    const revision = yield* this.call<RevisionStatus>(
      ACTIVITIES.getRevision,
      { app: env.app, revisionName: ready },
      RETRY.arm,
    );
    if (revision.provisioningState !== "Provisioned" || revision.healthState !== "Healthy") {
      this.log(
        `container app ${env.app.appName} has ${reference} in revision ${ready}, which is ${revision.provisioningState}/${revision.healthState}: deploying a new revision`,
      );
      return false;
    }
    const message = `container app ${env.app.appName} already runs ${reference}: nothing to deploy, revision ${ready} keeps serving`;
    this.status = {
      ...this.status,
      revision: {
        name: ready,
        healthState: revision.healthState,
        provisioningState: revision.provisioningState,
      },
      deployment: { reference, unchanged: true, message },
    };
    this.publish();
    this.log(message);
    return true;
  }

  /** Gives the builder back (or leaves its queue); once per build. */
  private *releaseBuilder(): Generator<Task, void, unknown> {
    if (!this.env || this.released) return;
    this.released = true;
    try {
      const released = yield* this.call<{ vmMinutes: number }>(
        ACTIVITIES.releaseLease,
        { builderKey: this.env.builderKey, buildId: this.input.buildId, generation: this.lease?.generation },
        RETRY.storage,
        false,
      );
      this.vmMinutes = released.vmMinutes;
    } catch (error) {
      // The lease expires on its own; say so rather than fail the cleanup.
      this.log(`could not release the builder lease (it expires by itself): ${describe(error)}`);
    }
    this.lease = undefined;
  }

  /** 8. Always: give the builder back (or leave its queue) and record what the build used. */
  *cleanup(outcome: BuildPhase, reason: string): Generator<Task, void, unknown> {
    if (!this.env) return;
    yield* this.releaseBuilder();
    const vmMinutes = this.vmMinutes;
    const record: RecordBuildInput = {
      builderKey: this.env.builderKey,
      buildId: this.input.buildId,
      environment: this.input.environment,
      startedAt: this.startedAt ?? this.input.createdAt,
      endedAt: this.iso(),
      outcome,
      reason,
      vmMinutes,
    };
    try {
      yield* this.call<void>(ACTIVITIES.recordBuild, record, RETRY.storage, false);
    } catch (error) {
      this.log(`could not record the build's activity: ${describe(error)}`);
    }
  }

  /** Marks the build terminal. */
  end(phase: BuildPhase, error: ApiError | undefined): void {
    this.status = finished(this.status, phase, this.iso(), error);
    this.publish();
    this.log(`ended ${phase}${error ? ` (${error.code}): ${error.message}` : ""}`);
  }
}

/** A permanent (or retried-out) activity failure, as the orchestrator reports it. */
class ActivityFailed extends Error {
  constructor(
    readonly activity: string,
    readonly failure: ActivityFailure,
  ) {
    super(failure.message);
    this.name = "ActivityFailed";
  }
}

function describe(error: unknown): string {
  if (error instanceof ActivityFailed) return `${error.failure.code}: ${error.failure.message}`;
  return error instanceof Error ? (error.message.split("\n")[0] ?? error.name) : String(error);
}

/**
 * The orchestrator registered as `fb_BuildOrchestrator`. Returns the final `BuildStatus`
 * (also its last custom status).
 */
export const buildOrchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
  const parsed = buildInputSchema.safeParse(context.df.getInput());
  if (!parsed.success) {
    // Nothing ran and nothing was taken: report the bad input without echoing it (it holds a token).
    const raw = context.df.getInput<{ buildId?: unknown; environment?: unknown } | undefined>();
    const status = finished(
      initialStatus(
        typeof raw?.buildId === "string" ? raw.buildId.slice(0, 64) : context.df.instanceId,
        typeof raw?.environment === "string" ? raw.environment.slice(0, 80) : "",
        "",
        context.df.currentUtcDateTime.toISOString(),
      ),
      "failed",
      context.df.currentUtcDateTime.toISOString(),
      {
        code: "InvalidInput",
        message: `invalid build input: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
      },
    );
    context.df.setCustomStatus(status);
    return status;
  }

  const run = new BuildRun(context, parsed.data);
  let phase: BuildPhase = "succeeded";
  let error: ApiError | undefined;
  try {
    yield* run.execute();
  } catch (thrown) {
    if (thrown instanceof BuildEnded) {
      phase = thrown.phase;
      error = thrown.error;
    } else if (thrown instanceof ActivityFailed) {
      phase = "failed";
      error = {
        code: thrown.failure.code,
        message: thrown.failure.message,
        ...(thrown.failure.hint ? { hint: thrown.failure.hint } : {}),
      };
    } else {
      // A bug of ours: keep the details in the log, give the user a generic reason.
      run.log(`unexpected error: ${describe(thrown)}`);
      phase = "failed";
      error = { code: "InternalError", message: "the build orchestration hit an unexpected error" };
    }
  }
  // When the build's result was read, the outcome is known: the developer sees it now, while the
  // finished command is retired and the lease goes back (a grace of up to a minute for the script
  // to exit). When it was not, stopping the command can change the reason, so the end waits.
  const outcomeKnown = run.resultRead;
  if (outcomeKnown) run.end(phase, error);
  // Invariant: whatever happened above, the build command is stopped or retired, the lease goes
  // back and the build ends in a terminal phase with a reason. None of these steps may throw.
  try {
    yield* run.finishBuildCommand();
  } catch (thrown) {
    run.log(`unexpected error while finishing the build command: ${describe(thrown)}`);
  }
  if (error && run.stopNote) error = { ...error, message: `${error.message}; ${run.stopNote}` };
  yield* run.cleanup(phase, error ? `${error.code}: ${error.message}` : "ok");
  if (!outcomeKnown) run.end(phase, error);
  return run.status;
};
