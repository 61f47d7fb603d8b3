/**
 * `npm run sim`: the whole product on the built-in local cloud. Everything that runs in Azure runs
 * here unchanged — the function app's registrations (HTTP API, orchestrator, activities), the real
 * gateways over the real SDK clients, dockerfiles/build.sh on the "builder" — and every Azure
 * service is replaced at its protocol boundary:
 *
 *   Storage          → Azurite (blobs: source contents and manifests, build logs; tables: builder records)
 *   Resource Manager → the ARM emulator (VM power, Run Command, Container Apps, managed identity)
 *   Functions host   → the local host (@fast-build/local-cloud/host) + durable engine on durable-functions' replay engine
 *   builder VM       → this machine: the emulator's Run Command executes build.sh with bash, and
 *                      buildah (vfs, chroot) plays Docker, with stand-in Dockerfiles (no Rust image
 *                      can be pulled here)
 *   Container Registry → Debian's docker-registry on loopback, behind an ACR-faithful login server
 *                      (TLS, token exchange) that the function app reads as its identity
 *
 * The developer's side is the real `fast-build dev` command, run as its own process.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Writable } from "node:stream";
import type { BuildStatus } from "../src/core/api.js";
import { localShellExecutor, startArmEmulator, type ContainerAppView } from "@fast-build/local-cloud/arm";
import { startAzurite } from "@fast-build/local-cloud/azurite";
import { prepareLocalBuilder, type LocalBuilder } from "@fast-build/local-cloud/builder";
import { startRegistry } from "@fast-build/local-cloud/registry";
import { startFunctionApp } from "./functionApp.js";
import { prepareStaging, promoteAndRollBack, type PromoteReport } from "./promote.js";
import { compareWarmStarts, type WarmComparison } from "./warm.js";

const REPO_ROOT = resolve(import.meta.dirname, "..");
/** The real build kit: build.sh and safe_extract.py run unchanged on the local "builder". */
const BUILD_KIT_DIR = join(REPO_ROOT, "dockerfiles");
const SUBSCRIPTION = "00000000-0000-0000-0000-00000000f00d";
const ENVIRONMENT = {
  subscriptionId: SUBSCRIPTION,
  resourceGroup: "rg-fast-build-sim",
  builderVm: "builder",
  imageRepository: "hello/app",
  containerApp: "hello",
  containerName: "app",
  binaryName: "hello",
} as const;

export interface SimOptions {
  /** The Cargo workspace to build (default: examples/hello). */
  workspace?: string;
  /** Scratch folder, emptied first (default: .sim/ in the repository). */
  scratch?: string;
  /** Where the simulation narrates (default: stdout). */
  out?: Writable;
  /** Where the `fast-build dev` progress display goes (default: stderr). */
  cliOutput?: Writable;
  /** How long the builder VM takes to start from deallocated (default 3 s, so the overlap shows). */
  vmStartMs?: number;
  /** How long a hibernated builder takes to resume (default a third of `vmStartMs`). */
  vmResumeMs?: number;
  /** Rounds of the first-build-after-warm comparison (sim/warm.ts; default 1, 0 skips it). */
  warmRounds?: number;
}

export interface SimBuild {
  label: string;
  exitCode: number;
  /** The final status `fast-build dev --json` printed. */
  status: BuildStatus | undefined;
  elapsedMs: number;
  /** What the CLI said it sent ("uploaded 1 of 9 contents (…)" or "nothing to upload: …"). */
  sent: string;
}

export interface SimReport {
  builds: SimBuild[];
  app: ContainerAppView | undefined;
  /** What the image now deployed prints when run (buildah run). */
  deployedOutput: string;
  scratch: string;
  /** The promotion to staging and the rollback of sim, after the builds. */
  promote?: PromoteReport;
  /** The first build after warm vs cold (sim/warm.ts), when it ran. */
  warm?: WarmComparison;
}

