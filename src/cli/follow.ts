/**
 * Following a build: polls its status and log until it ends, printing the new log lines and the
 * status changes. Shared by `fast-build dev` (after its upload) and `fast-build follow`, and the
 * log reading by `fast-build logs`.
 */
import type { Writable } from "node:stream";
import { STATUS_WAIT, type BuildPhase, type BuildStatus } from "../core/api.js";
import { backoffDelayMs } from "../core/backoff.js";
import { isFastBuildError, NotFoundError, TransientError } from "../core/errors.js";
import type { ApiClient } from "./apiClient.js";
import type { Output } from "./progress.js";
import { phaseLabel, renderPoll, splitLogLines } from "./render.js";

/** Process exit codes (also in the usage text). */
/** `refused`: the API would not start or decide it (409, 403): nothing changed. */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  cancelled: 3,
  timedOut: 4,
  refused: 5,
  interrupted: 130,
} as const;

const PHASE_EXIT: Partial<Record<BuildPhase, number>> = {
  succeeded: EXIT.ok,
  failed: EXIT.failed,
  cancelled: EXIT.cancelled,
  "timed-out": EXIT.timedOut,
};

/** The exit code of a command that watched a build to its end. */
export function exitCodeForPhase(phase: BuildPhase): number {
  return PHASE_EXIT[phase] ?? EXIT.failed;
}

/** Where a build's status and log are, relative to the API base. */
export interface BuildUrls {
  statusUrl: string;
  logsUrl: string;
}

export interface FollowOptions {
  /** The API base, for "the build goes on at …" messages. */
  apiUrl: string;
  out: Output;
  /** Aborted on Ctrl-C: following stops (what happens to the build is the caller's choice). */
  interrupt: AbortSignal;
  pollIntervalMs?: number;
}

/** How often the live log is read while the builder writes it (and every poll of an older API). */
export const POLL_INTERVAL_MS = 1500;

/**
 * How long one status request may wait for a change (the API's long poll): while the builder
 * writes the log, the log's interval, so its lines print as promptly as before; in every other
 * phase nothing else moves, so the longest wait the API allows.
 */
export function statusWaitMs(status: BuildStatus, intervalMs: number): number {
  return status.phase === "building" ? Math.min(intervalMs, STATUS_WAIT.maxMs) : STATUS_WAIT.maxMs;
}

