/**
 * The build orchestrator: from a started build to a healthy Container App revision (issue 3,
 * steps 1-8). Deterministic: it reads time and ids only from `context.df`, does no I/O (activities
 * do), and logs only when not replaying, always with the build id and never with a secret.
 *
 * Every build ends in a terminal phase with a reason, and the cleanup (release the builder lease,
 * record the build's activity) runs on every path: success, failure, timeout and cancel.
 *
 * This file is the run's skeleton; each phase lives next door: lease.ts (step 2), builder.ts and
 * source.ts (3), buildCommand.ts (4-6), deploy.ts (7), over the shared context.ts and poll.ts.
 */
import type { OrchestrationContext, OrchestrationHandler, Task } from "durable-functions";
import { ACTIVITIES, type RecordBuildInput, type ResolvedEnvironment } from "../core/activityContract.js";
import type { ApiError, BuildPhase, BuildStatus } from "../core/api.js";
import { buildInputSchema, type BuildInput } from "../core/buildInput.js";
import { quoted } from "../core/logText.js";
import { historyRecord } from "../core/history.js";
import { RETRY } from "../core/retry.js";
import { finished, fitStatus, initialStatus } from "../core/status.js";
import { ensureBuilderReady } from "./builder.js";
import { BuildCommand } from "./buildCommand.js";
import { RunContext } from "./context.js";
import { deploy } from "./deploy.js";
import { ActivityFailed, BuildEnded, describe, terminalError, type EndCause } from "./failures.js";
import { BuilderLease } from "./lease.js";
import { lookUpImages, skipBuilderSteps, sourceTagOf } from "./registryFirst.js";
import { waitForSource } from "./source.js";

class BuildRun {
  readonly run: RunContext;
  private env: ResolvedEnvironment | undefined;
  /** Set once the environment is known; the cleanup gives it back. */
  private lease: BuilderLease | undefined;
  private command: BuildCommand | undefined;
  private startedAt: string | undefined;

  constructor(context: OrchestrationContext, input: BuildInput) {
    this.run = new RunContext(context, input);
  }

  /** The build command's result was read (callback or instance view). */
  get resultRead(): boolean {
    return this.command?.resultRead === true;
  }

  /** The lease went back when the build command was done, before the deploy. */
  private releasedBeforeDeploy = false;

  /** The terminal error for `cause`, saying what became of the builder so far (failures.ts decides). */
  reason(cause: EndCause): ApiError {
    return terminalError(cause, {
      builder: this.env?.vm.vmName,
      lease: this.lease?.fate ?? "never-held",
      command: this.command?.fate ?? { kind: "not-started" },
      beforeDeploy: this.releasedBeforeDeploy,
      ...(this.env ? { leaseMinutes: Math.round(this.env.limits.leaseMs / 60_000) } : {}),
    });
  }

  *execute(): Generator<Task, void, unknown> {
    const { run } = this;
    const input = run.input;
    run.publish();
    run.log(`started for environment ${quoted(input.environment)}`);

    // 1. The environment must exist in configuration; its settings are fixed in history from here on.
    const env = yield* run.call(
      ACTIVITIES.resolveEnvironment,
      { environment: input.environment },
      RETRY.storage,
    );
    this.env = env;
    run.status = { ...run.status, builder: { name: env.vm.vmName } };

    // 1b. Version 5 on: the registry first. With the image for this source there, the builder is
    //     not leased, started or touched; its digest is deployed (or, with --no-deploy, the build ends).
    if (run.version >= 5) {
      const found = yield* lookUpImages(run, env);
      if (found.source !== undefined) {
        skipBuilderSteps(run);
        const image = `${env.registry}/${env.imageRepository}:${sourceTagOf(input.sourceDigest)}`;
        run.status = { ...run.status, image: { reference: image, digest: found.source } };
        yield* this.deployStep(image, found.source);
        return;
      }
    }

    // 2. One build per builder VM: take the lease, or wait in the visible queue.
    run.step("lease", "running");
    const lease = new BuilderLease(run, env);
    this.lease = lease;
    yield* lease.acquire();
    this.startedAt = run.iso();
    run.status = { ...run.status, queuePosition: undefined };
    run.step("lease", "succeeded");

    // 3. Start the builder. The client uploads in parallel (the upload does not need us); its
    //    SourceUploaded event is buffered until we wait for it below.
    run.phase("starting-builder");
    run.step("builder", "running");
    yield* ensureBuilderReady(run, env, lease);
    run.step("builder", "succeeded");

    run.phase("waiting-for-source");
    run.step("source", "running");
    yield* waitForSource(run, env, lease);
    run.step("source", "succeeded");

    // 4-6. Run the build command and wait for its result.
    run.phase("building");
    run.step("build", "running");
    const command = new BuildCommand(run, env, lease);
    this.command = command;
    const result = yield* command.build();
    run.step("build", "succeeded");
    // The builder's part is done: retire the command and give the builder to the next build in
    // the queue, instead of holding it through the deploy (which never touches the VM).
    const handBack = () => this.handBack(command, lease);
    if (run.version < 6) {
      yield* handBack();
      yield* this.deployStep(result.image, result.digest);
      return;
    }
    // 7. Version 6 on: the deploy does not wait for that. The app is patched first, and the
    //    command is retired and the lease given back while the new revision starts (Azure's take
    //    10-60 s), in place of the poll's first wait; a build that deploys nothing hands back here.
    yield* this.deployStep(result.image, result.digest, handBack);
    yield* handBack();
  }

