/**
 * What the CLI prints, as pure functions of the build status: the terminal code only writes the
 * lines, so every message is tested without a terminal.
 */
import type { BuilderInfo, BuildPhase, BuildStatus, BuildStep, WarmResponse } from "../core/api.js";

const PHASE_LABELS: Record<BuildPhase, string> = {
  queued: "queued: waiting for the builder",
  "starting-builder": "starting the builder VM",
  "waiting-for-source": "waiting for the source upload",
  building: "building",
  deploying: "deploying to Container Apps",
  succeeded: "succeeded",
  failed: "failed",
  cancelled: "cancelled",
  "timed-out": "timed out",
};

/** Short text for the live status line (TTY spinner). */
export function phaseLabel(status: BuildStatus): string {
  const label = PHASE_LABELS[status.phase];
  if (status.phase === "queued" && status.queuePosition !== undefined) {
    return `${label} (position ${status.queuePosition})`;
  }
  const running = status.steps.find((s) => s.state === "running");
  return running ? `${label}: ${running.name}` : label;
}

/** A line of the builder's log, as the follow display shows it. */
export function logLine(text: string): string {
  return `  │ ${text}`;
}

/**
 * What one poll of `fast-build dev` prints, in time order: the log lines that arrived since the
 * last poll first, then what changed in the status. The builder wrote those lines before the
 * orchestration moved on (it publishes "deploying" only once it has the build's result, which the
 * script prints last), so printing the status first would show the phase change above the log
 * that led to it. At the end of a build `log` holds everything left to read, unfinished line
 * included: the terminal status lines (and the summary after them) come last.
 */
export function renderPoll(
  log: readonly string[],
  status: BuildStatus,
  previous: BuildStatus | undefined,
): string[] {
  // The builder's machine-readable result line is for the orchestration; its content shows up
  // in the status lines and the summary instead.
  const readable = log.filter((line) => !line.startsWith('{"fastbuild":'));
  return [...readable.map(logLine), ...renderStatus(status, previous)];
}

/**
 * Lines describing what changed since `previous` (everything, when there is none): phase, queue
 * position, builder power state, steps, cache, image, revision, error.
 */
export function renderStatus(status: BuildStatus, previous: BuildStatus | undefined): string[] {
  const phase =
    status.phase !== previous?.phase && !status.terminal ? [`▸ ${PHASE_LABELS[status.phase]}`] : [];
  return [...phase, ...statusDetails(status, previous)];
}

/** Everything `renderStatus` says but the phase. */
function statusDetails(status: BuildStatus, previous: BuildStatus | undefined): string[] {
  const lines: string[] = [];
  if (
    status.queuePosition !== undefined &&
    status.queuePosition !== previous?.queuePosition &&
    !status.terminal
  ) {
    lines.push(`  position in queue: ${status.queuePosition}`);
  }
  const power = status.builder.powerState;
  if (power !== undefined && power !== previous?.builder.powerState) {
    lines.push(`  builder ${status.builder.name}: ${power}`);
  }
  const before = new Map((previous?.steps ?? []).map((s) => [s.name, s]));
  for (const step of status.steps) {
    const old = before.get(step.name);
    if (old?.state === step.state) continue;
    const line = renderStep(step, old);
    if (line) lines.push(line);
  }
  if (status.cache && !previous?.cache) {
    if (status.cache.skipped) lines.push("  source unchanged: reusing the image built before");
    else
      lines.push(
        `  base image: cache ${status.cache.base}${status.cache.baseKey ? ` (${status.cache.baseKey.slice(0, 12)})` : ""}`,
      );
  }
  if (status.image && status.image.reference !== previous?.image?.reference) {
    lines.push(`  image: ${imageText(status.image)}`);
  }
  const revision = status.revision;
  if (
    revision &&
    (revision.name !== previous?.revision?.name ||
      revision.healthState !== previous.revision.healthState ||
      revision.provisioningState !== previous.revision.provisioningState)
  ) {
    const state = [revision.provisioningState, revision.healthState].filter(Boolean).join(", ");
    lines.push(`  revision ${revision.name}${state ? `: ${state}` : ""}`);
  }
  if (status.deployment && status.deployment.message !== previous?.deployment?.message) {
    lines.push(`  ${status.deployment.message}`);
  }
  if (status.error && status.error.code !== previous?.error?.code) {
    lines.push(`✗ ${status.error.message} [${status.error.code}]`);
    if (status.error.hint) lines.push(`  hint: ${status.error.hint}`);
  }
  return lines;
}

