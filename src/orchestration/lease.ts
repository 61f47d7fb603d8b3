/**
 * The builder lease: one build per builder VM. Taken (or queued for) at the start, renewed while
 * the build waits, given back as soon as the builder's part is done and again in the cleanup.
 */
import type { Task } from "durable-functions";
import {
  ACTIVITIES,
  type LeaseRef,
  type RenewLeaseInput,
  type ResolvedEnvironment,
} from "../core/activityContract.js";
import { RETRY, type ActivityFailure } from "../core/retry.js";
import type { LeaseKeeper, RunContext } from "./context.js";
import { ActivityFailed, BuildEnded, describe, type LeaseFate } from "./failures.js";
import { POLLS, pollUntil } from "./poll.js";
import { supersededError } from "../core/supersede.js";

/** This build's hold on its builder (or its place in the builder's queue). */
export class BuilderLease implements LeaseKeeper {
  private ref: LeaseRef | undefined;
  private renewAt = 0;
  /** When the lease was last taken or renewed (orchestration time). */
  private renewedAt = 0;
  /** The lease went back (after the build command, or in the final cleanup). */
  private released = false;
  private everHeld = false;
  private lost = false;
  private releaseFailed = false;
  /** VM minutes the lease store counted for this build, once released. */
  vmMinutes = 0;

  constructor(
    private readonly run: RunContext,
    private readonly env: ResolvedEnvironment,
  ) {}

  /** False before it is taken, once it is lost, and once it went back. */
  get held(): boolean {
    return this.ref !== undefined;
  }

  /** What an activity renews to confirm the builder is still this build's; undefined unless held. */
  get renewal(): RenewLeaseInput | undefined {
    return this.ref && { ...this.ref, leaseMs: this.env.limits.leaseMs };
  }

  /** What became of the lease, for the build's reason. */
  get fate(): LeaseFate {
    if (this.lost) return "lost";
    if (!this.everHeld) return "never-held";
    return this.releaseFailed ? "release-failed" : "given-back";
  }

  /** Takes the lease, or waits in the visible queue until it can. */
  *acquire(): Generator<Task, void, unknown> {
    const { run, env } = this;
    const { buildId } = run.input;
    let queued = false;
    // Version 7 on: a build with a branch queues by environment and branch, so a newer build of
    // its branch can supersede it (and it can supersede older ones, when the environment says so).
    const { branch } = run.input;
    const scope =
      run.version >= 7 && branch !== undefined
        ? { environment: run.input.environment, branch, supersede: env.supersede ?? false }
        : undefined;
    const lease = yield* pollUntil(run, {
      policy: POLLS.queue,
      probe: function* () {
        const answer = yield* run.call(
          ACTIVITIES.acquireLease,
          { builderKey: env.builderKey, buildId, leaseMs: env.limits.leaseMs, ...(scope ? { scope } : {}) },
          RETRY.storage,
        );
        if (answer.acquired) return answer;
        if (answer.supersededBy !== undefined) {
          // It left the queue in that same write; it never held the builder, so the cleanup's
          // release only confirms that.
          run.log(`superseded by build ${answer.supersededBy}`);
          run.status = { ...run.status, supersededBy: answer.supersededBy };
          throw new BuildEnded("cancelled", supersededError(answer.supersededBy, branch ?? ""));
        }
        if (run.status.queuePosition !== answer.position) {
          run.log(`queued at position ${answer.position} behind ${answer.holder ?? "an earlier build"}`);
        }
        run.status = { ...run.status, queuePosition: answer.position };
        run.publish();
        queued = true;
        return undefined;
      },
    });
    this.ref = { builderKey: env.builderKey, buildId, generation: lease.generation };
    this.everHeld = true;
    this.renewedAt = run.now();
    this.renewAt = run.now() + env.limits.leaseMs / 2;
    // A cancel raised while that last acquire ran is delivered only to a waiter: look before using
    // the builder, so a build cancelled in the queue never starts it (cleanup gives the lease back).
    if (queued && (yield* run.cancelPending())) throw run.cancelledError();
  }

  /** Renews the builder lease when half of its term has passed (called between waits). */
  *keep(): Generator<Task, void, unknown> {
    const { run, env } = this;
    if (!this.ref || run.now() < this.renewAt) return;
    try {
      yield* run.call(ACTIVITIES.renewLease, { ...this.ref, leaseMs: env.limits.leaseMs }, RETRY.storage);
    } catch (error) {
      throw this.lostOr(error);
    }
    this.renewedAt = run.now();
    this.renewAt = run.now() + env.limits.leaseMs / 2;
  }

  /** Sleeps `ms` (a durable timer), renewing the lease whenever half of its term has passed. */
  *wait(ms: number, interruptible = true): Generator<Task, void, unknown> {
    const { run } = this;
    const end = run.now() + ms;
    while (run.now() < end) {
      const slice = this.ref ? Math.max(1_000, this.renewAt - run.now()) : Infinity;
      yield* run.sleep(Math.min(end - run.now(), slice), interruptible);
      yield* this.keep();
    }
  }

  /**
   * `error` as the build's end when an activity reported the lease lost (renewing it, or
   * confirming it before the builder is used): the lease is no longer held, and the reason
   * says who has the builder now and, after a gap longer than the lease, that the function app
   * did not run this build meanwhile. Any other error is returned as it is.
   */
  lostOr(error: unknown): unknown {
    if (!(error instanceof ActivityFailed) || error.failure.code !== "LeaseLost") return error;
    this.ref = undefined;
    this.lost = true;
    return this.lostError(error.failure);
  }

  private lostError(failure: ActivityFailure): BuildEnded {
    const { run, env } = this;
    const leaseMinutes = env.limits.leaseMs / 60_000;
    const gapMs = run.now() - this.renewedAt;
    const stalled =
      gapMs > env.limits.leaseMs
        ? `; this build last renewed it ${Math.round(gapMs / 60_000)} minutes before, more than its ${leaseMinutes}-minute term, so the function app did not run the build in between (an outage, a deploy or a scale-in)`
        : "";
    return new BuildEnded("failed", {
      code: "LeaseLost",
      message: `${failure.message}${stalled}`,
      hint: failure.hint ?? "Start the build again.",
    });
  }

  /** Gives the builder back (or leaves its queue); once per build, never throws. */
  *release(): Generator<Task, void, unknown> {
    const { run, env } = this;
    if (this.released) return;
    this.released = true;
    try {
      const released = yield* run.call(
        ACTIVITIES.releaseLease,
        { builderKey: env.builderKey, buildId: run.input.buildId, generation: this.ref?.generation },
        RETRY.storage,
        false,
      );
      this.vmMinutes = released.vmMinutes;
    } catch (error) {
      // The lease expires on its own; say so rather than fail the cleanup.
      this.releaseFailed = this.ref !== undefined;
      run.log(`could not release the builder lease (it expires by itself): ${describe(error)}`);
    }
    this.ref = undefined;
  }
}
