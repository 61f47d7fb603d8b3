/** Waiting for the client's upload: its SourceUploaded event, buffered if it came early. */
import type { Task } from "durable-functions";
import type { ResolvedEnvironment } from "../core/activityContract.js";
import { BUILD_EVENTS } from "../core/buildInput.js";
import type { RunContext } from "./context.js";
import { EventLatch } from "./eventLatch.js";
import { BuildEnded } from "./failures.js";
import type { BuilderLease } from "./lease.js";

/**
 * Version 3 on: how long after the source deadline an upload reported by the deadline may still
 * be delivered. The host delivers messages in dequeue order, and a timer due at the deadline can
 * come in an episode before an event raised at that same instant (or a little earlier, while the
 * build renewed its lease, or while the queue poller backed off: up to 30 s idle); such an upload
 * did land in time, so the build goes on. An upload reported after the deadline fails the build
 * in whatever order it arrives.
 */
export const LATE_UPLOAD_DELIVERY_MS = 60_000;

/** When the API saw the upload (`reportedAt` of the SourceUploaded event), or undefined. */
function reportedAt(value: unknown): number | undefined {
  const at = (value as { reportedAt?: unknown } | undefined)?.reportedAt;
  const ms = typeof at === "string" ? Date.parse(at) : NaN;
  return Number.isNaN(ms) ? undefined : ms;
}

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
  // Version 3 on: past the deadline, a while longer for an upload reported by then (see above).
  const lastDelivery = run.version >= 3 ? deadline + LATE_UPLOAD_DELIVERY_MS : deadline;
  const neverUploaded = () =>
    new BuildEnded("failed", {
      code: "SourceNeverUploaded",
      message: `source never uploaded: no upload was reported within ${Math.round(env.limits.sourceTimeoutMs / 60_000)} minutes`,
      hint: "Upload the archive to the URL from POST /api/builds and call POST /api/builds/{id}/source, or start a new build.",
    });
  while (!source.fired) {
    run.throwIfCancelled();
    if (run.now() >= lastDelivery) throw neverUploaded();
    // An event, not a poll: wait in slices no longer than half a lease term, renewing in between.
    const end = run.now() < deadline ? deadline : lastDelivery;
    const timedOut = yield* run.waitUntil(Math.min(end, run.now() + env.limits.leaseMs / 2), source);
    if (timedOut) yield* lease.keep();
  }
  // Delivered after the deadline: it counts only if the upload was reported by then (an event
  // from an API without `reportedAt` gets the benefit of the doubt).
  const at = reportedAt(source.value);
  if (run.now() > deadline && at !== undefined && at > deadline) throw neverUploaded();
  run.log("source uploaded");
}