function renderStep(step: BuildStep, old: BuildStep | undefined): string | undefined {
  switch (step.state) {
    case "running":
      return `  • ${step.name}…`;
    case "succeeded": {
      const took = duration(step.startedAt ?? old?.startedAt, step.endedAt);
      return `  ✓ ${step.name}${took ? ` (${took})` : ""}`;
    }
    case "failed":
      return `  ✗ ${step.name} failed`;
    case "skipped":
      return `  – ${step.name} skipped`;
    case "pending":
      return undefined;
  }
}

export interface SummaryFacts {
  /** Wall time of the whole command, measured by the CLI. */
  elapsedMs: number;
}

/** The closing block: outcome, image, revision, cache, step timings, total time. */
export function renderSummary(status: BuildStatus, facts: SummaryFacts): string[] {
  const lines: string[] = [];
  const outcome =
    status.phase === "succeeded" ? "✓ build succeeded" : `✗ build ${PHASE_LABELS[status.phase]}`;
  lines.push(`${outcome} (${status.buildId})`);
  if (status.image) lines.push(`  image     ${imageText(status.image)}`);
  if (status.revision) {
    const state = [status.revision.provisioningState, status.revision.healthState].filter(Boolean).join(", ");
    lines.push(`  revision  ${status.revision.name}${state ? ` (${state})` : ""}`);
  }
  if (status.deployment) {
    lines.push(
      status.deployment.unchanged
        ? "  deploy    nothing to deploy: the app already runs this image"
        : `  deployed  ${status.deployment.reference}`,
    );
  }
  if (status.cache) {
    lines.push(
      `  cache     ${status.cache.skipped ? "source unchanged, build skipped" : `base ${status.cache.base}`}`,
    );
  }
  const steps = Object.entries(status.timings.stepsMs ?? {});
  if (steps.length > 0) {
    lines.push(`  steps     ${steps.map(([name, ms]) => `${name} ${formatDuration(ms)}`).join(", ")}`);
  }
  lines.push(`  total     ${formatDuration(facts.elapsedMs)}`);
  if (status.error) {
    lines.push(`  error     ${status.error.message} [${status.error.code}]`);
    if (status.error.hint) lines.push(`  hint      ${status.error.hint}`);
  }
  if (status.phase !== "succeeded" && status.logTail && status.logTail.length > 0) {
    lines.push("  last log lines:", ...status.logTail.map((line) => `    ${line}`));
  }
  return lines;
}

/**
 * `fast-build status`: one snapshot. An ended build reads as the summary `dev` closes with (its
 * time measured by the server); a running one as its phase and everything known so far.
 */
export function renderSnapshot(status: BuildStatus, now: Date): string[] {
  const created = Date.parse(status.timings.createdAt);
  if (status.terminal) {
    const ended = Date.parse(status.timings.endedAt ?? "");
    const elapsedMs = (Number.isFinite(ended) ? ended : now.getTime()) - created;
    return renderSummary(status, { elapsedMs: Number.isFinite(elapsedMs) ? Math.max(0, elapsedMs) : 0 });
  }
  const lines = [`build ${status.buildId} (${status.environment}): ${phaseLabel(status)}`];
  lines.push(...statusDetails(status, undefined));
  if (Number.isFinite(created)) {
    lines.push(`  started   ${status.timings.createdAt} (${formatDuration(now.getTime() - created)} ago)`);
  }
  if (status.logTail && status.logTail.length > 0) {
    lines.push("  last log lines:", ...status.logTail.map((line) => `    ${line}`));
  }
  return lines;
}

