/**
 * Send only what changed (issue 10, item 4): on a generated 2,000-file Rust workspace in git
 * (bench/archive.bench.ts generateRustWorkspace) with one more line of one .rs file changed before
 * every run (a different line each time, so each run has exactly one content the store lacks), two
 * ways of sending the tree ALTERNATE round after round through the real `fast-build dev --no-follow`
 * (as installed: `npm run build`, then dist/cli/main.js in a fresh `node`) against the local function
 * app (Azurite, the ARM emulator, the local host and durable engine):
 *
 *   - candidate: the default, the manifest's change from the last one this API accepted (the CLI's
 *     cache is warm) and only the contents the store lacks, in packs;
 *   - baseline:  `--archive`, the whole tree as one tar.gz (the full upload).
 *
 * The instruments sit at the protocol boundaries; nothing in src/ is changed or stubbed:
 *
 *   bytes sent     every byte of every request the CLI sends, request line and headers included
 *                  (re-serialised from what Node parsed, so within a few bytes of the wire), bodies
 *                  counted as they pass: to the API through a pass-through proxy in front of the
 *                  function app, to storage through a forward proxy the CLI's storage SDK is pointed
 *                  at with HTTP_PROXY (the SDK's own proxy policy; the CLI's fetch to the API ignores
 *                  it on Node 20). A run whose storage uploads did not pass the forward proxy fails,
 *                  so a bypass cannot flatter either side.                           goal ≤ 0.01×
 *   upload phase   POST /api/builds reaching the API proxy → the answer to POST …/source leaving it
 *                  (the start with the API's plan of what to send, the uploads, the API's check of
 *                  what arrived), timed at the proxy, not from the CLI's output: the CLI prints no
 *                  timings, "build … started" is written only after the start's answer, and a piped
 *                  output adds its own delay. The hashing (candidate) and archiving (baseline) before
 *                  the start are outside it; the command's wall time, printed too, has them.
 *                                                                                     goal ≤ 0.2×
 *
 * A first build (an empty store and no CLI cache: the whole manifest and every content) is measured
 * once beside a first archive, for the record (not part of the goals). The builder never runs a
 * script: its run command waits until the build is cancelled, which the bench does after every run
 * (waiting for the end, so the lease is free for the next), so only the source's journey is timed.
 *
 * A developer reaches Azure over an uplink, never over loopback, where sending 2.6 MiB costs almost
 * nothing and the upload phase would be only the API's own work on each side. So every request
 * body the CLI sends (both proxies, one shared link) is paced at `BENCH_UPLINK_MBIT` Mbit/s,
 * default 20 (a common office or home upload); headers, answers and the function app's own storage
 * traffic stay at loopback speed, and no latency is added. `BENCH_UPLINK_MBIT=0`: plain loopback.
 *
 * The API proxy and the CLI runner are like bench/orchestration.bench.ts's, not imported from it:
 * that file runs its bench at import (no main guard) and records less (counts, not bytes or times);
 * bench/forward.ts's pipe has no place for the uplink's pacing, hence `relay` here.
 *
 * `npm run bench -- source`; `BENCH_ROUNDS=N` changes the rounds (default 5).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, request, type IncomingMessage, type ServerResponse } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Transform } from "node:stream";
import { startArmEmulator, type RunCommandExecutor } from "@fast-build/local-cloud/arm";
import { startAzurite } from "@fast-build/local-cloud/azurite";
import { startRegistry } from "@fast-build/local-cloud/registry";
import type { BuildStatus } from "../src/core/api.js";
import { startFunctionApp } from "../sim/functionApp.js";
import { alternate, printRatio, printSpread, spread, type Spread } from "./alternate.js";
import { generateRustWorkspace } from "./archive.bench.js";

const REPO_ROOT = resolve(import.meta.dirname, "..");
const FILES = 2_000;
const GOALS = { bytes: 0.01, uploadPhase: 0.2 } as const;
const DEFAULT_UPLINK_MBIT = 20;
const UPLINK = uplinkOf(process.env.BENCH_UPLINK_MBIT);
const SUBSCRIPTION = "00000000-0000-0000-0000-00000000f00d";
const ENVIRONMENT = {
  subscriptionId: SUBSCRIPTION,
  resourceGroup: "rg-fast-build-bench",
  builderVm: "builder",
  imageRepository: "bench/app",
  containerApp: "app",
  containerName: "app",
  binaryName: "app",
} as const;

/** One request as a proxy saw it. */
interface Recorded {
  to: "api" | "storage";
  method: string;
  /** The path without its query (a SAS token is no kind). */
  path: string;
  /** `comp=block` / `comp=blocklist` for storage, else "". */
  comp: string;
  status: number;
  headerBytes: number;
  bodyBytes: number;
  startedAt: number;
  endedAt: number;
}

