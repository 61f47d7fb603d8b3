/**
 * The soak's host crashes: the local durable engine goes down at seeded moments while builds run,
 * stays down a while and comes back, its orchestrations resuming from their histories
 * (`LocalDurableEngine.crash()` / `restart()`). Meanwhile the function app's front end answers 503,
 * as Azure's does while a Functions host restarts ({@link startFrontDoor}).
 *
 * The API answers again before the orchestrations resume, as in Azure: HTTP triggers serve as soon
 * as the host is up, while the durable dispatcher first has to take the task hub's partition leases
 * back (the Azure Storage provider's lease interval is 30 s). The lag here (`resumeLagMs`) outlasts
 * the client's longest wait between two tries, so the client's "source uploaded" sent again after
 * the outage lands before a resumed build's source wait (a virtual timer) can lapse.
 */
import { forward } from "../forward.js";
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { LocalDurableEngine } from "@fast-build/local-cloud/durable/localEngine";
import { TERMINAL_STATUSES } from "@fast-build/local-cloud/durable/engine";

/**
 * The public endpoint in front of the local host: passes requests through while the host is up;
 * while it is down, answers `503` with a plain page and no `Retry-After` (what a client sees from
 * Azure's front end when the host is not running), so the request never reaches the app.
 */
export interface FrontDoor {
  url: string;
  /** Stops letting requests through and resolves once those already inside have been answered. */
  close(): Promise<void>;
  open(): void;
  /** Requests answered 503 because the host was down. */
  refused(): number;
  stop(): Promise<void>;
}

export async function startFrontDoor(target: string): Promise<FrontDoor> {
  const upstream = new URL(target);
  let down = false;
  let refused = 0;
  let inside = 0;
  let drained: (() => void) | undefined;
  const leave = () => {
    inside--;
    if (inside === 0) drained?.();
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (down) {
      refused++;
      req.resume();
      res.writeHead(503, { "content-type": "text/html" });
      res.end("<html><body><h1>Function host is not running.</h1></body></html>");
      return;
    }
    inside++;
    res.once("close", leave);
    forward(req, res, upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close() {
      down = true;
      return inside === 0 ? Promise.resolve() : new Promise<void>((resolve) => (drained = resolve));
    },
    open() {
      down = false;
      drained = undefined;
    },
    refused: () => refused,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** When one crash comes: once this many builds have been started, after this much more real time. */
export interface CrashMoment {
  afterStarted: number;
  delayMs: number;
}

/** `count` crash moments for a run of `builds`, the same for the same seed. */
export function crashMoments(seed: number, count: number, builds: number, maxDelayMs: number): CrashMoment[] {
  return Array.from({ length: count }, (_, i) => ({
    afterStarted: 1 + Math.floor(seededShare(seed, `crash ${i} at`) * builds),
    delayMs: Math.round(seededShare(seed, `crash ${i} delay`) * maxDelayMs),
  })).sort((a, b) => a.afterStarted - b.afterStarted || a.delayMs - b.delayMs);
}

/** A share in [0, 1) drawn from the seed and a label (no generator state to share between uses). */
function seededShare(seed: number, label: string): number {
  return createHash("sha256").update(`${seed}:${label}`).digest().readUInt32BE(0) / 2 ** 32;
}

export interface CrashRecord {
  /** Real ms since the soak started. */
  atMs: number;
  /** Instances (build ids) that had not ended when the host went down. */
  inFlight: string[];
  /** The API answered 503 this long. */
  downMs: number;
  /** Then the orchestrations resumed this much later. */
  resumeLagMs: number;
}

export interface CrashRun {
  engine: LocalDurableEngine;
  door: FrontDoor;
  moments: CrashMoment[];
  downMs: number;
  resumeLagMs: number;
  started: number;
  /** Builds the client has started so far. */
  buildsStarted: () => number;
  /** True once every build has ended (crashes still to come are skipped). */
  finished: () => boolean;
}

/** Crashes and restarts the host at each moment; resolves with what each crash found. */
export async function runCrashes(run: CrashRun): Promise<CrashRecord[]> {
  const records: CrashRecord[] = [];
  for (const moment of run.moments) {
    await until(() => run.buildsStarted() >= moment.afterStarted || run.finished());
    await sleep(moment.delayMs);
    // Mid-run: only while some orchestration has not ended.
    await until(async () => run.finished() || (await inFlight(run.engine)).length > 0);
    if (run.finished()) break;
    // Requests already inside finish first: the local engine would start an instance that a
    // startBuild in flight hands it after the crash as if the host were up.
    await run.door.close();
    const atMs = Date.now() - run.started;
    const ids = await inFlight(run.engine);
    await run.engine.crash();
    await sleep(run.downMs);
    run.door.open();
    await sleep(run.resumeLagMs);
    run.engine.restart();
    records.push({ atMs, inFlight: ids, downMs: run.downMs, resumeLagMs: run.resumeLagMs });
  }
  return records;
}

async function inFlight(engine: LocalDurableEngine): Promise<string[]> {
  return (await engine.listInstances())
    .filter((s) => !TERMINAL_STATUSES.has(s.runtimeStatus))
    .map((s) => s.instanceId);
}

async function until(done: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await done())) await sleep(50);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
