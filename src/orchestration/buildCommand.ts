/**
 * Steps 4-6: the build command on the builder. Started as a run command, its result arrives by
 * callback (usually) or is read from the instance view (a lost callback); afterwards it is
 * retired, or stopped when its result was never read (cancel, timeout, failure).
 */
import type { Task } from "durable-functions";
import {
  ACTIVITIES,
  type BuildCommandHandle,
  type BuildProgress,
  type ResolvedEnvironment,
  type ReadBuildInput,
  type StartBuildInput,
  TERMINAL_EXECUTION_STATES,
} from "../core/activityContract.js";
import type { BuildResult } from "../core/buildResult.js";
import { BUILD_EVENTS, buildCompletedSchema, runCommandName } from "../core/buildInput.js";
import { backoffDelayMs } from "../core/backoff.js";
import { RETRY, type ActivityFailure } from "../core/retry.js";
import type { RunContext } from "./context.js";
import { EventLatch } from "./eventLatch.js";
import { ActivityFailed, BuildEnded, describe, type CommandFate } from "./failures.js";
import type { BuilderLease } from "./lease.js";
import { POLLS, pollUntil } from "./poll.js";

/**
 * The builder posts its completion callback just before it prints its result line and removes its
 * workspace (and the private folder with its callback token). Deleting the run command stops the
 * script, so after a callback we give the script this long to exit before deleting it.
 */
const COMMAND_EXIT_GRACE_MS = 60_000;

/** The build command of one build, from start to stopped or retired. */
export class BuildCommand {
  private handle: BuildCommandHandle | undefined;
  /** The start was called: its command may run even when no handle came back. */
  private startAttempted = false;
  /** The build command's result was read (callback or instance view): nothing left to stop. */
  private finished = false;
  /** The instance view showed the command in a terminal state (the script has exited). */
  private exited = false;
  /** What stopping the build command did to the builder, for the build's reason (hybrid: deallocated). */
  stopNote: string | undefined;
  /** What became of the command once it was stopped or retired. */
  private outcome: CommandFate | undefined;
  private readonly callback: EventLatch;
  /** Names the log tail the status shows: a read sends the tail only when it changed. */
  private logTailDigest: string | undefined;

  constructor(
    private readonly run: RunContext,
    private readonly env: ResolvedEnvironment,
    private readonly lease: BuilderLease,
  ) {
    this.callback = new EventLatch(run.df, BUILD_EVENTS.buildCompleted);
  }

  /** The build command's result was read (callback or instance view). */
  get resultRead(): boolean {
    return this.finished;
  }

  /** What became of the command, for the build's reason: retiring while its result is read and it is not retired yet. */
  get fate(): CommandFate {
    return this.outcome ?? (this.finished ? { kind: "retiring" } : { kind: "not-started" });
  }

  /** Starts the build command and waits for its result; returns it when the build succeeded. */
  *build(): Generator<Task, BuildResult, unknown> {
    const { run, env } = this;
    const input = run.input;
    const startInput: StartBuildInput = {
      buildId: input.buildId,
      environment: env,
      sourceDigest: input.sourceDigest,
      baseKey: input.baseKey,
      rebuildBase: input.rebuildBase,
      callbackToken: input.callbackToken,
      timeoutSeconds: Math.ceil(env.limits.buildTimeoutMs / 1000),
      ...(input.commit ? { commit: input.commit } : {}),
      // The registry cache's branch tag; absent for builds outside git (and older builds).
      ...(input.branch ? { branch: input.branch } : {}),
      ...(input.sourceFormat === "manifest" ? { sourceFormat: "manifest" as const } : {}),
      // Only in builds that have one: an older build's start input stays exactly as it was.
      ...(input.project ? { project: input.project } : {}),
      // The start confirms the lease (renewing this generation) right before the command starts.
      ...(this.lease.renewal ? { lease: this.lease.renewal } : {}),
    };
    // From here the command may exist whatever the start answers (its PUT accepted, the reply
    // lost): a stop must look for it by name.
    this.startAttempted = true;
    let started: BuildCommandHandle;
    try {
      started = yield* run.call(ACTIVITIES.startBuild, startInput, RETRY.arm, true, this.lease);
    } catch (error) {
      throw this.lease.lostOr(error);
    }
    const { staleCommands, ...handle } = started;
    this.handle = handle;
    if (staleCommands?.removed.length)
      run.log(`removed stale build commands ${staleCommands.removed.join(", ")}`);
    if (staleCommands?.failed.length) {
      run.log(`could not remove stale build commands (best effort): ${staleCommands.failed.join("; ")}`);
    }
    run.log(`build command ${handle.name} started`);
    const result = yield* this.awaitResult(handle, run.now() + env.limits.buildTimeoutMs);
    return this.acceptResult(result);
  }

