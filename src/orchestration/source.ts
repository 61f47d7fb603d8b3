/** Waiting for the client's upload: its SourceUploaded event, buffered if it came early. */
import type { Task } from "durable-functions";
import type { ResolvedEnvironment } from "../core/activityContract.js";
import { BUILD_EVENTS } from "../core/buildInput.js";
import type { RunContext } from "./context.js";
import { EventLatch } from "./eventLatch.js";
import { BuildEnded } from "./failures.js";
import type { BuilderLease } from "./lease.js";

/** Waits until the source is uploaded, renewing the lease; fails the build when it never is. */
export function* waitForSource(
  run: RunContext,
  env: ResolvedEnvironment,
  lease: BuilderLease,
): Generator<Task, void, unknown> {
  const source = new EventLatch(run.df, BUILD_EVENTS.sourceUploaded);
  // Counted from the build's creation: the client was told to upload right away. A build that
  // queued for long still gets a short grace period for an upload that is under way.
  const deadline = Math.max(Date.parse(run.input.createdAt) + env.limits.sourceTimeoutMs, run.now() + 60_000);
  while (!source.fired) {
    run.throwIfCancelled();
    if (run.now() >= deadline) {
      throw new BuildEnded("failed", {
        code: "SourceNeverUploaded",
        message: `source never uploaded: no upload was reported within ${Math.round(env.limits.sourceTimeoutMs / 60_000)} minutes`,
        hint: "Upload the archive to the URL from POST /api/builds and call POST /api/builds/{id}/source, or start a new build.",
      });
    }
    // An event, not a poll: wait in slices no longer than half a lease term, renewing in between.
    const timedOut = yield* run.waitUntil(Math.min(deadline, run.now() + env.limits.leaseMs / 2), source);
    if (timedOut) yield* lease.keep();
  }
  run.log("source uploaded");
}
