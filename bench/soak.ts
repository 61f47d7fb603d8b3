/**
 * `npm run soak`: many builds, several at a time across two environments, through the whole product
 * on the local cloud (the local Functions host and its durable engine, as `npm run sim` starts them),
 * while the ARM emulator fails a share of requests as Azure does — 429 with Retry-After, 500, 503,
 * reset connections, replies lost after the request was carried out — and VM starts end
 * `AllocationFailed`. The builder "VM" is a fast fake script (bench/soak/vm.ts).
 *
 * With `--crash-restarts N` the host's durable engine crashes N times at seeded moments mid-run and
 * comes back after `--crash-down-ms`, its orchestrations resuming from their histories
 * (bench/soak/crash.ts); meanwhile the API answers 503.
 *
 * It prints what issue 15 asks a soak to show, beside the goal: succeeded / failed by reason / stuck,
 * scripts run per build, overlapping scripts on one VM, run commands and leases left, requests and
 * the fault share, the crashes and what became of the builds they cut, the makespan and the spread
 * of build times.
 *
 * Durable timers run on the driver's virtual clock, with `--timer-real-ms` of real time before each
 * fires (the client's upload must fit in it: README, Reliability): backoffs of minutes take a
 * fraction of a second. Leases and the API use real time.
 */
import { randomBytes, createHash } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ComputeManagementClient } from "@azure/arm-compute";
import {
  FAULT_CODES,
  HTTP_FAULT_KINDS,
  startArmEmulator,
  type ArmEmulator,
  type VmRef,
} from "@fast-build/local-cloud/arm";
import { startAzurite } from "@fast-build/local-cloud/azurite";
import { startRegistry } from "@fast-build/local-cloud/registry";
import { uploadFileToSas } from "../src/azure/storageUpload.js";
import { TableLeaseStore } from "../src/azure/tables.js";
import { ApiClient } from "../src/cli/apiClient.js";
import { MAX_TRANSIENT_FAILURES, pollDelayMs } from "../src/cli/follow.js";
import type { BuildStatus, StartBuildResponse } from "../src/core/api.js";
import { builderKey } from "../src/core/buildInput.js";
import { describeError, TransientError } from "../src/core/errors.js";
import { LocalDurableEngine } from "@fast-build/local-cloud/durable/localEngine";
import { startFunctionApp } from "../sim/functionApp.js";
import { crashMoments, runCrashes, startFrontDoor, type CrashRecord } from "./soak/crash.js";
import { parseSoakOptions, SoakUsage, type SoakOptions } from "./soak/options.js";
import { overlaps, soakVm } from "./soak/vm.js";

const SUBSCRIPTION = "00000000-0000-0000-0000-00000000500a";
const RESOURCE_GROUP = "rg-fast-build-soak";
const IMAGE_REPOSITORY = "soak/app";
const ENVIRONMENTS = ["blue", "green"] as const;
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed-out"]);
/** Codes a build may fail with when Azure's transient faults outlast every retry (a reset: the SDK's ECONNRESET). */
const TRANSIENT_CODES = new Set<string>([...Object.values(FAULT_CODES), "AllocationFailed", "ECONNRESET"]);
const STATUS_POLL_MS = 200;

interface BuildOutcome {
  buildId: string;
  environment: string;
  /** The last status read; `undefined` when the build never started. */
  status: BuildStatus | undefined;
  /** Not terminal within the stuck limit. */
  stuck: boolean;
  /** Why the client could not start or follow it. */
  clientError?: string;
  elapsedMs: number;
  /** Real ms from startBuild's answer to sourceComplete's (the upload), when it got that far. */
  uploadMs?: number;
}

/** Requests the soak's client sent again because the API answered 503 while the host was down. */
let clientRetries = 0;

let options: SoakOptions;
try {
  options = parseSoakOptions(process.argv.slice(2), process.env);
} catch (error) {
  if (!(error instanceof SoakUsage)) throw error;
  console.error(error.message);
  process.exit(2);
}