  /** Retires the build command and gives the lease back; once. */
  private *handBack(command: BuildCommand, lease: BuilderLease): Generator<Task, void, unknown> {
    if (this.releasedBeforeDeploy) return;
    yield* command.finish();
    yield* lease.release();
    this.releasedBeforeDeploy = true;
  }

  /** 7. Deploys the image unless the caller asked not to; `handBack`: see deploy.ts. */
  private *deployStep(
    image: string | undefined,
    digest: string | undefined,
    handBack?: () => Generator<Task, void, unknown>,
  ): Generator<Task, void, unknown> {
    const { run } = this;
    if (!run.input.deploy || !image || !this.env) {
      run.step("deploy", "skipped");
      return;
    }
    run.phase("deploying");
    run.step("deploy", "running");
    const changed = yield* deploy(run, this.env, image, digest, handBack);
    run.step("deploy", changed ? "succeeded" : "skipped");
  }

  /** Before the lease goes back: stop a build command still running, or retire a finished one. */
  *finishBuildCommand(): Generator<Task, void, unknown> {
    if (this.command) yield* this.command.finish();
  }

  /** 8. Always: give the builder back (or leave its queue). */
  *releaseLease(): Generator<Task, void, unknown> {
    if (this.env && this.lease) yield* this.lease.release();
  }

  /** 8. Always, after the lease went back: record what the build used. */
  *record(outcome: BuildPhase, reason: string): Generator<Task, void, unknown> {
    const { run, env, lease } = this;
    if (!env) return;
    const record: RecordBuildInput = {
      builderKey: env.builderKey,
      buildId: run.input.buildId,
      environment: run.input.environment,
      startedAt: this.startedAt ?? run.input.createdAt,
      endedAt: run.iso(),
      outcome,
      reason,
      vmMinutes: lease?.vmMinutes ?? 0,
    };
    // The history row: the same activity, so no new step in the orchestration's sequence.
    record.history = historyRecord(run.status, run.input, {
      outcome,
      reason,
      endedAt: record.endedAt,
      vmMinutes: record.vmMinutes,
    });
    // What later builds' expected duration is made of: only builds the builder built.
    const cache = run.status.cache;
    if (outcome === "succeeded" && cache && !cache.skipped && this.command?.resultRead === true) {
      record.base = cache.base;
      record.durationMs = Date.parse(record.endedAt) - Date.parse(run.input.createdAt);
    }
    try {
      yield* run.call(ACTIVITIES.recordBuild, record, RETRY.storage, false);
    } catch (error) {
      run.log(`could not record the build's activity: ${describe(error)}`);
    }
  }

  /** Marks the build terminal. */
  end(phase: BuildPhase, error: ApiError | undefined): void {
    const { run } = this;
    run.status = finished(run.status, phase, run.iso(), error);
    run.publish();
    run.log(`ended ${phase}${error ? ` (${error.code}): ${error.message}` : ""}`);
  }

  get status(): BuildStatus {
    return this.run.status;
  }
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
      terminalError(
        {
          kind: "ended",
          error: {
            code: "InvalidInput",
            message: `invalid build input: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
          },
        },
        { builder: undefined, lease: "never-held", command: { kind: "not-started" } },
      ),
    );
    // The issues list can be as long as the input: fitted like every other published status.
    const fitted = fitStatus(status);
    context.df.setCustomStatus(fitted);
    return fitted;
  }

  const build = new BuildRun(context, parsed.data);
  let phase: BuildPhase = "succeeded";
  let cause: EndCause | undefined;
  try {
    yield* build.execute();
  } catch (thrown) {
    if (thrown instanceof BuildEnded) {
      phase = thrown.phase;
      if (thrown.error) cause = { kind: "ended", error: thrown.error };
    } else if (thrown instanceof ActivityFailed) {
      phase = "failed";
      cause = { kind: "activity", activity: thrown.activity, failure: thrown.failure };
    } else {
      // A bug of ours: keep the details in the log, give the user a generic reason.
      build.run.log(`unexpected error: ${describe(thrown)}`);
      phase = "failed";
      cause = { kind: "internal" };
    }
  }
  // When the build's result was read, the outcome is known: the developer sees it now, while the
  // finished command is retired and the lease goes back (a grace of up to a minute for the script
  // to exit). When it was not, stopping the command can change the reason, so the end waits.
  const outcomeKnown = build.resultRead;
  let error = cause && build.reason(cause);
  if (outcomeKnown) build.end(phase, error);
  // Invariant: whatever happened above, the build command is stopped or retired, the lease goes
  // back and the build ends in a terminal phase with a reason. None of these steps may throw.
  try {
    yield* build.finishBuildCommand();
  } catch (thrown) {
    build.run.log(`unexpected error while finishing the build command: ${describe(thrown)}`);
  }
  yield* build.releaseLease();
  // The reason says what became of the builder: known now that the command and the lease are settled.
  if (cause && !outcomeKnown) error = build.reason(cause);
  yield* build.record(phase, error ? `${error.code}: ${error.message}` : "ok");
  if (!outcomeKnown) build.end(phase, error);
  return build.status;
};
