/**
 * How a build ends early, how a failure reads in the log, and the one place that decides what a
 * terminal reason says (`terminalError`): what happened, in words; what became of the builder (the
 * lease, the build command, the VM); and a hint the user can act on.
 */
import { ACTIVITIES, type ActivityName } from "../core/activityContract.js";
import type { ApiError, BuildPhase } from "../core/api.js";
import { RESULT_LIMITS, truncateText } from "../core/buildResult.js";
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

/** What became of the build command on the builder, as the build ended. */
export type CommandFate =
  /** No start was attempted: nothing ran on the builder. */
  | { kind: "not-started" }
  /** Its result was read and it is being (or was) retired: deleted once the script has exited. */
  | { kind: "retiring" }
  | { kind: "retired" }
  /** Its result was read, but deleting it failed: it stays on the VM as a resource (not running). */
  | { kind: "kept" }
  /** Its result was not read: deleting it stopped its script (if the start had started it). */
  | { kind: "deleted"; name: string }
  /** Deleting could not stop the script: what was done instead (deallocated, or left running). */
  | { kind: "not-stopped"; note: string }
  /** A version 1 build whose start never answered: its command was not looked for by name. */
  | { kind: "unknown" };

/** What became of the builder's lease. */
export type LeaseFate =
  | "never-held" // queued (or failed before it got the builder)
  | "given-back"
  | "release-failed" // it expires by itself
  | "lost"; // another build may have the builder now

/** What a terminal reason says about the builder. */
export interface BuilderFate {
  /** The builder VM's name; undefined when the build never got as far as knowing it. */
  builder: string | undefined;
  lease: LeaseFate;
  command: CommandFate;
  /** The lease went back when the build command was done, before the deploy. */
  beforeDeploy?: boolean;
  /** The lease's term in minutes (how long an unreleased lease lasts). */
  leaseMinutes?: number;
}

/** One sentence on what happened to the builder. */
export function builderFate(fate: BuilderFate): string {
  const vm = fate.builder;
  if (vm === undefined) return "no builder was used";
  if (fate.lease === "never-held") {
    return fate.command.kind === "not-started"
      ? `it never held builder ${vm} (it left the builder's queue) and nothing ran on it`
      : `it never held builder ${vm}`;
  }
  const lease =
    fate.lease === "given-back"
      ? fate.beforeDeploy
        ? `builder ${vm} was given back when its build command finished, before the deploy`
        : `builder ${vm} was given back`
      : fate.lease === "release-failed"
        ? `giving builder ${vm} back failed: its lease expires by itself${fate.leaseMinutes ? ` within ${fate.leaseMinutes} minutes` : ""}`
        : `its lease on builder ${vm} was lost (another build may use the builder now)`;
  // After a note that names the builder already.
  const leaseAfterNote = fate.lease === "given-back" ? "the lease was given back" : lease;
  const { command } = fate;
  switch (command.kind) {
    case "not-started":
      return `no build command was started; ${lease}`;
    case "retiring":
      return `its build command finished; builder ${vm} goes back to the queue once the command is retired (within a minute)`;
    case "retired":
      return fate.beforeDeploy ? lease : `its build command finished and was deleted; ${lease}`;
    case "kept":
      return `its finished build command could not be deleted and stays on the VM (not running); ${lease}`;
    case "deleted":
      return `its build command ${command.name} was deleted, which stops its script; ${lease}`;
    case "not-stopped":
      return `${command.note}; ${leaseAfterNote}`;
    case "unknown":
      return `its build command may still be running (its start never answered; builds started before version 2 do not stop it by name); ${lease}`;
  }
}

/** What an activity was doing, for "could not …". */
const DOING: Readonly<Record<ActivityName, string>> = {
  [ACTIVITIES.resolveEnvironment]: "read the environment's settings",
  [ACTIVITIES.acquireLease]: "take the builder's lease",
  [ACTIVITIES.renewLease]: "renew the builder's lease",
  [ACTIVITIES.releaseLease]: "give the builder's lease back",
  [ACTIVITIES.recordBuild]: "record the build",
  [ACTIVITIES.startVm]: "start the builder VM",
  [ACTIVITIES.getVmStatus]: "read the builder VM's state",
  [ACTIVITIES.startBuild]: "start the build command on the builder",
  [ACTIVITIES.readBuild]: "read the build command's progress",
  [ACTIVITIES.cancelBuild]: "delete the build command",
  [ACTIVITIES.stopBuilder]: "deallocate the builder VM",
  [ACTIVITIES.readApp]: "read the container app",
  [ACTIVITIES.deployImage]: "update the container app",
  [ACTIVITIES.getRevision]: "read the container app's revision",
  [ACTIVITIES.readDeployment]: "follow the deploy's revision",
  [ACTIVITIES.routeTraffic]: "move the app's traffic to the new revision",
  [ACTIVITIES.readImageDigest]: "read the image's digest from the registry",
  [ACTIVITIES.lookUpImages]: "ask the registry for this source's image and the base image",
  [ACTIVITIES.importImage]: "import the image into the target environment's registry",
};

