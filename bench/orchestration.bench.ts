/**
 * The developer's wait, on the local cloud as `npm run sim` runs it (Azurite, the ARM emulator with
 * a 3 s VM start and 1.5 s revision start, the local Functions host and durable engine, build.sh
 * under buildah, the real `fast-build dev --json` as its own process). After a first build (which
 * starts the builder and builds the base image), two kinds of build ALTERNATE, round after round:
 *
 *   - "change":    a one-line source change (app layer built, a new revision deployed);
 *   - "unchanged": the same tree again (the registry has the image; nothing to deploy);
 *   - "unchanged, deallocated": the same tree with the builder deallocated first (as the idle
 *     timer leaves it): it must not be leased, started or touched at all.
 *
 * Each figure is printed as its median and spread and as now / goal (issue 10's table):
 *
 *   unchanged tree, builder running: command → summary overhead
 *       wall time of `fast-build dev` − the time build.sh ran                        goal ≤ 1.0 s
 *   unchanged tree, builder deallocated: command → summary, and the builder's ARM requests
 *       wall time of `fast-build dev`; requests naming the builder VM must be 0        goal ≤ 1.5 s
 *   orchestration overhead per build (change builds)
 *       build created → ended (its status) − build.sh − emulated VM start − emulated revision start
 *                                                                                     goal ≤ 1.0 s
 *   revision healthy → orchestration sees it
 *       the emulator marks the revision healthy → the deploy step's end in the status  goal ≤ 1 s
 *   build ends → developer's terminal shows it
 *       the status's end → `fast-build dev --json` writes its summary                 goal ≤ 0.3 s
 *   API requests per build (CLI → function app, counted by a pass-through proxy), and ARM requests
 *       per build, so that a faster poll cannot hide a request storm (no goal: watch it).
 *
 * Instruments sit at the protocol boundaries only: a counting HTTP proxy in front of the function
 * app, a timing wrapper around the Run Command executor (the "VM"), and a 20 ms sampler of the
 * emulator's VM and container-app state. Nothing in src/ is changed or stubbed. The CLI runs as
 * installed: `npm run build`'s dist/cli/main.js in a fresh `node` (no tsx transpiling in its wall time).
 *
 * `npm run bench -- orchestration`; `BENCH_ROUNDS=N` changes the rounds (default 5, ~25 s each).
 */