// Kept after the run (gitignored, like the simulation's): the function app's log is there.
const scratch = join(import.meta.dirname, "..", ".sim", "soak");
await rm(scratch, { recursive: true, force: true });
await mkdir(scratch, { recursive: true });
const [azurite, arm, registry] = await Promise.all([
  startAzurite(),
  startArmEmulator({ vmStartMs: 500, provisioningMs: 20, revisionReadyMs: 100, runCommandFlushMs: 100 }),
  startRegistry({ storageDir: join(scratch, "registry") }),
]);
const vm = soakVm(registry, IMAGE_REPOSITORY, options.scriptMs);
arm.setRunCommandExecutor(vm.executor);
const vmRef = (environment: string): VmRef => ({
  subscriptionId: SUBSCRIPTION,
  resourceGroup: RESOURCE_GROUP,
  vmName: `builder-${environment}`,
});
const environments: Record<string, unknown> = {};
for (const name of ENVIRONMENTS) {
  arm.addVm(vmRef(name), { powerState: "deallocated" });
  arm.addContainerApp(
    { subscriptionId: SUBSCRIPTION, resourceGroup: RESOURCE_GROUP, appName: `app-${name}` },
    {
      containers: [{ name: "app", image: `${registry.host}/${IMAGE_REPOSITORY}:initial` }],
      revisionSuffix: "initial",
    },
  );
  environments[name] = {
    subscriptionId: SUBSCRIPTION,
    resourceGroup: RESOURCE_GROUP,
    builderVm: vmRef(name).vmName,
    registry: registry.host,
    imageRepository: IMAGE_REPOSITORY,
    containerApp: `app-${name}`,
    containerName: "app",
    binaryName: "app",
  };
}
const functionKey = randomBytes(18).toString("base64url");
const host = await startFunctionApp(azurite, arm, {
  environments,
  functionKey,
  logFile: join(scratch, "functions.log"),
  taskHub: "fastbuildsoak",
  ...(options.sdkRetries ? {} : { armRetry: { maxRetries: 0 } }),
  clock: { kind: "virtual", realDelayMs: options.timerRealMs },
});
if (!(host.engine instanceof LocalDurableEngine)) throw new Error("the soak needs the local durable engine");
const engine = host.engine;
// The client talks to the public endpoint, which answers 503 while the host is down.
const door = await startFrontDoor(host.url);
const api = new ApiClient({ baseUrl: door.url, apiKey: functionKey });

const perKind = options.faults / HTTP_FAULT_KINDS.length;
arm.setRandomFaults({
  rates: Object.fromEntries(HTTP_FAULT_KINDS.map((kind) => [kind, perKind])),
  seed: options.seed,
  // Resource Manager's own routes (not the audience lookup at /metadata/endpoints).
  path: /^\/subscriptions\//i,
  operations: [
    {
      operation: "start",
      rate: options.allocationFailures,
      error: {
        code: "AllocationFailed",
        message:
          "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.",
      },
    },
  ],
});

console.log(
  `soak: ${options.builds} builds, ${options.concurrency} at a time over ${ENVIRONMENTS.length} environments; ` +
    `${pct(options.faults)} of ARM requests fail (${HTTP_FAULT_KINDS.join(", ")}), ` +
    `${pct(options.allocationFailures)} of VM starts AllocationFailed; SDK retries ${options.sdkRetries ? "on" : "off"}; ` +
    `${options.crashRestarts} crash-restart${options.crashRestarts === 1 ? "" : "s"} ` +
    `(API down ${options.crashDownMs} ms, orchestrations resume ${options.crashResumeLagMs} ms after); ` +
    `${options.timerRealMs} ms real before each durable timer; seed ${options.seed}`,
);