  /**
   * 5. The callback usually arrives first; polling the instance view covers a lost callback. Not
   * `pollUntil`: the wait between two reads also ends when the callback (or a cancel) arrives.
   */
  private *awaitResult(handle: BuildCommandHandle, deadline: number): Generator<Task, BuildResult, unknown> {
    const { run, env } = this;
    for (let attempt = 0; ; attempt++) {
      run.throwIfCancelled();
      if (this.callback.fired) {
        const parsed = buildCompletedSchema.safeParse(this.callback.value);
        if (parsed.success && parsed.data.buildId === run.input.buildId) {
          this.finished = true;
          return parsed.data;
        }
        run.log("ignored a completion callback that is not a valid result for this build");
        // Wait for the next callback (or the instance view) instead of re-reading this one.
        this.callback.reset();
      }
      if (run.now() >= deadline) {
        yield* this.stop();
        throw new BuildEnded("timed-out", {
          code: "BuildTimeout",
          message: `the build did not finish within ${Math.round(env.limits.buildTimeoutMs / 60_000)} minutes; it was stopped`,
          hint: "See the build log; raise FASTBUILD_BUILD_TIMEOUT_MINUTES if the build needs longer.",
        });
      }
      const until = Math.min(deadline, run.now() + backoffDelayMs(POLLS.command, attempt));
      if (!(yield* run.waitUntil(until, this.callback))) {
        if (run.cancel.fired) {
          yield* this.stop();
          throw run.cancelledError();
        }
        continue;
      }
      yield* this.lease.keep();
      if (run.now() >= deadline) continue;
      const progress = yield* this.read(handle, true);
      if (progress.logTail && progress.logTail.length > 0)
        run.status = { ...run.status, logTail: progress.logTail };
      run.publish();
      if (TERMINAL_EXECUTION_STATES.has(progress.executionState)) {
        this.finished = true;
        this.exited = true;
        if (progress.result) return progress.result;
        throw endedWithoutResult(progress);
      }
    }
  }

  /**
   * Reads the build command once, naming the log tail the status has, so that an unchanged tail
   * is not sent (and kept in history) again. A result written before the digest existed always
   * has its tail.
   */
  private *read(handle: BuildCommandHandle, interruptible: boolean): Generator<Task, BuildProgress, unknown> {
    const { run, env } = this;
    const input: ReadBuildInput = {
      vm: env.vm,
      handle,
      buildId: run.input.buildId,
      ...(this.logTailDigest === undefined ? {} : { logTailDigest: this.logTailDigest }),
    };
    const progress = yield* run.call(ACTIVITIES.readBuild, input, RETRY.arm, interruptible);
    if (progress.logTailDigest !== undefined) this.logTailDigest = progress.logTailDigest;
    return progress;
  }

  /** 6. The script's one-line result decides. */
  private acceptResult(result: BuildResult): BuildResult {
    const { run } = this;
    run.status = {
      ...run.status,
      ...(result.logTail && result.logTail.length > 0 ? { logTail: result.logTail } : {}),
      ...(result.image
        ? { image: { reference: result.image, ...(result.digest ? { digest: result.digest } : {}) } }
        : {}),
      cache: {
        base: result.baseCacheHit ? "hit" : "miss",
        skipped: result.skipped,
        ...(result.baseKey ? { baseKey: result.baseKey } : {}),
      },
      timings: { ...run.status.timings, stepsMs: result.timings },
    };
    if (result.status !== "succeeded" || result.exitCode !== 0) {
      throw new BuildEnded("failed", {
        code: "BuildFailed",
        message: `the build failed${result.failedStep ? ` in step ${result.failedStep}` : ""} (${result.exitReason}, exit code ${result.exitCode})${result.message ? `: ${result.message}` : ""}`,
        hint: "See the last lines of the build log below, and the full log at the logs URL.",
      });
    }
    if (!result.image && run.input.deploy) {
      throw new BuildEnded("failed", {
        code: "NoImage",
        message: "the build succeeded but reported no image",
      });
    }
    return result;
  }

  /** Before the lease goes back: stop a build command still running, or retire a finished one. */
  *finish(): Generator<Task, void, unknown> {
    if (this.finished) yield* this.retire();
    else yield* this.stop();
  }