import { forward } from "./forward.js";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { localShellExecutor, startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { startAzurite } from "@fast-build/local-cloud/azurite";
import { prepareLocalBuilder } from "@fast-build/local-cloud/builder";
import type { LocalDurableEngine } from "@fast-build/local-cloud/durable/localEngine";
import { startRegistry } from "@fast-build/local-cloud/registry";
import type { BuildStatus } from "../src/core/api.js";
import { startFunctionApp } from "../sim/functionApp.js";
import { alternate, printGoal, printSpread, spread } from "./alternate.js";
import { breakdown, timeline, type Breakdown } from "./timeline.js";

const REPO_ROOT = resolve(import.meta.dirname, "..");
/** As sim/simulation.ts starts the emulator: these are the "emulated" starts subtracted below. */
const VM_START_MS = 3000;
const REVISION_READY_MS = 1500;
const PROVISIONING_MS = 200;
const SAMPLE_MS = 20;
const GOALS = {
  unchangedOverheadMs: 1000,
  unchangedDeallocatedMs: 1500,
  orchestrationOverheadMs: 1000,
  revisionSeenMs: 1000,
  terminalMs: 300,
} as const;

const SUBSCRIPTION = "00000000-0000-0000-0000-00000000f00d";
const ENVIRONMENT = {
  subscriptionId: SUBSCRIPTION,
  resourceGroup: "rg-fast-build-bench",
  builderVm: "builder",
  imageRepository: "hello/app",
  containerApp: "hello",
  containerName: "app",
  binaryName: "hello",
} as const;
const VM = { subscriptionId: SUBSCRIPTION, resourceGroup: ENVIRONMENT.resourceGroup, vmName: "builder" };
const APP = { subscriptionId: SUBSCRIPTION, resourceGroup: ENVIRONMENT.resourceGroup, appName: "hello" };

/** What one `fast-build dev` run cost, as the instruments saw it. */
interface BuildFigures {
  wallMs: number;
  buildShMs: number;
  vmStarted: boolean;
  /** The emulator marked a new revision healthy at this time (epoch ms). */
  revisionHealthyAt: number | undefined;
  status: BuildStatus;
  /** When the CLI's summary reached its stdout (epoch ms). */
  summaryAt: number;
  apiRequests: number;
  armRequests: number;
  /** ARM requests whose path names the builder VM. */
  builderRequests: number;
  /** Where created → ended went, from the durable history (bench/timeline.ts). */
  parts: Breakdown;
  /** The same as one line per event and ARM request. */
  trace: string[];
}

// The CLI as installed (package.json "bin": dist/cli/main.js), so its wall time is not tsx's.
await run("npm", ["run", "--silent", "build"], REPO_ROOT);
const CLI_ENTRY = join(REPO_ROOT, "dist", "cli", "main.js");

const scratch = await mkdtemp(join(tmpdir(), "fb-bench-orchestration-"));
const cleanups: Array<() => Promise<unknown>> = [];
try {
  // The same local cloud as sim/simulation.ts (kept in step by hand: that file exposes no hooks).
  const [azurite, arm, registry] = await Promise.all([
    startAzurite(),
    startArmEmulator({
      vmStartMs: VM_START_MS,
      revisionReadyMs: REVISION_READY_MS,
      provisioningMs: PROVISIONING_MS,
    }),
    startRegistry({ storageDir: join(scratch, "registry") }),
  ]);
  cleanups.push(
    () => azurite.stop(),
    () => arm.stop(),
    () => registry.stop(),
  );
  const builder = await prepareLocalBuilder(join(scratch, "builder"), registry, {
    toolchain: ["sim/toolchain:1"],
    runtime: "sim/runtime:1",
  });
  const buildSh = timedExecutor(
    arm,
    localShellExecutor({ cwd: join(REPO_ROOT, "dockerfiles"), env: builder.env }),
  );
  arm.addVm(VM, { powerState: "deallocated" });
  arm.addContainerApp(APP, {
    containers: [{ name: ENVIRONMENT.containerName, image: builder.images.runtime }],
    revisionSuffix: "initial",
  });
  const functionKey = randomBytes(18).toString("base64url");
  const host = await startFunctionApp(azurite, arm, {
    environments: { bench: { ...ENVIRONMENT, registry: registry.host } },
    functionKey,
    logFile: join(scratch, "functions.log"),
    taskHub: "fastbuildbench",
  });
  cleanups.push(() => host.stop());
  const proxy = await countingProxy(host.url);
  cleanups.push(() => proxy.stop());
  const sampler = startSampler(arm);
  cleanups.push(() => Promise.resolve(sampler.stop()));

  const workspace = join(scratch, "workspace");
  await cp(join(REPO_ROOT, "examples", "hello"), workspace, { recursive: true });
  await git(workspace, "init", "-q", "-b", "main");
  await git(workspace, "add", "-A");
  await git(workspace, "commit", "-qm", "sample");
  const main = join(workspace, "src", "main.rs");
  const original = await readFile(main, "utf8");

  const build = async (): Promise<BuildFigures> => {
    const requestsBefore = proxy.count();
    const armBefore = arm.requests.length;
    const startsBefore = sampler.vmStarts();
    const since = Date.now();
    buildSh.reset();
    const { wallMs, stdout, summaryAt, exitCode } = await runCli(workspace, proxy.url, functionKey);
    const status = JSON.parse(stdout) as BuildStatus;
    if (exitCode !== 0 || status.phase !== "succeeded") {
      throw new Error(
        `build ${status.buildId} ended ${status.phase} (exit ${exitCode}): ${status.error?.message}`,
      );
    }
    const from = Date.parse(status.timings.createdAt);
    const to = Date.parse(status.timings.endedAt ?? "");
    // The local host's engine is the LocalDurableEngine sim/functionApp.ts makes.
    const history = (host.engine as LocalDurableEngine).history(status.buildId) ?? [];
    return {
      parts: breakdown(history, from, to),
      trace: timeline(history, arm.requests.slice(armBefore), from, to),
      wallMs,
      buildShMs: buildSh.totalMs(),
      vmStarted: sampler.vmStarts() > startsBefore,
      revisionHealthyAt: sampler.healthySince(since),
      status,
      summaryAt,
      apiRequests: proxy.count() - requestsBefore,
      armRequests: arm.requests.length - armBefore,
      builderRequests: arm.requests
        .slice(armBefore)
        .filter((r) => r.path.toLowerCase().includes(`/virtualmachines/${VM.vmName}`)).length,
    };
  };

  console.log("first build (starts the builder, builds the base image): not measured");
  await build();

  let edits = 0;
  const changed: BuildFigures[] = [];
  const unchanged: BuildFigures[] = [];
  const deallocated: BuildFigures[] = [];
  await alternate(
    [
      {
        label: "change: one-line source change, deployed",
        run: async () => {
          await writeFile(main, original.replace("hello from fast-build", `hello #${++edits}`));
          await git(workspace, "commit", "-qam", `edit ${edits}`);
          changed.push(await build());
        },
      },
      { label: "unchanged: the same tree again", run: async () => unchanged.push(await build()) },
      {
        label: "unchanged, builder deallocated first",
        run: async () => {
          // As the idle timer leaves it: deallocated, between builds (the emulator's own state).
          arm.addVm(VM, { powerState: "deallocated" });
          deallocated.push(await build());
        },
      },
    ],
    { rounds: 5, warmUp: false, unit: "s" },
  );

  const all = [...changed, ...unchanged, ...deallocated];
  console.log("unchanged tree, builder running: command → summary");
  printSpread("wall time of fast-build dev", spread(unchanged.map((b) => b.wallMs)), "s");
  printSpread("of which build.sh", spread(unchanged.map((b) => b.buildShMs)), "s");
  const overhead = spread(unchanged.map((b) => b.wallMs - b.buildShMs));
  printSpread("overhead (wall − build.sh)", overhead, "s");
  printGoal("overhead", overhead, { atMost: GOALS.unchangedOverheadMs, unit: "s" });

  console.log("unchanged tree, builder deallocated: command → summary");
  const cold = spread(deallocated.map((b) => b.wallMs));
  printSpread("wall time of fast-build dev", cold, "s");
  printSpread(
    "ARM requests naming the builder VM",
    spread(deallocated.map((b) => b.builderRequests)),
    "requests",
  );
  printSpread(
    "VM starts (counted as requests)",
    spread(deallocated.map((b) => (b.vmStarted ? 1 : 0))),
    "requests",
  );
  printGoal("unchanged, deallocated", cold, { atMost: GOALS.unchangedDeallocatedMs, unit: "s" });

  console.log("orchestration overhead per build (change builds)");
  const total = (b: BuildFigures) =>
    Date.parse(b.status.timings.endedAt ?? "") - Date.parse(b.status.timings.createdAt);
  const emulated = (b: BuildFigures) =>
    (b.vmStarted ? VM_START_MS : 0) +
    (b.revisionHealthyAt === undefined ? 0 : Math.max(REVISION_READY_MS, PROVISIONING_MS));
  printSpread("created → ended (status)", spread(changed.map(total)), "s");
  printSpread("build.sh", spread(changed.map((b) => b.buildShMs)), "s");
  printSpread("emulated VM start + revision start", spread(changed.map(emulated)), "s");
  const orchestration = spread(changed.map((b) => total(b) - b.buildShMs - emulated(b)));
  printSpread("overhead (total − build.sh − emulated)", orchestration, "s");
  printGoal("orchestration overhead", orchestration, { atMost: GOALS.orchestrationOverheadMs, unit: "s" });

  console.log("where created → ended goes (change builds, from the durable history; medians)");
  const keys = [...new Set(changed.flatMap((b) => Object.keys(b.parts)))];
  for (const key of keys) printSpread(key, spread(changed.map((b) => b.parts[key] ?? 0)), "s");
  if (process.env.BENCH_TRACE) {
    console.log("timeline of the last change build (BENCH_TRACE)");
    for (const line of changed.at(-1)?.trace ?? []) console.log(`  ${line}`);
  }

  console.log("revision healthy → orchestration sees it (change builds)");
  const seen = spread(
    changed.map((b) => {
      const deploy = b.status.steps.find((s) => s.name === "deploy");
      if (b.revisionHealthyAt === undefined || !deploy?.endedAt) {
        throw new Error(`build ${b.status.buildId}: no new healthy revision, or no deploy step end`);
      }
      return Date.parse(deploy.endedAt) - b.revisionHealthyAt;
    }),
  );
  printSpread(`healthy (${SAMPLE_MS} ms sampler) → deploy step ends`, seen, "s");
  printGoal("revision seen", seen, { atMost: GOALS.revisionSeenMs, unit: "s" });

  console.log("build ends → developer's terminal shows it (all builds)");
  const shown = spread(all.map((b) => b.summaryAt - Date.parse(b.status.timings.endedAt ?? "")));
  printSpread("status ended → summary on stdout", shown, "s");
  printGoal("terminal lag", shown, { atMost: GOALS.terminalMs, unit: "s" });

  console.log("requests per build (no goal: a faster poll must not buy its speed with a storm)");
  printSpread("CLI → API, change builds", spread(changed.map((b) => b.apiRequests)), "requests");
  printSpread("CLI → API, unchanged builds", spread(unchanged.map((b) => b.apiRequests)), "requests");
  printSpread("function app → ARM, change builds", spread(changed.map((b) => b.armRequests)), "requests");
  printSpread(
    "function app → ARM, unchanged builds",
    spread(unchanged.map((b) => b.armRequests)),
    "requests",
  );
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
}

/** Wraps the "VM" so the bench knows how long build.sh (every Run Command of the build) ran. */
function timedExecutor(arm: ArmEmulator, inner: Parameters<ArmEmulator["setRunCommandExecutor"]>[0]) {
  let total = 0;
  arm.setRunCommandExecutor(async (run) => {
    const start = performance.now();
    try {
      return await inner(run);
    } finally {
      total += performance.now() - start;
    }
  });
  return { reset: () => (total = 0), totalMs: () => total };
}

/**
 * Watches the emulator every {@link SAMPLE_MS}: how often the VM went through `starting`, and when
 * each revision was first seen healthy.
 */
function startSampler(arm: ArmEmulator) {
  let starts = 0;
  let lastPower = arm.getVm(VM)?.powerState;
  const healthyAt = new Map<string, number>();
  for (const r of arm.getContainerApp(APP)?.revisions ?? []) {
    if (r.healthState === "Healthy") healthyAt.set(r.name, 0);
  }
  const timer = setInterval(() => {
    const power = arm.getVm(VM)?.powerState;
    if (power === "starting" && lastPower !== "starting") starts++;
    lastPower = power;
    for (const r of arm.getContainerApp(APP)?.revisions ?? []) {
      if (r.healthState === "Healthy" && !healthyAt.has(r.name)) healthyAt.set(r.name, Date.now());
    }
  }, SAMPLE_MS);
  return {
    vmStarts: () => starts,
    /** When the first revision that turned healthy after `since` did so. */
    healthySince: (since: number) =>
      [...healthyAt.values()].filter((at) => at >= since).sort((a, b) => a - b)[0],
    stop: () => clearInterval(timer),
  };
}

/** A pass-through HTTP proxy in front of the function app that counts the requests it forwards. */
async function countingProxy(target: string) {
  const upstream = new URL(target);
  let count = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    count++;
    forward(req, res, upstream);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    count: () => count,
    stop: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** `fast-build dev --json`, as the developer runs it, as its own process. */
async function runCli(workspace: string, apiUrl: string, functionKey: string) {
  const started = performance.now();
  const child = spawn(process.execPath, [CLI_ENTRY, "dev", "--env", "bench", "--dir", workspace, "--json"], {
    cwd: REPO_ROOT,
    env: { ...process.env, FASTBUILD_API_URL: apiUrl, FASTBUILD_API_KEY: functionKey },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  let summaryAt = 0;
  child.stdout.setEncoding("utf8").on("data", (text: string) => {
    if (!stdout) summaryAt = Date.now();
    stdout += text;
  });
  child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  const exitCode = await new Promise<number>((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => done(code ?? 1));
  });
  if (!stdout) throw new Error(`fast-build dev printed no summary (exit ${exitCode}):\n${stderr}`);
  return { wallMs: performance.now() - started, stdout, summaryAt, exitCode };
}

function git(cwd: string, ...args: string[]): Promise<void> {
  return run("git", ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid", ...args], cwd);
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
