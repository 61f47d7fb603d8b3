/**
 * The deploy orchestration (`fb_DeployOrchestrator`): a promotion or a rollback, one instance each.
 * A promotion waits for its approval when the target environment requires one (durably: a timer of
 * up to `approval.timeoutHours` raced against the decision event), imports the image by digest
 * into the target registry with ACR's import (no rebuild: the bytes tested are the bytes that
 * run), checks the digest there is the same, and deploys it with the build's own deploy steps
 * (deploy.ts `deployReference`: the same revision suffix rule, the same wait for THAT revision).
 * A rollback deploys a digest the app ran before, chosen and checked by the API before it started.
 *
 * Its own registration beside the build orchestrator, so the build's recorded histories are not
 * touched. Deterministic like the build's: time from `context.df`, I/O only in activities.
 */
import type { OrchestrationContext, OrchestrationHandler, Task } from "durable-functions";
import { ACTIVITIES, type ResolvedEnvironment } from "../core/activityContract.js";
import type { ApiError, BuildPhase } from "../core/api.js";
import {
  decisionEventSchema,
  deployInputSchema,
  PROMOTION_EVENTS,
  type DeployInfo,
  type DeployInput,
  type DeployStatus,
} from "../core/promotion.js";
import { RETRY } from "../core/retry.js";
import { finished, fitStatus, initialStatus } from "../core/status.js";
import { RunContext, type RunInput } from "./context.js";
import { deployReference } from "./deploy.js";
import { POLLS, pollUntil } from "./poll.js";
import { EventLatch } from "./eventLatch.js";
import { ActivityFailed, BuildEnded, describe } from "./failures.js";

/** The tag a promoted image gets in the target registry: it names the digest, so it never moves. */
export function promotedTag(digest: string): string {
  return `promoted-${digest.replace(/^sha256:/, "").slice(0, 64)}`;
}

class DeployRun {
  readonly run: RunContext<RunInput>;
  info: DeployInfo;

  constructor(
    context: OrchestrationContext,
    readonly input: DeployInput,
  ) {
    this.run = new RunContext<RunInput>(context, {
      buildId: input.id,
      environment: input.environment,
      createdAt: input.createdAt,
      orchestratorVersion: input.deployStepsVersion,
    });
    this.info = {
      kind: input.kind,
      ...(input.from ? { from: input.from } : {}),
      to: input.environment,
      ...(input.requestedBy ? { requestedBy: input.requestedBy } : {}),
      image: input.image,
      ...(input.approval
        ? {
            approval: {
              required: input.approval.required,
              approvers: input.approval.approvers,
              state: input.approval.required ? "pending" : "not-required",
            },
          }
        : {}),
      ...(input.kind === "promote" ? { import: { state: "pending" } } : {}),
    };
    this.run.status = { ...this.run.status, steps: [] };
    this.publish();
  }

  /** The status with the promotion's own part, published (fitted as the build's is). */
  publish(): void {
    const status: DeployStatus = { ...this.run.status, deploy: this.info };
    this.run.status = status;
    this.run.publish();
  }

  *execute(): Generator<Task, void, unknown> {
    const { run, input } = this;
    run.log(`${input.kind} of ${input.image.digest} to environment ${input.environment} started`);
    const env = yield* run.call(
      ACTIVITIES.resolveEnvironment,
      { environment: input.environment },
      RETRY.storage,
    );
    if (input.approval?.required) yield* this.waitForApproval(input.approval.timeoutMs);
    run.phase("deploying");
    // The API refused to start beside a deploy it could see; an approval's wait can last days, so
    // look again here, and wait (bounded by the deploy timeout) for one that started meanwhile.
    yield* this.waitForSettledApp(env);
    const reference =
      input.kind === "promote"
        ? yield* this.importImage(env)
        : `${env.registry}/${input.image.repository}@${input.image.digest}`;
    this.publish();
    const changed = yield* deployReference(run, env, reference);
    this.run.status = finished(this.run.status, "succeeded", run.iso());
    this.publish();
    run.log(changed ? `deployed ${reference}` : `${reference} was already running: nothing deployed`);
  }

  private *waitForApproval(timeoutMs: number): Generator<Task, void, unknown> {
    const { run } = this;
    const approval = this.info.approval!;
    const deadline = run.now() + timeoutMs;
    this.info = { ...this.info, approval: { ...approval, deadline: new Date(deadline).toISOString() } };
    this.publish();
    run.log(
      `waiting for approval by one of ${approval.approvers.join(", ")} until ${new Date(deadline).toISOString()}`,
    );
    const decision = new EventLatch(run.df, PROMOTION_EVENTS.decision);
    for (;;) {
      const timer = run.df.createTimer(new Date(deadline));
      const winner: unknown = yield run.df.Task.any([decision.arm(), timer]);
      if (winner === timer) {
        this.info = { ...this.info, approval: { ...this.info.approval!, state: "timed-out" } };
        throw new BuildEnded("failed", {
          code: "ApprovalTimedOut",
          message: `nobody approved the promotion within ${Math.round(timeoutMs / 3_600_000)} hours; nothing was deployed`,
          hint: "Promote again, and ask an approver to run fast-build approve <id> in time (or raise approval.timeoutHours).",
        });
      }
      timer.cancel();
      const parsed = decisionEventSchema.safeParse(decision.value);
      if (!parsed.success) {
        // Only the API raises this event; a malformed one is ignored, and the wait goes on.
        run.log("ignored a malformed approval decision");
        decision.reset();
        continue;
      }
      const { approved, by, at, reason } = parsed.data;
      this.info = {
        ...this.info,
        approval: {
          ...this.info.approval!,
          state: approved ? "approved" : "rejected",
          by,
          at,
          ...(reason ? { reason } : {}),
        },
      };
      this.publish();
      if (approved) {
        run.log(`approved by ${by.name}`);
        return;
      }
      throw new BuildEnded("cancelled", {
        code: "Rejected",
        message: `rejected by ${by.name}${reason ? `: ${reason}` : ""}; nothing was deployed`,
      });
    }
  }

