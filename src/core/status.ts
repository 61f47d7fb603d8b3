/**
 * The build status as the orchestration publishes it (durable custom status, fitted into
 * {@link STATUS_BUDGET_BYTES} by `fitStatus`) and as `GET /api/builds/{id}` shows it. Pure: the
 * orchestrator builds it step by step with these helpers; the HTTP layer projects an instance's
 * status with `projectStatus`.
 */
import { TERMINAL_PHASES, type ApiError, type BuildPhase, type BuildStatus, type BuildStep } from "./api.js";
import { RESULT_LIMITS, tailLines, truncateText } from "./buildResult.js";

/** Step names in the order a build goes through them. */
export const STEPS = ["lease", "builder", "source", "build", "deploy"] as const;
export type StepName = (typeof STEPS)[number];

export function initialStatus(
  buildId: string,
  environment: string,
  builder: string,
  createdAt: string,
): BuildStatus {
  return {
    buildId,
    environment,
    phase: "queued",
    terminal: false,
    steps: STEPS.map((name) => ({ name, state: "pending" })),
    builder: { name: builder },
    timings: { createdAt },
  };
}

export function withPhase(status: BuildStatus, phase: BuildPhase, at: string): BuildStatus {
  const terminal = TERMINAL_PHASES.has(phase);
  return {
    ...status,
    phase,
    terminal,
    timings: {
      ...status.timings,
      ...(phase !== "queued" && status.timings.startedAt === undefined ? { startedAt: at } : {}),
      ...(terminal ? { endedAt: at } : {}),
    },
  };
}

export function withStep(
  status: BuildStatus,
  name: StepName,
  state: BuildStep["state"],
  at: string,
): BuildStatus {
  return {
    ...status,
    steps: status.steps.map((step) => {
      if (step.name !== name) return step;
      const next: BuildStep = { ...step, state };
      if (state === "running" && step.startedAt === undefined) next.startedAt = at;
      if (state === "succeeded" || state === "failed" || state === "skipped") next.endedAt = at;
      return next;
    }),
  };
}

/** Ends the build: steps still running fail, pending ones are skipped. */
export function finished(status: BuildStatus, phase: BuildPhase, at: string, error?: ApiError): BuildStatus {
  const steps = status.steps.map((step): BuildStep => {
    if (step.state === "running")
      return { ...step, state: phase === "succeeded" ? "succeeded" : "failed", endedAt: at };
    if (step.state === "pending") return { ...step, state: "skipped" };
    return step;
  });
  const ended = withPhase({ ...status, steps, queuePosition: undefined }, phase, at);
  return error ? { ...ended, error: clampError(error) } : ended;
}

/** The error with its texts cut to `max` characters (its code to twice a name's limit). */
export function clampError(error: ApiError, max: number = RESULT_LIMITS.messageChars): ApiError {
  return {
    code: truncateText(error.code, RESULT_LIMITS.nameChars * 2),
    message: truncateText(error.message, max),
    ...(error.hint === undefined ? {} : { hint: truncateText(error.hint, max) }),
  };
}

/**
 * Size of a value as the Durable extension measures a custom status: its JSON in UTF-16 bytes
 * (`MessagePayloadDataConverter.Serialize`: `Encoding.Unicode.GetByteCount`). A JS string's
 * length counts UTF-16 units, so this is twice the JSON's length.
 */
export function jsonUtf16Bytes(value: unknown): number {
  return (JSON.stringify(value) ?? "").length * 2;
}

/**
 * What a published status may take. `SetCustomStatus` fails the orchestration once the status's
 * UTF-16 JSON reaches 17 KB (`(int)(bytes / 1024.0) > 16`, azure-functions-durable-extension
 * `DurableOrchestrationContext.cs` and `MessagePayloadDataConverter.cs`), and a failed instance
 * runs no cleanup. 12 KB leaves 5 KB (30 %) for what we do not measure: the extension counts its
 * own Newtonsoft serialization of the status, not ours, and escapes need not match byte for byte.
 */
export const STATUS_BUDGET_BYTES = 12 * 1024;

/** What the log tail of a published status takes at most: half of its budget. */
export const LOG_TAIL_BUDGET_BYTES = STATUS_BUDGET_BYTES / 2;

/**
 * What the tail in one poll of a running build takes at most (about five 100-character lines):
 * each poll's result stays in history for the rest of the build, and a compiler's log changes at
 * every poll. The read that finds the build ended brings up to {@link LOG_TAIL_BUDGET_BYTES}.
 */
export const POLL_LOG_TAIL_BUDGET_BYTES = 1024;

/**
 * The last lines of a log (at most RESULT_LIMITS' count, each cut to its length) whose JSON
 * takes at most `budget` UTF-16 bytes: older lines go first; a last line still too long is cut.
 */
export function fitTail(lines: readonly string[], budget: number): string[] {
  let tail = tailLines(lines);
  while (tail.length > 1 && jsonUtf16Bytes(tail) > budget) tail = tail.slice(1);
  const [only] = tail;
  if (tail.length === 1 && only !== undefined && jsonUtf16Bytes(tail) > budget) {
    // Escapes take up to six characters per character (`\u0001`): cut by what is left.
    let max = only.length;
    while (max > 0 && jsonUtf16Bytes([truncateText(only, max)]) > budget) max = Math.floor(max / 2);
    tail = max > 0 ? [truncateText(only, max)] : [];
  }
  return tail;
}

/** Log lines kept while shortening the status, before the long ones are cut. */
const FIT_TAIL_LINES = 5;
/** What long texts are cut to before they are left out. */
const FIT_TEXT_CHARS = 120;