/** What one `fast-build dev` run sent, as the proxies saw it. */
interface RunFigures {
  apiBytes: number;
  storageBytes: number;
  bodyBytes: number;
  uploadPhaseMs: number;
  /** Within the upload phase: the start's answer, the storage PUTs, the source report's answer. */
  startMs: number;
  storageMs: number;
  sourceCompleteMs: number;
  wallMs: number;
  kinds: Map<string, number>;
  /** The CLI's own line about what it sent ("uploaded 1 of 2003 contents (…)", "archived …"). */
  said: string;
}

await run("npm", ["run", "--silent", "build"], REPO_ROOT);
const CLI_ENTRY = join(REPO_ROOT, "dist", "cli", "main.js");

const scratch = await mkdtemp(join(tmpdir(), "fb-bench-source-"));
const cleanups: Array<() => Promise<unknown>> = [];
try {
  const [azurite, arm, registry] = await Promise.all([
    startAzurite(),
    startArmEmulator(),
    startRegistry({ storageDir: join(scratch, "registry") }),
  ]);
  cleanups.push(
    () => azurite.stop(),
    () => arm.stop(),
    () => registry.stop(),
  );
  arm.setRunCommandExecutor(waitsForCancel);
  arm.addVm(
    { subscriptionId: SUBSCRIPTION, resourceGroup: ENVIRONMENT.resourceGroup, vmName: ENVIRONMENT.builderVm },
    { powerState: "running" },
  );
  arm.addContainerApp(
    {
      subscriptionId: SUBSCRIPTION,
      resourceGroup: ENVIRONMENT.resourceGroup,
      appName: ENVIRONMENT.containerApp,
    },
    { containers: [{ name: ENVIRONMENT.containerName, image: `${registry.host}/bench/app:old` }] },
  );
  const functionKey = randomBytes(18).toString("base64url");
  const host = await startFunctionApp(azurite, arm, {
    environments: { bench: { ...ENVIRONMENT, registry: registry.host } },
    functionKey,
    logFile: join(scratch, "functions.log"),
    taskHub: "fastbuildsourcebench",
  });
  cleanups.push(() => host.stop());
  const recorded: Recorded[] = [];
  const apiProxy = await listen(createServer(apiProxyHandler(new URL(host.url), recorded)));
  cleanups.push(() => apiProxy.stop());
  const storageProxy = await listen(forwardProxy(recorded));
  cleanups.push(() => storageProxy.stop());

  const workspace = join(scratch, "workspace");
  await generateRustWorkspace(workspace, FILES);
  // A tracked source file with lines enough for every run to change a line of its own.
  const edited = join(workspace, "crates", "crate3", "src", "core", "m4.rs");
  const lines = (await readFile(edited, "utf8")).split("\n");
  let edits = 0;
  const changeOneLine = async () => {
    const at = edits % (lines.length - 1);
    lines[at] = `${lines[at]} // edit ${++edits}`;
    await writeFile(edited, lines.join("\n"));
  };

  const send = async (flags: string[]): Promise<RunFigures> => {
    const from = recorded.length;
    const { wallMs, transcript } = await runCli(
      workspace,
      apiProxy.url,
      storageProxy.url,
      functionKey,
      flags,
    );
    const requests = recorded.slice(from);
    const api = requests.filter((r) => r.to === "api");
    const storage = requests.filter((r) => r.to === "storage");
    const buildId = /^build (\S+) started/m.exec(transcript)?.[1];
    // The first start request: a refused delta (BaseManifestUnknown) and its whole resend both count.
    const start = api.find((r) => r.method === "POST" && r.path === "/api/builds");
    const started = api.findLast((r) => r.method === "POST" && r.path === "/api/builds");
    const done = api.find((r) => r.method === "POST" && r.path === `/api/builds/${buildId}/source`);
    if (!buildId || !start || !started || !done)
      throw new Error(`no start or source report seen:\n${transcript}`);
    if (!storage.some((r) => r.method === "PUT")) {
      throw new Error(`no upload passed the storage proxy (did the SDK bypass HTTP_PROXY?):\n${transcript}`);
    }
    await cancel(host.url, functionKey, buildId);
    const kinds = new Map<string, number>();
    for (const r of requests) kinds.set(kindOf(r), (kinds.get(kindOf(r)) ?? 0) + 1);
    const sum = (rs: Recorded[]) => rs.reduce((total, r) => total + r.headerBytes + r.bodyBytes, 0);
    return {
      apiBytes: sum(api),
      storageBytes: sum(storage),
      bodyBytes: requests.reduce((total, r) => total + r.bodyBytes, 0),
      uploadPhaseMs: done.endedAt - start.startedAt,
      startMs: started.endedAt - start.startedAt,
      storageMs: Math.max(...storage.map((r) => r.endedAt)) - Math.min(...storage.map((r) => r.startedAt)),
      sourceCompleteMs: done.endedAt - done.startedAt,
      wallMs,
      kinds,
      said: /^(uploaded .*|nothing to upload.*|archived \d+ files.*)$/m.exec(transcript)?.[1] ?? "",
    };
  };

  const workspaceNote = `${FILES}-file Rust workspace in git, one line of one .rs file changed before each run`;
  console.log(`${workspaceNote}; the builder's script waits until each build is cancelled`);
  console.log(
    UPLINK
      ? `uplink: ${process.env.BENCH_UPLINK_MBIT ?? DEFAULT_UPLINK_MBIT} Mbit/s (BENCH_UPLINK_MBIT), request bodies paced at the proxies`
      : "uplink: loopback (BENCH_UPLINK_MBIT=0)",
  );
  console.log("first build: an empty store, no CLI cache (the whole manifest and every content), once each");
  await changeOneLine();
  const firstManifest = await send([]);
  await changeOneLine();
  const firstArchive = await send(["--archive"]);
  for (const [label, f] of [
    ["manifest (whole) + every content", firstManifest],
    ["--archive", firstArchive],
  ] as const) {
    console.log(
      `  ${label.padEnd(34)} ${formatBytes(f.apiBytes + f.storageBytes).padStart(10)} sent ` +
        `(API ${formatBytes(f.apiBytes)}, storage ${formatBytes(f.storageBytes)}), upload phase ` +
        `${(f.uploadPhaseMs / 1000).toFixed(2)} s, wall ${(f.wallMs / 1000).toFixed(2)} s; ${kindsLine(f.kinds)}`,
    );
    console.log(`  ${"".padEnd(34)} CLI: ${f.said}`);
  }
  console.log(
    `  ratio first manifest build / archive: bytes ${ratio(firstManifest, firstArchive, total).toFixed(2)}×, ` +
      `upload phase ${ratio(firstManifest, firstArchive, (f) => f.uploadPhaseMs).toFixed(2)}× (informational)`,
  );

  const candidate: RunFigures[] = [];
  const baseline: RunFigures[] = [];
  await alternate(
    [
      {
        label: "candidate: manifest change + missing packs",
        run: async () => {
          await changeOneLine();
          candidate.push(await send([]));
        },
      },
      {
        label: "baseline: the full upload (--archive)",
        run: async () => {
          await changeOneLine();
          baseline.push(await send(["--archive"]));
        },
      },
    ],
    // The first builds above warmed both paths (and the JIT of the host); a run's wall time includes
    // the edit and the cancel, so alternate() only orders the runs here: the figures are the proxies'.
    { rounds: 5, warmUp: false, print: false },
  );

  console.log(`one line changed: ${candidate.length} rounds, alternating`);
  console.log(`  CLI said (candidate, last run): ${candidate.at(-1)?.said}`);
  console.log(`  CLI said (baseline, last run):  ${baseline.at(-1)?.said}`);
  console.log("bytes sent, CLI → API and storage (request lines, headers and bodies)");
  const bytes = both(total);
  printBytes("candidate: manifest change + missing packs", bytes.c);
  printBytes("baseline: the full upload (--archive)", bytes.b);
  printBytes("  candidate, to the API", both((f) => f.apiBytes).c);
  printBytes("  candidate, to storage", both((f) => f.storageBytes).c);
  printBytes("  baseline, to the API", both((f) => f.apiBytes).b);
  printBytes("  baseline, to storage", both((f) => f.storageBytes).b);
  const bytesRatio = printRatio("bytes sent, candidate / baseline", bytes.c, bytes.b, {
    atMost: GOALS.bytes,
  });
  console.log(
    `    (${bytesRatio.toPrecision(2)}×: ${formatBytes(bytes.c.median)} of ${formatBytes(bytes.b.median)})`,
  );
  const bodies = both((f) => f.bodyBytes);
  printRatio("bodies only (no request lines or headers), candidate / baseline", bodies.c, bodies.b);

  console.log("upload phase: POST /api/builds arrives → answer to POST …/source leaves (API proxy)");
  const phase = both((f) => f.uploadPhaseMs);
  printSpread("candidate: manifest change + missing packs", phase.c, "s");
  printSpread("baseline: the full upload (--archive)", phase.b, "s");
  for (const [label, pick] of [
    ["start request (→ its answer)", (f: RunFigures) => f.startMs],
    ["storage uploads (first PUT → last answer)", (f: RunFigures) => f.storageMs],
    ["source report (→ its answer)", (f: RunFigures) => f.sourceCompleteMs],
  ] as const) {
    const s = both(pick);
    printSpread(`  candidate, ${label}`, s.c, "ms");
    printSpread(`  baseline, ${label}`, s.b, "ms");
  }
  printRatio("upload phase, candidate / baseline", phase.c, phase.b, { atMost: GOALS.uploadPhase });

  console.log("command wall time, fast-build dev --no-follow (hashing or archiving, node start: no goal)");
  const wall = both((f) => f.wallMs);
  printSpread("candidate: manifest change + missing packs", wall.c, "s");
  printSpread("baseline: the full upload (--archive)", wall.b, "s");
  printRatio("wall time, candidate / baseline", wall.c, wall.b);

  console.log("requests per run, by kind (medians)");
  const kinds = [...new Set([...candidate, ...baseline].flatMap((f) => [...f.kinds.keys()]))].sort();
  for (const kind of kinds) {
    const s = both((f) => f.kinds.get(kind) ?? 0);
    console.log(
      `  ${kind.padEnd(44)} candidate ${String(s.c.median).padStart(4)}   baseline ${String(s.b.median).padStart(4)}`,
    );
  }
  printSpread("candidate: all requests", both((f) => sumKinds(f)).c, "requests");
  printSpread("baseline: all requests", both((f) => sumKinds(f)).b, "requests");

  function both(pick: (f: RunFigures) => number): { c: Spread; b: Spread } {
    return { c: spread(candidate.map(pick)), b: spread(baseline.map(pick)) };
  }
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
}