/** Activities that talk to the build's storage account (the lease table, blobs) rather than Azure Resource Manager. */
const STORAGE_ACTIVITIES = new Set<string>([
  ACTIVITIES.resolveEnvironment,
  ACTIVITIES.acquireLease,
  ACTIVITIES.renewLease,
  ACTIVITIES.releaseLease,
  ACTIVITIES.recordBuild,
]);

const AZURE_STATUS = "https://azure.status.microsoft";

/** Codes of throttling: the subscription's (or registry's) request budget is spent for now. */
const THROTTLED = /throttl|TooManyRequests|^Http429$/i;
/** Codes of capacity shortages. */
const CAPACITY = /AllocationFailed|OverconstrainedAllocationRequest/;

/** The hint for a transient failure that outlasted every retry, by what kind of trouble it was. */
function exhaustedHint(failure: ActivityFailure, activity: string): string {
  if (THROTTLED.test(failure.code))
    return "Azure is throttling this subscription's requests: start the build again in a few minutes, or run fewer builds at once.";
  if (CAPACITY.test(failure.code))
    return "Azure has no capacity for the builder's VM size in its region right now: start the build again later, or resize the builder VM.";
  const service = STORAGE_ACTIVITIES.has(activity) ? "Azure Storage" : "Azure";
  return `${service} kept failing (${failure.code}) through every retry: start the build again in a few minutes; if it keeps failing, check ${AZURE_STATUS} for an outage in the region.`;
}

/**
 * Hints by code for the reasons the orchestrator decides itself. A code not here keeps the hint
 * it was raised with (an activity's: the gateway's, src/azure/errors.ts; the lease's), or gets
 * the default for its kind below.
 */
const HINTS: Readonly<Record<string, string>> = {
  Cancelled: "Start the build again when you want it.",
  NoImage:
    "The builder's build.sh reported success without an image: redeploy the function app's dockerfiles/ (build.sh), then build again.",
  InternalError:
    "A fault of fast-build's: start the build again; if it repeats, report it with the build id (the function app's log has the details).",
  InvalidInput:
    "The start request's input was not valid: start the build with the fast-build CLI (or the API as documented), not a hand-made orchestration input.",
};

const PERMANENT_HINT =
  "Azure refused the request and will refuse it again: fix what the message names (permissions, names, quota), then start the build again.";

const DEFAULT_HINT =
  "Start the build again; if it ends the same way, the function app's log has the details under this build id.";

/** What the build ended with: an error it raised itself, an activity that failed, or a fault of ours. */
export type EndCause =
  | { kind: "ended"; error: ApiError }
  | { kind: "activity"; activity: string; failure: ActivityFailure }
  | { kind: "internal" };

/**
 * The build's terminal error: its code; what happened, then what became of the builder, within
 * the message limit (the first part is cut, never the builder's fate); and a hint. Hints: a
 * transient failure that outlasted the retries gets one by kind (throttling, capacity, a service
 * failing), a code in {@link HINTS} gets that one, otherwise the hint it was raised with, or for a
 * failure Azure will repeat the permanent one.
 */
export function terminalError(cause: EndCause, fate: BuilderFate): ApiError {
  let code: string;
  let what: string;
  let hint: string | undefined;
  if (cause.kind === "activity") {
    const { failure, activity } = cause;
    const doing = DOING[activity as ActivityName] ?? `run ${activity}`;
    code = failure.code;
    if (failure.retryable) {
      what = `could not ${doing}: it still failed after every retry (${failure.message})`;
      hint = exhaustedHint(failure, activity);
    } else {
      what = `could not ${doing}: ${failure.message}`;
      hint = HINTS[code] ?? failure.hint ?? PERMANENT_HINT;
    }
  } else if (cause.kind === "internal") {
    code = "InternalError";
    what = "the build orchestration hit an unexpected error";
    hint = HINTS[code];
  } else {
    code = cause.error.code;
    what = cause.error.message;
    hint = HINTS[code] ?? cause.error.hint ?? DEFAULT_HINT;
  }
  const builder = builderFate(fate);
  const room = RESULT_LIMITS.messageChars - builder.length - 3;
  return {
    code,
    message: `${truncateText(what, Math.max(80, room))}; ${builder}`,
    ...(hint ? { hint } : {}),
  };
}