/** `--json` output: one indented document on stdout. */
export function writeJson(stdout: Writable, value: unknown): void {
  stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
/** The server ends every build (it has its own timeouts); this only guards against a stuck one. */
export const MAX_FOLLOW_MS = 4 * 60 * 60_000;

/** The wait before the next poll: doubles with each transient failure in a row, up to 8×. */
export function pollDelayMs(intervalMs: number, failures: number): number {
  return backoffDelayMs({ firstMs: intervalMs, factor: 2, maxMs: 8 * intervalMs }, failures);
}

/** Where the CLI is in the build log: the next byte to ask for and the unfinished last line. */
export interface LogCursor {
  offset: number;
  rest: string;
  complete: boolean;
}

export const LOG_START: LogCursor = { offset: 0, rest: "", complete: false };

/** How many transient API failures in a row a follow loop rides out before it gives up. */
export const MAX_TRANSIENT_FAILURES = 10;

/**
 * Follows status and log until the build is terminal, printing new log lines and then the status
 * changes of each answer (see `renderPoll`). The status is long-polled (one request outstanding:
 * the API answers as soon as it changes, or 304 after `statusWaitMs`, and the CLI asks again at
 * once), so a change shows within the API's re-read interval; an API that gives no ETag is
 * polled every `pollIntervalMs` instead. Transient API failures are retried with backoff; after
 * many in a row the command gives up (the build goes on on the server). Resolves to the final
 * status, or "interrupted" once `interrupt` is aborted.
 */
export async function followBuild(
  api: ApiClient,
  build: BuildUrls,
  opts: FollowOptions,
): Promise<BuildStatus | "interrupted"> {
  const { out } = opts;
  const interval = opts.pollIntervalMs ?? POLL_INTERVAL_MS;
  const deadline = Date.now() + MAX_FOLLOW_MS;
  let previous: BuildStatus | undefined;
  let etag: string | undefined;
  let log: LogCursor = LOG_START;
  let failures = 0;
  while (!opts.interrupt.aborted) {
    // Whether the answer already waited (a long poll): then there is no need to sleep.
    let waited = false;
    try {
      // Status first, then the log: every line the builder wrote before this status was read is
      // in this poll's log, so it prints above the status changes it preceded.
      const since = previous && etag ? { etag, waitMs: statusWaitMs(previous, interval) } : undefined;
      const answer = await api.watchStatus(build.statusUrl, since, opts.interrupt);
      const status = answer.changed ? answer.status : previous!;
      if (answer.changed) etag = answer.etag;
      waited = etag !== undefined;
      let read = await readLog(api, build.logsUrl, log);
      if (status.terminal) read = await drainLog(api, build.logsUrl, read, opts.interrupt);
      for (const line of renderPoll(read.lines, status, previous)) out.line(line);
      log = read.cursor;
      previous = status;
      failures = 0;
      if (status.terminal) return status;
      out.status(phaseLabel(status));
    } catch (error) {
      if (opts.interrupt.aborted) break;
      if (!(error instanceof TransientError) || ++failures > MAX_TRANSIENT_FAILURES) {
        if (isFastBuildError(error) && previous) {
          out.line(`lost contact with the API; the build goes on: ${opts.apiUrl}${build.statusUrl}`);
        }
        throw error;
      }
      out.status(`API not answering (${error.code}), retrying…`);
    }
    if (Date.now() > deadline) {
      throw new TransientError("gave up following the build: it has not ended in time", {
        code: "FollowTimeout",
        hint: `The build may still be running: ${opts.apiUrl}${build.statusUrl}`,
      });
    }
    if (!waited) await sleep(pollDelayMs(interval, failures), opts.interrupt);
  }
  return "interrupted";
}

/**
 * Reads the log from the cursor: the whole lines that arrived, and the cursor after them. A 404
 * reads as "no log yet" (only the follow loop uses this; it learns of an unknown build from the
 * status it reads first).
 */
async function readLog(
  api: ApiClient,
  logsUrl: string,
  cursor: LogCursor,
): Promise<{ lines: string[]; cursor: LogCursor }> {
  try {
    const chunk = await api.logs(logsUrl, cursor.offset);
    const { lines, rest } = splitLogLines(cursor.rest, chunk.text);
    return { lines, cursor: { offset: chunk.nextOffset, rest, complete: chunk.complete } };
  } catch (error) {
    if (error instanceof NotFoundError) return { lines: [], cursor: { ...cursor, complete: false } };
    throw error;
  }
}

/**
 * After the build ended: reads on until the server says the log is complete (the last bytes may
 * land after the phase changed, and one answer is capped in size) or nothing more comes, then
 * adds the unfinished last line. Bounded: the summary must not wait on a log that never completes.
 */
async function drainLog(
  api: ApiClient,
  logsUrl: string,
  read: { lines: string[]; cursor: LogCursor },
  interrupt: AbortSignal,
): Promise<{ lines: string[]; cursor: LogCursor }> {
  const lines = [...read.lines];
  let cursor = read.cursor;
  for (let i = 0; i < 10 && !cursor.complete && !interrupt.aborted; i++) {
    const before = cursor.offset;
    const next = await readLog(api, logsUrl, cursor);
    lines.push(...next.lines);
    cursor = next.cursor;
    if (cursor.offset === before) break;
  }
  if (cursor.rest) lines.push(cursor.rest);
  return { lines, cursor: { ...cursor, rest: "" } };
}

/** Waits `ms`, or less when `signal` is aborted. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((done) => {
    const abort = () => {
      clearTimeout(timer);
      done();
    };
    // The listener goes when the timer fires: one per poll would pile up on the long-lived signal.
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", abort);
      done();
    }, ms);
    signal.addEventListener("abort", abort, { once: true });
  });
}