function total(f: RunFigures): number {
  return f.apiBytes + f.storageBytes;
}

function ratio(a: RunFigures, b: RunFigures, pick: (f: RunFigures) => number): number {
  return pick(a) / pick(b);
}

function sumKinds(f: RunFigures): number {
  return [...f.kinds.values()].reduce((a, b) => a + b, 0);
}

function kindsLine(kinds: Map<string, number>): string {
  return [...kinds.entries()].map(([kind, n]) => `${n}× ${kind}`).join(", ");
}

/** `API POST /api/builds/{id}/source`, `storage PUT blob?comp=block`… */
function kindOf(r: Recorded): string {
  if (r.to === "api") return `API ${r.method} ${r.path.replace(/^\/api\/builds\/[^/]+/, "/api/builds/{id}")}`;
  return `storage ${r.method} blob${r.comp ? `?comp=${r.comp}` : ""}`;
}

/** printSpread's line, in bytes (alternate.ts's units stop at MB, too coarse for a delta). */
function printBytes(label: string, s: Spread): void {
  console.log(
    `  ${label.padEnd(48)} median ${formatBytes(s.median).padStart(12)}  IQR ${formatBytes(s.q1)} – ` +
      `${formatBytes(s.q3)}  min-max ${formatBytes(s.min)} – ${formatBytes(s.max)}  (${s.n} runs, alternating)`,
  );
}

