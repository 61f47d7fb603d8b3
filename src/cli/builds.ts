/**
 * The commands that come back to a build by its id, and the builder list: `fast-build follow`,
 * `status`, `logs`, `cancel` and `builders`. They go through the same API client, follow loop and
 * rendering as `fast-build dev`; none of them changes a build except `cancel`.
 */
import type { Writable } from "node:stream";
import type { ApiSettings } from "../config/cli.js";
import { ConflictError, TransientError } from "../core/errors.js";
import { ApiClient, buildUrls } from "./apiClient.js";
import {
  EXIT,
  exitCodeForPhase,
  followBuild,
  MAX_FOLLOW_MS,
  MAX_TRANSIENT_FAILURES,
  POLL_INTERVAL_MS,
  pollDelayMs,
  sleep,
  writeJson,
} from "./follow.js";
import type { Output } from "./progress.js";
import { renderBuilders, renderSnapshot, renderWarm } from "./render.js";

export interface BuildCommandRun {
  settings: ApiSettings;
  /** Human lines. */
  out: Output;
  /** Data: `--json` answers and the log text of `logs`. */
  stdout: Writable;
  /** Aborted on Ctrl-C: a following command stops following; the build is left as it is. */
  interrupt: AbortSignal;
  pollIntervalMs?: number;
}

function client(opts: BuildCommandRun): ApiClient {
  return new ApiClient({ baseUrl: opts.settings.apiUrl, apiKey: opts.settings.apiKey });
}

/**
 * `fast-build follow <id>`: the build's log from its start, its phases and the summary; the exit
 * code is its final phase's, as for `dev`. Ctrl-C stops following only: the build belongs to
 * whoever started it, and `fast-build cancel` is one command away.
 */
export async function runFollow(buildId: string, opts: BuildCommandRun): Promise<number> {
  const { out } = opts;
  const urls = buildUrls(buildId);
  out.line(`following build ${buildId} (Ctrl-C stops following; the build goes on)`);
  try {
    const final = await followBuild(client(opts), urls, {
      apiUrl: opts.settings.apiUrl,
      out,
      interrupt: opts.interrupt,
      ...(opts.pollIntervalMs !== undefined ? { pollIntervalMs: opts.pollIntervalMs } : {}),
    });
    out.stop();
    if (final === "interrupted") {
      out.line(
        `stopped following; build ${buildId} goes on (\`fast-build follow ${buildId}\` to come back, \`fast-build cancel ${buildId}\` to stop it)`,
      );
      return EXIT.interrupted;
    }
    // The command joined a running build: the snapshot's summary shows the build's own time.
    for (const line of renderSnapshot(final, new Date())) out.line(line);
    return exitCodeForPhase(final.phase);
  } finally {
    out.stop();
  }
}

/** `fast-build status <id> [--json]`: one snapshot; exits 0 whatever the build's phase. */
export async function runStatus(buildId: string, json: boolean, opts: BuildCommandRun): Promise<number> {
  const status = await client(opts).status(buildUrls(buildId).statusUrl);
  if (json) writeJson(opts.stdout, status);
  else for (const line of renderSnapshot(status, new Date())) opts.out.line(line);
  return EXIT.ok;
}

/**
 * `fast-build logs <id> [--follow]`: the log text as the builder wrote it, on stdout (so it can
 * be piped or saved), paging by `nextOffset`. With `--follow`, polls until the server says the
 * log is complete (the build has ended and every byte has been read).
 */
export async function runLogs(buildId: string, follow: boolean, opts: BuildCommandRun): Promise<number> {
  const api = client(opts);
  const { logsUrl, statusUrl } = buildUrls(buildId);
  const interval = opts.pollIntervalMs ?? POLL_INTERVAL_MS;
  const deadline = Date.now() + MAX_FOLLOW_MS;
  let offset = 0;
  let failures = 0;
  for (;;) {
    try {
      const chunk = await api.logs(logsUrl, offset);
      if (chunk.text) opts.stdout.write(chunk.text);
      const moved = chunk.nextOffset > offset;
      offset = chunk.nextOffset;
      failures = 0;
      // One answer is capped in size: page on at once while there is more.
      if (moved && offset < chunk.size) continue;
      if (!follow || chunk.complete) break;
    } catch (error) {
      if (!follow || !(error instanceof TransientError) || ++failures > MAX_TRANSIENT_FAILURES) throw error;
      opts.out.status(`API not answering (${error.code}), retrying…`);
    }
    if (opts.interrupt.aborted) return EXIT.interrupted;
    if (Date.now() > deadline) {
      throw new TransientError("gave up following the log: the build has not ended in time", {
        code: "FollowTimeout",
        hint: `The build may still be running: ${opts.settings.apiUrl}${statusUrl}`,
      });
    }
    await sleep(pollDelayMs(interval, failures), opts.interrupt);
    if (opts.interrupt.aborted) return EXIT.interrupted;
  }
  opts.out.stop();
  if (offset === 0) opts.out.line(`build ${buildId} has no log (yet): the builder has not written to it`);
  return EXIT.ok;
}

/**
 * `fast-build cancel <id>`: asks the orchestration to stop the build. Exits 0 when the cancel was
 * requested and also when the build had already ended (409): either way it is not running, which
 * is what the caller wants, so a script can cancel without first asking whether it still runs.
 */
export async function runCancel(buildId: string, opts: BuildCommandRun): Promise<number> {
  try {
    await client(opts).cancel(buildUrls(buildId).cancelUrl, "cancelled with `fast-build cancel`");
  } catch (error) {
    if (!(error instanceof ConflictError && error.code === "BuildEnded")) throw error;
    opts.out.line(`build ${buildId} has already ended: nothing to cancel (${error.message})`);
    return EXIT.ok;
  }
  opts.out.line(
    `build ${buildId}: cancel requested; the builder stops and the build ends as cancelled (watch it: \`fast-build follow ${buildId}\`)`,
  );
  return EXIT.ok;
}

/** `fast-build builders [--json]`: every builder VM as a table, or the API's JSON. */
export async function runBuilders(json: boolean, opts: BuildCommandRun): Promise<number> {
  const builders = await client(opts).builders();
  if (json) writeJson(opts.stdout, builders);
  else for (const line of renderBuilders(builders, new Date())) opts.out.line(line);
  return EXIT.ok;
}

/**
 * `fast-build warm <env> [--json]`: asks the API to start the environment's builder now (it does
 * not wait for the VM to be up: the API answers once Azure accepted the start). Exit 0 whether it
 * started it or there was nothing to do; an unknown environment exits 2 (src/cli/run.ts).
 */
export async function runWarm(environment: string, json: boolean, opts: BuildCommandRun): Promise<number> {
  const answer = await client(opts).warm(environment);
  if (json) writeJson(opts.stdout, answer);
  else opts.out.line(renderWarm(answer, new Date()));
  return EXIT.ok;
}