  /**
   * Until the app's newest revision is its ready one (or failed): never PATCH beside another
   * deploy's revision that is still starting. Azure would order the two updates anyway; this keeps
   * a promotion or rollback from replacing a build's revision before the build saw it healthy.
   */
  private *waitForSettledApp(env: ResolvedEnvironment): Generator<Task, void, unknown> {
    const { run } = this;
    yield* pollUntil(run, {
      policy: POLLS.deploy,
      interruptible: false,
      probe: function* () {
        const app = yield* run.call(ACTIVITIES.readApp, { app: env.app }, RETRY.arm);
        const latest = app.latestRevisionName;
        if (!latest || latest === app.latestReadyRevisionName) return true;
        const revision = yield* run.call(
          ACTIVITIES.getRevision,
          { app: env.app, revisionName: latest },
          RETRY.arm,
        );
        if (revision.provisioningState === "Failed" || revision.healthState === "Unhealthy") return true;
        run.log(`waiting for revision ${latest} (another deploy) before deploying`);
        return undefined;
      },
      deadline: {
        at: run.now() + env.limits.deployTimeoutMs,
        expired: () => {
          throw new BuildEnded("failed", {
            code: "DeployInProgress",
            message: `another deploy's revision of ${env.app.appName} did not become ready within ${Math.round(env.limits.deployTimeoutMs / 60_000)} minutes; nothing was deployed`,
            hint: "Check that deploy (fast-build status / promotion), then run this again.",
          });
        },
      },
    });
  }

  /** ACR's import into the target registry, then the digest read back there: it must be the same. */
  private *importImage(env: ResolvedEnvironment): Generator<Task, string, unknown> {
    const { run, input } = this;
    if (!env.registryResource || !input.sourceRegistryResourceId) {
      throw new BuildEnded("failed", {
        code: "RegistryResourceMissing",
        message: `environment ${input.environment} has no registryResource in FASTBUILD_ENVIRONMENTS`,
        hint: "Set registryResource {resourceGroup, name} for both environments of a promotion.",
      });
    }
    const tag = promotedTag(input.image.digest);
    this.info = { ...this.info, import: { state: "running" } };
    this.publish();
    yield* run.call(
      ACTIVITIES.importImage,
      {
        target: env.registryResource,
        sourceResourceId: input.sourceRegistryResourceId,
        sourceImage: `${input.image.repository}@${input.image.digest}`,
        targetTags: [`${env.imageRepository}:${tag}`],
      },
      RETRY.arm,
    );
    const confirmed = yield* run.call(
      ACTIVITIES.readImageDigest,
      { registry: env.registry, repository: env.imageRepository, tag },
      RETRY.arm,
    );
    const reference = `${env.registry}/${env.imageRepository}@${input.image.digest}`;
    if (confirmed.digest !== input.image.digest) {
      throw new BuildEnded("failed", {
        code: "ImportDigestMismatch",
        message: `after the import, ${env.registry}/${env.imageRepository}:${tag} is ${confirmed.digest ?? "missing"}, not ${input.image.digest}; nothing was deployed`,
        hint: "Promote again; if it repeats, check the target registry.",
      });
    }
    this.info = { ...this.info, import: { state: "succeeded", reference, digestIdentical: true } };
    run.log(`imported ${input.image.digest} into ${env.registry}/${env.imageRepository}:${tag}`);
    return reference;
  }

  end(phase: BuildPhase, error: ApiError | undefined): void {
    this.run.status = finished(this.run.status, phase, this.run.iso(), error);
    this.publish();
  }
}

/** The deploy orchestrator; returns its final status (a `DeployStatus`). */
export const deployOrchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
  const parsed = deployInputSchema.safeParse(context.df.getInput());
  if (!parsed.success) {
    const at = context.df.currentUtcDateTime.toISOString();
    const status = fitStatus(
      finished(initialStatus(context.df.instanceId, "", "", at), "failed", at, {
        code: "InvalidInput",
        message: `invalid deploy input: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
      }),
    );
    context.df.setCustomStatus(status);
    return status;
  }
  const deploy = new DeployRun(context, parsed.data);
  try {
    yield* deploy.execute();
  } catch (thrown) {
    if (thrown instanceof BuildEnded) deploy.end(thrown.phase, thrown.error);
    else if (thrown instanceof ActivityFailed) {
      deploy.end("failed", {
        code: thrown.failure.code,
        message: `${thrown.activity} failed: ${thrown.failure.message}; the app keeps what it ran`,
        hint: thrown.failure.hint ?? "Try again in a few minutes; check the function app's log for this id.",
      });
    } else {
      deploy.run.log(`unexpected error: ${describe(thrown)}`);
      deploy.end("failed", {
        code: "InternalError",
        message: "the deploy orchestration hit an unexpected error",
        hint: "Check the function app's log for this id.",
      });
    }
  }
  return deploy.run.status;
};