  /**
   * Stops a build command whose result was not read (cancel, timeout, failure), before the lease
   * is released: deleting the managed run command stops its script. The action Run Command
   * (hybrid profile) cannot be cancelled, and a managed one we could not delete may still run, so
   * releasing the lease then would let the next build overlap the script: deallocating the VM
   * stops it (the next build starts the VM again). `stopNote` says what was done, for the reason.
   */
  private *stop(): Generator<Task, void, unknown> {
    const { run, env } = this;
    const handle = this.handle ?? this.commandByName();
    const attempted = this.startAttempted;
    this.handle = undefined;
    this.startAttempted = false;
    if (!handle) {
      // Stopped already (a timeout stops it, then the cleanup looks again), never started, or a
      // version 1 start that never answered.
      this.outcome ??= attempted ? { kind: "unknown" } : { kind: "not-started" };
      return;
    }
    const failure = handle.kind === "managed" ? yield* this.deleteCommand(handle, "") : undefined;
    if (handle.kind === "managed" && failure === undefined) {
      this.outcome = { kind: "deleted", name: handle.name };
      return;
    }
    const why =
      handle.kind === "action" || failure?.code === "RunCommandNotCancellable"
        ? "the hybrid profile's Run Command cannot be cancelled"
        : "its run command could not be deleted";
    if (!this.lease.held) {
      // The lease was lost: the VM may be another build's by now, never deallocate it under that build.
      this.stopNote = `the build script could not be stopped (${why}) and the builder lease was lost, so builder ${env.vm.vmName} was left running`;
    } else {
      try {
        const lease = this.lease.renewal;
        const vm = yield* run.call(
          ACTIVITIES.stopBuilder,
          { vm: env.vm, ...(lease ? { lease } : {}) },
          RETRY.arm,
          false,
        );
        run.status = { ...run.status, builder: { ...run.status.builder, powerState: vm.powerState } };
        this.stopNote = `builder ${env.vm.vmName} was deallocated to stop the build script (${why}); the next build starts it again`;
      } catch (error) {
        this.stopNote = `the build script may still be running on builder ${env.vm.vmName}: ${why} and deallocating the VM failed (${describe(error)})`;
      }
    }
    this.outcome = { kind: "not-stopped", note: this.stopNote };
    run.log(this.stopNote);
  }

  /**
   * A start that never answered (it failed, timed out, or was cancelled in its retries) may
   * still have started the script: its command is known by the build's name. Version 1 builds
   * did not stop it, and keep that path.
   */
  private commandByName(): BuildCommandHandle | undefined {
    if (!this.startAttempted || this.run.version < 2) return undefined;
    return { kind: "managed", name: runCommandName(this.run.input.buildId) };
  }

  /**
   * Deletes a managed run command whose result was read. Azure keeps run commands as resources
   * on the VM (with their parameters and blob URIs) until deleted, and they accumulate; best
   * effort, it never fails the build. The action Run Command leaves no resource behind.
   */
  private *retire(): Generator<Task, void, unknown> {
    const { handle } = this;
    this.handle = undefined;
    if (!handle || handle.kind !== "managed") {
      this.outcome ??= { kind: "retired" };
      return;
    }
    if (!this.exited) yield* this.awaitExit(handle);
    const failure = yield* this.deleteCommand(handle, " (it stays on the VM)");
    this.outcome = failure ? { kind: "kept" } : { kind: "retired" };
  }

  /**
   * Deletes the managed run command (which stops its script; one already gone counts as
   * deleted); the failure when that failed.
   */
  private *deleteCommand(
    handle: BuildCommandHandle,
    onFailure: string,
  ): Generator<Task, ActivityFailure | undefined, unknown> {
    const { run, env } = this;
    // Version 6 on: a command whose script has exited only needs Azure to accept its delete.
    const untilGone = !(this.exited && run.version >= 6);
    try {
      yield* run.call(
        ACTIVITIES.cancelBuild,
        { vm: env.vm, handle, ...(untilGone ? {} : { untilGone: false }) },
        RETRY.arm,
        false,
      );
      run.log(`build command ${handle.name} deleted`);
      return undefined;
    } catch (error) {
      run.log(`could not delete build command ${handle.name}${onFailure}: ${describe(error)}`);
      return error instanceof ActivityFailed
        ? error.failure
        : { code: "Unexpected", message: describe(error), retryable: false };
    }
  }

  /** After a callback: waits (at most COMMAND_EXIT_GRACE_MS) until the instance view shows the script ended. */
  private *awaitExit(handle: BuildCommandHandle): Generator<Task, void, unknown> {
    const { run } = this;
    try {
      yield* pollUntil(run, {
        policy: POLLS.exit,
        // The lease is not renewed here: the grace is short and ends with the lease going back.
        probe: () => this.exitedProbe(handle),
        deadline: { at: run.now() + COMMAND_EXIT_GRACE_MS, expired: () => false },
      });
    } catch (error) {
      // A cancel request ends the grace at once: deleting the command stops the script.
      if (error instanceof BuildEnded) return;
      throw error;
    }
  }

  /** True once the script has exited, or when the command cannot be read (nothing to wait for). */
  private *exitedProbe(handle: BuildCommandHandle): Generator<Task, true | undefined, unknown> {
    try {
      const progress = yield* this.read(handle, false);
      if (!TERMINAL_EXECUTION_STATES.has(progress.executionState)) return undefined;
      this.exited = true;
      return true;
    } catch (error) {
      this.run.log(`could not read build command ${handle.name}: ${describe(error)}`);
      return true;
    }
  }
}

/** The command ended (instance view) but printed no result line. */
function endedWithoutResult(progress: BuildProgress): BuildEnded {
  const timedOut = progress.executionState === "TimedOut";
  return new BuildEnded(timedOut ? "timed-out" : "failed", {
    code: timedOut ? "BuildTimeout" : "NoBuildResult",
    message: `the build command ended (${progress.executionState}${progress.exitCode === undefined ? "" : `, exit code ${progress.exitCode}`}) without a result${progress.message ? `: ${progress.message}` : ""}`,
    hint: "See the last lines of the build log below, and the full log at the logs URL.",
  });
}