function formatBytes(bytes: number): string {
  if (bytes < 10_240) return `${bytes.toFixed(0)} B`;
  if (bytes < 10 * 2 ** 20) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}

/** The "VM": a script that runs until the build is cancelled (no timer keeps the process alive). */
function waitsForCancel(...[run]: Parameters<RunCommandExecutor>): ReturnType<RunCommandExecutor> {
  return new Promise((done) => {
    if (run.signal.aborted) done({ exitCode: 137 });
    else run.signal.addEventListener("abort", () => done({ exitCode: 137 }), { once: true });
  });
}

/** The request line and headers as they went over the wire (re-serialised; within a few bytes). */
function headerBytes(req: IncomingMessage): number {
  let bytes = Buffer.byteLength(`${req.method} ${req.url} HTTP/${req.httpVersion}\r\n\r\n`);
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    bytes += Buffer.byteLength(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`);
  }
  return bytes;
}

/** Starts recording one request: its size as it arrives, its status and times as it is answered. */
function record(to: Recorded["to"], req: IncomingMessage, res: ServerResponse, url: URL): Recorded {
  const one: Recorded = {
    to,
    method: req.method ?? "",
    path: url.pathname,
    comp: to === "storage" ? (url.searchParams.get("comp") ?? "") : "",
    status: 0,
    headerBytes: headerBytes(req),
    bodyBytes: 0,
    startedAt: performance.now(),
    endedAt: 0,
  };
  req.on("data", (chunk: Buffer) => (one.bodyBytes += chunk.length));
  res.on("finish", () => {
    one.status = res.statusCode;
    one.endedAt = performance.now();
  });
  return one;
}

/**
 * `BENCH_UPLINK_MBIT=N`: the developer's uplink, N Mbit/s (default 20) shared by every request the
 * CLI sends (both proxies pace the request bodies they pass on; headers and answers go at loopback
 * speed). 0: everything at loopback speed, where sending 2.6 MiB costs almost nothing.
 */
function uplinkOf(setting: string | undefined): (() => Transform) | undefined {
  const mbit = Number(setting ?? DEFAULT_UPLINK_MBIT);
  if (!(mbit > 0)) return undefined;
  let idleAt = 0;
  return () =>
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        const now = performance.now();
        // The chunk's last bit leaves when the link has sent everything before it and then it.
        idleAt = Math.max(now, idleAt) + (chunk.length * 8) / (mbit * 1000);
        setTimeout(() => done(null, chunk), idleAt - now);
      },
    });
}

/** Passes one request on to `target` (through the uplink, when one is set) and its answer back. */
function relay(req: IncomingMessage, res: ServerResponse, target: URL, headers: IncomingMessage["headers"]) {
  const onward = request(
    {
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: `${target.pathname}${target.search}`,
      headers,
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  onward.on("error", () => res.destroy());
  (UPLINK ? req.pipe(UPLINK()) : req).pipe(onward);
}

/** The pass-through proxy in front of the function app: records each request, then passes it on. */
function apiProxyHandler(upstream: URL, recorded: Recorded[]) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const target = new URL(req.url ?? "/", upstream);
    recorded.push(record("api", req, res, target));
    relay(req, res, target, { ...req.headers, host: upstream.host });
  };
}

/**
 * The forward proxy the CLI's storage SDK uses (HTTP_PROXY): a request arrives with an absolute URL
 * (`PUT http://127.0.0.1:…/devstoreaccount1/…`) and is passed on to that host. CONNECT (an https
 * target) is tunnelled and its bytes counted, though Azurite here speaks plain http.
 */
function forwardProxy(recorded: Recorded[]) {
  const server = createServer((req, res) => {
    const target = new URL(req.url ?? "");
    recorded.push(record("storage", req, res, target));
    relay(req, res, target, req.headers);
  });
  server.on("connect", (req: IncomingMessage, client: Socket, head: Buffer) => {
    const [hostname, port] = (req.url ?? "").split(":");
    const one: Recorded = {
      to: "storage",
      method: "CONNECT",
      path: req.url ?? "",
      comp: "",
      status: 200,
      headerBytes: headerBytes(req),
      bodyBytes: head.length,
      startedAt: performance.now(),
      endedAt: 0,
    };
    recorded.push(one);
    const upstream = connect(Number(port), hostname, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      upstream.write(head);
      client.on("data", (chunk: Buffer) => (one.bodyBytes += chunk.length));
      (UPLINK ? client.pipe(UPLINK()) : client).pipe(upstream).pipe(client);
    });
    const end = () => {
      one.endedAt ||= performance.now();
      client.destroy();
      upstream.destroy();
    };
    upstream.on("error", end).on("close", end);
    client.on("error", end).on("close", end);
  });
  return server;
}