const started = Date.now();
const outcomes: BuildOutcome[] = [];
let next = 0;
const worker = async () => {
  while (next < options.builds) {
    const n = next++;
    outcomes.push(await runBuild(ENVIRONMENTS[n % ENVIRONMENTS.length]!, n));
  }
};
const crashes = runCrashes({
  engine,
  door,
  // Within the first few seconds after the chosen build started: somewhere along a build's steps.
  moments: crashMoments(options.seed, options.crashRestarts, options.builds, 4_000),
  downMs: options.crashDownMs,
  resumeLagMs: options.crashResumeLagMs,
  started,
  buildsStarted: () => next,
  finished: () => outcomes.length === options.builds,
});
await Promise.all(Array.from({ length: Math.min(options.concurrency, options.builds) }, worker));
const makespanMs = Date.now() - started;
const crashRecords = await crashes;

// The end state, read with faults off: what the emulator and the lease table still hold.
arm.clearFaults();
const stats = arm.faultStats();
const compute = new ComputeManagementClient({ getToken: () => armToken(arm) }, SUBSCRIPTION, {
  endpoint: arm.endpoint,
  tlsOptions: { ca: arm.ca },
  retryOptions: { maxRetries: 0 },
});
const leases = new TableLeaseStore({ connectionString: azurite.connectionString, tableName: "builders" });
let commandsLeft = 0;
let leasesLeft = 0;
for (const name of ENVIRONMENTS) {
  for await (const command of compute.virtualMachineRunCommands.listByVirtualMachine(
    RESOURCE_GROUP,
    vmRef(name).vmName,
  )) {
    if (command.name) commandsLeft++;
  }
  if ((await leases.read(builderKey(vmRef(name))))?.record.holder) leasesLeft++;
}

report(outcomes, { makespanMs, commandsLeft, leasesLeft, stats, crashes: crashRecords });

await door.stop().catch(() => undefined);
await host.stop().catch(() => undefined);
await Promise.all([azurite.stop(), arm.stop(), registry.stop()]).catch(() => undefined);
console.log(`the function app's log: ${join(scratch, "functions.log")}`);

/** One build as the CLI does it: start, upload the archive to its SAS, say so, follow to the end. */
async function runBuild(environment: string, n: number): Promise<BuildOutcome> {
  const begin = Date.now();
  const archive = join(scratch, `source-${n}.tar.gz`);
  const bytes = randomBytes(512);
  await writeFile(archive, bytes);
  let buildId = `(build ${n})`;
  let status: BuildStatus | undefined;
  let uploadMs: number | undefined;
  let start: StartBuildResponse | undefined;
  try {
    start = await whileHostDown(() =>
      api.startBuild({
        environment,
        sourceDigest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
        sourceBytes: bytes.length,
        baseKey: createHash("sha256").update("soak").digest("hex"),
      }),
    );
    buildId = start.buildId;
    const answered = Date.now();
    const { upload, sourceCompleteUrl, statusUrl } = start;
    if (!upload) throw new Error("an archive build's answer has no upload URL");
    await uploadFileToSas(archive, upload.url);
    await whileHostDown(() => api.sourceComplete(sourceCompleteUrl));
    uploadMs = Date.now() - answered;
    // Following as the CLI's follow loop does: it rides out transient API failures in a row.
    for (let failures = 0; ;) {
      try {
        status = await api.status(statusUrl);
        failures = 0;
      } catch (error) {
        if (!(error instanceof TransientError) || ++failures > MAX_TRANSIENT_FAILURES) throw error;
      }
      if (status && TERMINAL.has(status.phase)) break;
      if (Date.now() - begin > options.stuckAfterMs)
        return { buildId, environment, status, stuck: true, elapsedMs: Date.now() - begin, uploadMs };
      await sleep(pollDelayMs(STATUS_POLL_MS, failures));
    }
    return { buildId, environment, status, stuck: false, elapsedMs: Date.now() - begin, uploadMs };
  } catch (error) {
    // What the build itself says, for the report (a 409 to "source uploaded" names only the phase).
    if (start) status = await api.status(start.statusUrl).catch(() => status);
    return {
      buildId,
      environment,
      status,
      stuck: false,
      clientError: describeError(error),
      elapsedMs: Date.now() - begin,
      ...(uploadMs !== undefined ? { uploadMs } : {}),
    };
  }
}

