/**
 * The build status as the orchestration publishes it (durable custom status, capped far below the
 * 16 KB limit) and as `GET /api/builds/{id}` shows it. Pure: the orchestrator builds it step by
 * step with these helpers; the HTTP layer projects an instance's status with `projectStatus`.
 */
import { TERMINAL_PHASES, type ApiError, type BuildPhase, type BuildStatus, type BuildStep } from "./api.js";

/** Step names in the order a build goes through them. */
export const STEPS = ["lease", "builder", "source", "build", "deploy"] as const;
export type StepName = (typeof STEPS)[number];

const MAX_TAIL_LINES = 20;
const MAX_LINE = 300;
const MAX_MESSAGE = 1000;

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

export function clampLines(lines: readonly string[]): string[] {
  return lines
    .slice(-MAX_TAIL_LINES)
    .map((line) => (line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}…` : line));
}

export function clampError(error: ApiError): ApiError {
  const message =
    error.message.length > MAX_MESSAGE ? `${error.message.slice(0, MAX_MESSAGE)}…` : error.message;
  return { ...error, message };
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
        message: "the build stopped unexpectedly",
        hint: "Start the build again; if it keeps failing, check the function app's logs for this build id.",
      });
    case "Terminated":
      return finished(published, "cancelled", at, {
        code: "Terminated",
        message: "the build was terminated",
      });
    case "Completed":
      return finished(published, "failed", at, {
        code: "NoResult",
        message: "the build ended without a result",
      });
    default:
      return published;
  }
}