/**
 * `fast-build builders`: one row per builder, columns padded to their widest cell. Times are
 * UTC to the second, with how far away they are, since "idle shutdown at" is read against now.
 */
export function renderBuilders(builders: readonly BuilderInfo[], now: Date): string[] {
  if (builders.length === 0) return ["no builders (the function app has no environments configured)"];
  const header = [
    "BUILDER",
    "ENVIRONMENT",
    "POWER",
    "LEASE HOLDER",
    "QUEUE",
    "LAST ACTIVITY",
    "IDLE SHUTDOWN AT",
  ];
  const rows = builders.map((b) => [
    b.name,
    b.environment,
    b.hibernated ? `${b.powerState} (hibernated)` : b.powerState,
    b.leaseHolder ?? "-",
    String(b.queue.length),
    b.lastActivityAt ? timeAndDistance(b.lastActivityAt, now) : "-",
    b.idleShutdownAt
      ? `${timeAndDistance(b.idleShutdownAt, now)}${b.idleShutdown === "hibernate" ? " (hibernate)" : ""}`
      : "-",
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]?.length ?? 0)));
  return [header, ...rows].map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd(),
  );
}

/**
 * `fast-build warm`: one line, what the VM was and is, and when the idle timer deallocates it
 * unless a build uses it first: `builder builder-dev (dev): deallocated → starting (idle shutdown
 * at 2026-03-14 10:04:12Z (in 30 min 00 s) unless used)`.
 */
export function renderWarm(answer: WarmResponse, now: Date): string {
  const who = `builder ${answer.builder} (${answer.environment})`;
  const idle = answer.idleShutdownAt
    ? ` (idle shutdown at ${timeAndDistance(answer.idleShutdownAt, now)} unless used)`
    : "";
  if (answer.action === "started") {
    const before = answer.hibernated ? `${answer.powerStateBefore} (hibernated)` : answer.powerStateBefore;
    const resume = answer.hibernated ? " (resuming)" : "";
    return `${who}: ${before} → ${answer.powerState}${resume}${idle}`;
  }
  if (answer.leaseHolder) return `${who}: ${answer.powerState}, ${answer.reason ?? "in use"}; nothing to do`;
  return `${who}: ${answer.reason ?? `already ${answer.powerState}`}, nothing to do${idle}`;
}

/** `2026-03-14 09:26:53Z (4 min 05 s ago)` / `(in 25 min 00 s)`; an unreadable time as given. */
function timeAndDistance(iso: string, now: Date): string {
  const at = Date.parse(iso);
  if (!Number.isFinite(at)) return iso;
  const text = `${new Date(at).toISOString().slice(0, 19).replace("T", " ")}Z`;
  const ms = at - now.getTime();
  if (Math.abs(ms) < 1000) return `${text} (now)`;
  return ms > 0 ? `${text} (in ${formatDuration(ms)})` : `${text} (${formatDuration(-ms)} ago)`;
}

/**
 * Splits streamed log text into whole lines; the unfinished last line is kept in `rest` for the
 * next chunk. Carriage-return progress bars collapse to their final state.
 */
export function splitLogLines(pending: string, text: string): { lines: string[]; rest: string } {
  const parts = (pending + text).split("\n");
  const rest = parts.pop() ?? "";
  return { lines: parts.map((line) => line.replace(/\r$/, "").split("\r").pop() ?? ""), rest };
}

/** `850 ms`, `12.3 s`, `4 min 05 s`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
}

function duration(start: string | undefined, end: string | undefined): string | undefined {
  if (!start || !end) return undefined;
  const ms = Date.parse(end) - Date.parse(start);
  return Number.isFinite(ms) && ms >= 0 ? formatDuration(ms) : undefined;
}

function imageText(image: { reference: string; digest?: string }): string {
  return image.digest && !image.reference.includes("@")
    ? `${image.reference}@${image.digest}`
    : image.reference;
}