const shortTexts = (status: BuildStatus, max: number): BuildStatus => ({
  ...status,
  ...(status.error ? { error: clampError(status.error, max) } : {}),
  ...(status.deployment
    ? { deployment: { ...status.deployment, message: truncateText(status.deployment.message, max) } }
    : {}),
});

/** The parts no status goes without: phase, steps, terminal, the error's code and a short message. */
function essentials(status: BuildStatus): BuildStatus {
  const short = (text: string) => truncateText(text, FIT_TEXT_CHARS);
  return {
    buildId: short(status.buildId),
    environment: short(status.environment),
    phase: status.phase,
    terminal: status.terminal,
    steps: status.steps,
    builder: { name: short(status.builder.name) },
    ...(status.error
      ? { error: { code: short(status.error.code), message: truncateText(status.error.message, 40) } }
      : {}),
    timings: {
      createdAt: status.timings.createdAt,
      ...(status.timings.startedAt ? { startedAt: status.timings.startedAt } : {}),
      ...(status.timings.endedAt ? { endedAt: status.timings.endedAt } : {}),
    },
  };
}

function withoutDetails(status: BuildStatus): BuildStatus {
  const { logTail: _tail, image: _image, cache: _cache, revision: _revision, deployment, ...rest } = status;
  const { stepsMs: _stepsMs, ...timings } = status.timings;
  return {
    ...rest,
    ...(deployment
      ? { deployment: { ...deployment, reference: truncateText(deployment.reference, FIT_TEXT_CHARS) } }
      : {}),
    timings,
  };
}

/**
 * Each further way of making a status smaller, least important loss first: long log lines cut,
 * long messages cut, the log tail and details (image, cache, revision, step timings) left out,
 * then only the essentials.
 */
const REDUCTIONS: readonly ((status: BuildStatus) => BuildStatus)[] = [
  (s) => (s.logTail ? { ...s, logTail: s.logTail.map((line) => truncateText(line, FIT_TEXT_CHARS)) } : s),
  (s) => shortTexts(s, FIT_TEXT_CHARS * 4),
  (s) => shortTexts(s, FIT_TEXT_CHARS),
  withoutDetails,
  essentials,
];

/**
 * `status` fitted into `budget` (UTF-16 bytes of its JSON): the log tail first cut to its own
 * budget and the error to its limits (the builder's other fields were bounded where they entered,
 * `RESULT_LIMITS`); then, while it is too large, the oldest log lines go (down to
 * FIT_TAIL_LINES), then each of {@link REDUCTIONS} in turn. Phase, steps, terminal and the
 * error's code always stay. Every publish goes through this (orchestration/context.ts).
 */
export function fitStatus(status: BuildStatus, budget = STATUS_BUDGET_BYTES): BuildStatus {
  let fitted: BuildStatus = {
    ...status,
    ...(status.logTail ? { logTail: fitTail(status.logTail, LOG_TAIL_BUDGET_BYTES) } : {}),
    ...(status.error ? { error: clampError(status.error) } : {}),
  };
  const fits = () => jsonUtf16Bytes(fitted) <= budget;
  while (!fits() && fitted.logTail && fitted.logTail.length > FIT_TAIL_LINES) {
    fitted = { ...fitted, logTail: fitted.logTail.slice(1) };
  }
  for (const reduce of REDUCTIONS) {
    if (fits()) break;
    fitted = reduce(fitted);
  }
  return fitted;
}

/** The instance fields `projectStatus` needs (the Durable HTTP API's status shape). */
export interface InstanceView {
  runtimeStatus: string;
  customStatus: unknown;
  output: unknown;
  createdTime: string;
  lastUpdatedTime: string;
}

function isBuildStatus(value: unknown): value is BuildStatus {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Partial<BuildStatus>;
  return typeof v.buildId === "string" && typeof v.phase === "string" && Array.isArray(v.steps);
}

/**
 * What became of the builder of an orchestration that ended without its cleanup: the idle timer
 * frees a builder whose holder's orchestration has ended (src/builders/idleShutdown.ts).
 */
const ORPHAN_BUILDER =
  "if it held its builder, the idle check stops its build command and gives the builder back within a minute";

/**
 * What `GET /api/builds/{id}` shows. The orchestration's own status wins; when the instance
 * ended without publishing a terminal status (it crashed or was terminated), say so.
 */
export function projectStatus(buildId: string, environment: string, instance: InstanceView): BuildStatus {
  const published = isBuildStatus(instance.customStatus)
    ? instance.customStatus
    : initialStatus(buildId, environment, "", instance.createdTime);
  if (published.terminal) return published;
  const at = instance.lastUpdatedTime;
  switch (instance.runtimeStatus) {
    case "Failed":
      return finished(published, "failed", at, {
        code: "OrchestrationFailed",
        message: `the build stopped unexpectedly; ${ORPHAN_BUILDER}`,
        hint: "Start the build again; if it keeps failing, check the function app's logs for this build id.",
      });
    case "Terminated":
      return finished(published, "cancelled", at, {
        code: "Terminated",
        message: `the build was terminated; ${ORPHAN_BUILDER}`,
        hint: "Start the build again when you want it (fast-build's own cancel stops the build command and gives the builder back at once).",
      });
    case "Completed":
      return finished(published, "failed", at, {
        code: "NoResult",
        message: `the build ended without a result; ${ORPHAN_BUILDER}`,
        hint: "Start the build again; if it repeats, check the function app's logs for this build id.",
      });
    default:
      return published;
  }
}