async function listen(server: ReturnType<typeof createServer>) {
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** Cancels the build and waits until it has ended, so the next run finds the builder free. */
async function cancel(apiUrl: string, functionKey: string, buildId: string): Promise<void> {
  const headers = { "x-functions-key": functionKey };
  await fetch(`${apiUrl}/api/builds/${buildId}/cancel`, { method: "POST", headers });
  for (;;) {
    const status = (await (
      await fetch(`${apiUrl}/api/builds/${buildId}`, { headers })
    ).json()) as BuildStatus;
    if (status.terminal) return;
    await new Promise((done) => setTimeout(done, 100));
  }
}

/**
 * `fast-build dev --no-follow [flags]` as its own process, its storage requests through the forward
 * proxy (both proxy variables set and NO_PROXY emptied: the SDK reads HTTPS_PROXY first and falls
 * back to the lower-case names), its manifest cache in the bench's scratch folder.
 */
async function runCli(
  workspace: string,
  apiUrl: string,
  proxyUrl: string,
  functionKey: string,
  flags: string[],
) {
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [CLI_ENTRY, "dev", "--env", "bench", "--dir", workspace, "--no-follow", ...flags],
    {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        FASTBUILD_API_URL: apiUrl,
        FASTBUILD_API_KEY: functionKey,
        FASTBUILD_CACHE_DIR: join(scratch, "cli-cache"),
        HTTP_PROXY: proxyUrl,
        HTTPS_PROXY: proxyUrl,
        NO_PROXY: "",
        no_proxy: "",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  // Without --json the progress lines go to stdout; errors to stderr. One transcript of both.
  let transcript = "";
  child.stdout.setEncoding("utf8").on("data", (text: string) => (transcript += text));
  child.stderr.setEncoding("utf8").on("data", (text: string) => (transcript += text));
  const exitCode = await new Promise<number>((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => done(code ?? 1));
  });
  if (exitCode !== 0) throw new Error(`fast-build dev ${flags.join(" ")} exited ${exitCode}:\n${transcript}`);
  return { wallMs: performance.now() - started, transcript };
}

function run(command: string, args: string[], cwd: string): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { cwd, stdio: ["ignore", "ignore", "inherit"] });
    child.once("error", fail);
    child.once("close", (code) =>
      code === 0 ? done() : fail(new Error(`${command} ${args.join(" ")} exited ${code}`)),
    );
  });
}