/** Runs the simulation: three builds of the sample workspace through the whole product. */
export async function runSimulation(options: SimOptions = {}): Promise<SimReport> {
  const out = options.out ?? process.stdout;
  const say = (line = "") => out.write(`${line}\n`);
  const scratch = resolve(options.scratch ?? join(REPO_ROOT, ".sim"));
  await rm(scratch, { recursive: true, force: true });
  await mkdir(scratch, { recursive: true });
  const hostLog = join(scratch, "functions.log");
  const cleanups: Array<() => Promise<unknown>> = [];

  try {
    say("fast-build simulation: the whole product on the built-in local cloud");
    const [azurite, arm, registry] = await Promise.all([
      startAzurite(),
      startArmEmulator({
        vmStartMs: options.vmStartMs ?? 3000,
        vmResumeMs: options.vmResumeMs ?? Math.round((options.vmStartMs ?? 3000) / 3),
        revisionReadyMs: 1500,
        provisioningMs: 200,
      }),
      startRegistry({ storageDir: join(scratch, "registry") }),
    ]);
    cleanups.push(
      () => azurite.stop(),
      () => arm.stop(),
      () => registry.stop(),
    );
    say(`  storage            Azurite ${azurite.blobEndpoint}`);
    say(`  resource manager   ARM emulator ${arm.endpoint}`);
    say(`  container registry ${registry.url} (login server ${registry.loginUrl})`);

    const builder = await prepareLocalBuilder(join(scratch, "builder"), registry, {
      toolchain: ["sim/toolchain:1"],
      runtime: "sim/runtime:1",
    });
    // The "VM": Run Command runs the real build.sh (sent with each build) with bash on this machine.
    arm.setRunCommandExecutor(localShellExecutor({ cwd: BUILD_KIT_DIR, env: builder.env }));
    arm.addVm(vmRef(), { powerState: "deallocated" });
    arm.addContainerApp(appRef(), {
      containers: [{ name: ENVIRONMENT.containerName, image: builder.images.runtime }],
      revisionSuffix: "initial",
    });
    say(`  builder VM         ${ENVIRONMENT.builderVm} (deallocated; buildah plays Docker)`);
    const staging = await prepareStaging(scratch, arm, {
      registry,
      subscriptionId: SUBSCRIPTION,
      resourceGroup: ENVIRONMENT.resourceGroup,
      containerName: ENVIRONMENT.containerName,
      initialImage: builder.images.runtime,
    });
    cleanups.push(() => staging.stop());
    say(`  staging            registry ${staging.registry.url}, container app ${staging.appRef.appName}`);

    const functionKey = randomBytes(18).toString("base64url");
    const host = await startFunctionApp(azurite, arm, {
      environments: {
        sim: { ...ENVIRONMENT, registry: registry.host, ...staging.simSettings },
        ...staging.environments,
      },
      functionKey,
      logFile: hostLog,
      taskHub: "fastbuildsim",
    });
    cleanups.push(() => host.stop());
    say(`  function app       ${host.url}/api (log: ${hostLog})`);

    const workspace = join(scratch, "workspace");
    await cp(options.workspace ?? join(REPO_ROOT, "examples", "hello"), workspace, { recursive: true });
    await git(workspace, "init", "-q", "-b", "main");
    await git(workspace, "add", "-A");
    await git(workspace, "commit", "-qm", "sample");

    const builds: SimBuild[] = [];
    const cli = {
      url: host.url,
      functionKey,
      output: options.cliOutput ?? process.stderr,
      // The CLI's own cache (the last manifest sent): builds 2 and 3 send only their change.
      cacheDir: join(scratch, "cli-cache"),
    };
    const step = async (label: string) => {
      say();
      say(`== ${label}`);
      const build = await runCli(workspace, cli);
      builds.push({ label, ...build });
      say(
        `   → exit ${build.exitCode}, ${build.status?.phase ?? "no status"} in ${seconds(build.elapsedMs)}`,
      );
      say(`   → sent: ${build.sent || "?"}`);
      say(`   → ${deployText(build.status)}`);
    };

    await step("build 1: first build (builds the dependency base image, then the app)");
    const main = join(workspace, "src", "main.rs");
    await writeFile(main, (await readFile(main, "utf8")).replace("hello from fast-build", "hello again"));
    await git(workspace, "commit", "-qam", "change the greeting");
    await step("build 2: a source change (reuses the base, builds only the app layer)");
    await step(
      "build 3: nothing changed (the registry has this source digest: skipped; the app already runs it: nothing to deploy)",
    );

    const app = arm.getContainerApp(appRef());
    const image = app?.images[ENVIRONMENT.containerName] ?? "";
    const deployedOutput = await runImage(builder, image);
    say();
    say("== result");
    for (const build of builds) {
      const s = build.status;
      const cache = s?.cache ? (s.cache.skipped ? "skipped" : `base ${s.cache.base}`) : "-";
      say(
        `   ${seconds(build.elapsedMs).padStart(6)}  ${(s?.phase ?? "?").padEnd(9)} ${cache.padEnd(9)} ${build.label}`,
      );
    }
    // Deploys are digest-pinned: the app runs exactly the bytes that were built.
    say(`   container app ${ENVIRONMENT.containerApp}: ${image}`);
    say(`   latest ready revision: ${app?.latestReadyRevisionName ?? "none"}`);
    say(`   the deployed image says: ${deployedOutput.trim()}`);
    const promote = await promoteAndRollBack({ say, cli, arm, staging });
    const warm =
      options.warmRounds === 0
        ? undefined
        : await compareWarmStarts({
            arm,
            vm: vmRef(),
            environment: "sim",
            repoRoot: REPO_ROOT,
            cli,
            rounds: options.warmRounds,
            say,
            // Its CLI output goes nowhere: the developer's display is the three builds' above.
            dev: () =>
              runCli(workspace, { ...cli, output: new Writable({ write: (_c, _e, done) => done() }) }),
            change: async (label) => {
              await writeFile(
                main,
                (await readFile(main, "utf8")).replace(/hello[^"]*"/, `hello (${label})"`),
              );
              await git(workspace, "commit", "-qam", label);
            },
          });
    return { builds, app, deployedOutput, scratch, promote, ...(warm ? { warm } : {}) };
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
}

function vmRef() {
  return {
    subscriptionId: SUBSCRIPTION,
    resourceGroup: ENVIRONMENT.resourceGroup,
    vmName: ENVIRONMENT.builderVm,
  };
}

function appRef() {
  return {
    subscriptionId: SUBSCRIPTION,
    resourceGroup: ENVIRONMENT.resourceGroup,
    appName: ENVIRONMENT.containerApp,
  };
}

/** Runs `fast-build dev --json` as the developer would, as its own process. */
async function runCli(
  workspace: string,
  cli: { url: string; functionKey: string; output: Writable; cacheDir: string },
): Promise<Omit<SimBuild, "label">> {
  const started = Date.now();
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(REPO_ROOT, "src", "cli", "main.ts"),
      "dev",
      "--env",
      "sim",
      "--dir",
      workspace,
      "--json",
    ],
    {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        FASTBUILD_API_URL: cli.url,
        FASTBUILD_API_KEY: cli.functionKey,
        FASTBUILD_CACHE_DIR: cli.cacheDir,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  child.stderr.pipe(cli.output, { end: false });
  const exitCode = await new Promise<number>((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => done(code ?? 1));
  });
  let status: BuildStatus | undefined;
  try {
    status = JSON.parse(stdout) as BuildStatus;
  } catch {
    status = undefined;
  }
  const sent = /^(?:uploaded|nothing to upload)[^\n]*/m.exec(stderr)?.[0] ?? "";
  return { exitCode, status, elapsedMs: Date.now() - started, sent };
}

/** Pulls the deployed image back from the registry and runs its entrypoint (what the app would run). */
async function runImage(builder: LocalBuilder, image: string): Promise<string> {
  if (!image) return "";
  const container = (await builder.buildah("from", "--tls-verify=false", "-q", image)).trim();
  try {
    return await builder.buildah("run", "--isolation", "chroot", container, "--", "/usr/local/bin/app");
  } finally {
    await builder.buildah("rm", container).catch(() => undefined);
  }
}

function git(cwd: string, ...args: string[]): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn("git", ["-c", "user.name=sim", "-c", "user.email=sim@example.invalid", ...args], {
      cwd,
      stdio: "ignore",
    });
    child.once("error", fail);
    child.once("close", (code) =>
      code === 0 ? done() : fail(new Error(`git ${args.join(" ")} exited ${code}`)),
    );
  });
}

/** What a build's deploy step did, for the narration. */
function deployText(status: BuildStatus | undefined): string {
  const revision = status?.revision?.name ?? "none";
  if (!status?.deployment) return `not deployed (revision ${revision} keeps serving)`;
  return status.deployment.unchanged
    ? `nothing to deploy: the app already runs this image; revision ${revision} keeps serving`
    : `deployed ${status.deployment.reference} as revision ${revision}`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