/**
 * The CLI's ApiClient does not retry, and the CLI retries only its status polls. The soak's client
 * also sends a start or a "source uploaded" again when the front end answered 503 with its page
 * (`Http503`: the host was down and the request never reached the app, so sending it again cannot
 * start a second build), waiting as the follow loop does between tries.
 */
async function whileHostDown<T>(call: () => Promise<T>): Promise<T> {
  for (let failures = 0; ;) {
    try {
      return await call();
    } catch (error) {
      const hostDown = error instanceof TransientError && error.code === "Http503";
      if (!hostDown || ++failures > MAX_TRANSIENT_FAILURES) throw error;
      clientRetries++;
      await sleep(pollDelayMs(STATUS_POLL_MS, failures));
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function report(
  all: BuildOutcome[],
  end: {
    makespanMs: number;
    commandsLeft: number;
    leasesLeft: number;
    stats: ReturnType<ArmEmulator["faultStats"]>;
    crashes: CrashRecord[];
  },
): void {
  const succeeded = all.filter((b) => b.status?.phase === "succeeded").length;
  const stuck = all.filter((b) => b.stuck).length;
  const failures = all.filter((b) => !b.stuck && b.status?.phase !== "succeeded");
  const reasons = new Map<string, number>();
  let unexplained = 0;
  for (const b of failures) {
    const error = b.status?.error;
    const reason =
      b.clientError && !(b.status && TERMINAL.has(b.status.phase))
        ? `client: ${b.clientError}`
        : `${b.status?.phase ?? "?"} ${error?.code ?? "(no code)"}${error?.hint ? " (hint)" : " (no hint)"}`;
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    if (!error?.hint || !TRANSIENT_CODES.has(error.code)) unexplained++;
  }
  const scripts = new Map<string, number>();
  for (const run of vm.runs) scripts.set(run.buildId, (scripts.get(run.buildId) ?? 0) + 1);
  const perBuild = new Map<number, number>();
  for (const b of all) {
    const count = scripts.get(b.buildId) ?? 0;
    perBuild.set(count, (perBuild.get(count) ?? 0) + 1);
  }
  const twice = all.filter((b) => (scripts.get(b.buildId) ?? 0) > 1).length;
  const overlapping = overlaps(vm.runs);
  const stillRunning = vm.runs.filter((r) => r.endedAt === undefined).length;
  const faulted = Object.values(end.stats.httpFaults).reduce((a, b) => a + b, 0);
  const times = all.map((b) => b.elapsedMs).sort((a, b) => a - b);
  const uploads = all.flatMap((b) => (b.uploadMs !== undefined ? [b.uploadMs] : [])).sort((a, b) => a - b);
  const neverUploaded = all.filter((b) => b.status?.error?.code === "SourceNeverUploaded").length;
  // Every build a crash cut, and what became of it: resumed and finished = a terminal phase.
  const byId = new Map(all.map((b) => [b.buildId, b]));
  const crashed = [...new Set(end.crashes.flatMap((c) => c.inFlight))].map((id) => byId.get(id));
  const finished = crashed.filter((b) => b && !b.stuck && b.status && TERMINAL.has(b.status.phase));
  const crashedSucceeded = finished.filter((b) => b?.status?.phase === "succeeded").length;
  const crashedFailures = new Map<string, number>();
  for (const b of finished) {
    if (b?.status?.phase === "succeeded") continue;
    const reason = `${b?.status?.phase} ${b?.status?.error?.code ?? "(no code)"}`;
    crashedFailures.set(reason, (crashedFailures.get(reason) ?? 0) + 1);
  }

  const line = (label: string, value: string) => console.log(`  ${label.padEnd(22)} ${value}`);
  line("succeeded", String(succeeded));
  line("failed", `${failures.length}${failures.length ? ":" : ""}`);
  for (const [reason, count] of [...reasons].sort((a, b) => b[1] - a[1]))
    console.log(`      ${String(count).padStart(4)} × ${reason}`);
  line("stuck", String(stuck));
  line(
    "scripts per build",
    [...perBuild]
      .sort((a, b) => a[0] - b[0])
      .map(([k, v]) => `${k} script${k === 1 ? "" : "s"}: ${v} builds`)
      .join(", "),
  );
  line("scripts run twice+", `${twice} builds`);
  line("overlaps on one VM", `${overlapping} (scripts still running at the end: ${stillRunning})`);
  line("run commands left", String(end.commandsLeft));
  line("leases left", String(end.leasesLeft));
  line(
    "ARM requests",
    `${end.stats.requests}, ${faulted} faulted (${pct(faulted / Math.max(1, end.stats.requests))}): ` +
      Object.entries(end.stats.httpFaults)
        .map(([k, v]) => `${k} ${v}`)
        .join(", "),
  );
  line(
    "VM operation faults",
    Object.entries(end.stats.operationFaults)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ") || "none",
  );
  if (options.crashRestarts > 0) {
    line(
      "crash-restarts",
      `${end.crashes.length} of ${options.crashRestarts}` +
        (end.crashes.length ? ": " : " (the builds ended first)") +
        end.crashes.map((c) => `at ${seconds(c.atMs)} with ${c.inFlight.length} builds in flight`).join("; "),
    );
    line(
      "crashed builds",
      `${crashed.length}: ${finished.length} resumed and finished (${crashedSucceeded} succeeded` +
        [...crashedFailures].map(([reason, count]) => `, ${count} ${reason}`).join("") +
        `), ${crashed.length - finished.length} did not finish`,
    );
    line(
      "client retries",
      `${clientRetries} (API answered 503 while the host was down: ${door.refused()} requests)`,
    );
  }
  line(
    "source upload",
    `median ${ms(quantile(uploads, 0.5))}, max ${ms(uploads.at(-1) ?? 0)} (${uploads.length} builds; ` +
      `${options.timerRealMs} ms real before each durable timer); SourceNeverUploaded: ${neverUploaded}`,
  );
  line("makespan", `${seconds(end.makespanMs)}`);
  line(
    "build time",
    `median ${seconds(quantile(times, 0.5))}, IQR ${seconds(quantile(times, 0.25))}-${seconds(quantile(times, 0.75))}, ` +
      `min-max ${seconds(times[0] ?? 0)}-${seconds(times.at(-1) ?? 0)} (${times.length} builds)`,
  );
  const goal: [string, boolean][] = [
    ["0 stuck", stuck === 0],
    ["0 scripts run twice", twice === 0],
    ["0 overlaps", overlapping === 0],
    ["0 commands or leases left", end.commandsLeft === 0 && end.leasesLeft === 0],
    ["every failure a transient-exhaustion with a hint", unexplained === 0],
  ];
  console.log("goal (issue 15): 100 builds at 20% faults with SDK retries off →");
  for (const [what, met] of goal) console.log(`  ${met ? "met    " : "NOT MET"} ${what}`);
  if (options.crashRestarts > 0) {
    const met = end.crashes.length > 0 && finished.length === crashed.length;
    console.log(
      `  ${met ? "met    " : "NOT MET"} with crash-restarts, every crashed build resumes and finishes`,
    );
  }
}

function armToken(emulator: ArmEmulator) {
  return fetch(
    `${emulator.identityEndpoint}?resource=${encodeURIComponent("https://management.azure.com")}&api-version=2019-08-01`,
    { headers: { "X-IDENTITY-HEADER": emulator.identityHeader } },
  )
    .then((r) => r.json() as Promise<{ access_token: string; expires_on: string }>)
    .then((body) => ({ token: body.access_token, expiresOnTimestamp: Number(body.expires_on) * 1000 }));
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

function pct(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

function ms(value: number): string {
  return `${Math.round(value)} ms`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
