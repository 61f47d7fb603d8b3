/** How a build ends early, and how a failure reads in the log. */
import type { ApiError, BuildPhase } from "../core/api.js";
import type { ActivityFailure } from "../core/retry.js";

/** Ends the build early with a terminal phase; caught by the orchestrator's top level. */
export class BuildEnded extends Error {
  constructor(
    readonly phase: BuildPhase,
    readonly error: ApiError | undefined,
  ) {
    super(error?.message ?? phase);
    this.name = "BuildEnded";
  }
}

/** A permanent (or retried-out) activity failure, as the orchestrator reports it. */
export class ActivityFailed extends Error {
  constructor(
    readonly activity: string,
    readonly failure: ActivityFailure,
  ) {
    super(failure.message);
    this.name = "ActivityFailed";
  }
}

/** One line for the log: an activity's code and message, or an error's first line. */
export function describe(error: unknown): string {
  if (error instanceof ActivityFailed) return `${error.failure.code}: ${error.failure.message}`;
  return error instanceof Error ? (error.message.split("\n")[0] ?? error.name) : String(error);
}
