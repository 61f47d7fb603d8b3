/**
 * A project that is not Rust, end to end on the local cloud: examples/node-hello (a Node http
 * service with its own Dockerfile.base / Dockerfile.app, its base keyed on package-lock.json),
 * through `fast-build init` and the real `fast-build dev` process, the function app's own
 * registrations, the orchestrator, the ARM emulator's Run Command running the real build.sh with
 * buildah, and the local registry. The environment has no `binaryName`: the project file says
 * everything the build needs. The local cloud's toolchain image is busybox (nothing can be pulled
 * here), which has no node: the image is inspected, not run.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import type { BuildStatus } from "../../src/core/api.js";
import { localShellExecutor, startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { startAzurite } from "@fast-build/local-cloud/azurite";
import { prepareLocalBuilder, type LocalBuilder } from "@fast-build/local-cloud/builder";
import { startRegistry } from "@fast-build/local-cloud/registry";
import type { LocalHost } from "@fast-build/local-cloud/host";
import { startFunctionApp } from "../../sim/functionApp.js";

const REPO_ROOT = resolve(import.meta.dirname, "..", "..");
const SUBSCRIPTION = "00000000-0000-0000-0000-0000000000de";
const ENVIRONMENT = {
  subscriptionId: SUBSCRIPTION,
  resourceGroup: "rg-node",
  builderVm: "builder",
  imageRepository: "node/hello",
  containerApp: "node-hello",
  containerName: "web",
} as const;
const vm = { subscriptionId: SUBSCRIPTION, resourceGroup: ENVIRONMENT.resourceGroup, vmName: "builder" };
const app = { subscriptionId: SUBSCRIPTION, resourceGroup: ENVIRONMENT.resourceGroup, appName: "node-hello" };

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** The real command as its own process, as a developer runs it. */
function fastBuild(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(REPO_ROOT, "src", "cli", "main.ts"), ...args],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (t: string) => (stdout += t));
  child.stderr.setEncoding("utf8").on("data", (t: string) => (stderr += t));
  return new Promise((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => done({ code: code ?? 1, stdout, stderr }));
  });
}

let scratch: string;
let project: string;
let arm: ArmEmulator;
let builder: LocalBuilder;
let host: LocalHost;
let functionKey: string;
const cleanups: Array<() => Promise<unknown>> = [];

async function dev(): Promise<{ run: CliRun; status: BuildStatus }> {
  const run = await fastBuild(["dev", "--env", "node", "--dir", project, "--json"], {
    FASTBUILD_API_URL: host.url,
    FASTBUILD_API_KEY: functionKey,
    FASTBUILD_CACHE_DIR: join(scratch, "cli-cache"),
  });
  assert.equal(run.code, 0, run.stderr);
  return { run, status: JSON.parse(run.stdout) as BuildStatus };
}

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "fb-node-"));
  const [azurite, emulator, registry] = await Promise.all([
    startAzurite(),
    startArmEmulator({ vmStartMs: 100, revisionReadyMs: 200, provisioningMs: 50 }),
    startRegistry({ storageDir: join(scratch, "registry") }),
  ]);
  arm = emulator;
  cleanups.push(
    () => azurite.stop(),
    () => arm.stop(),
    () => registry.stop(),
  );
  builder = await prepareLocalBuilder(join(scratch, "builder"), registry, {
    toolchain: ["node/toolchain:1"],
    runtime: "node/runtime:1",
  });
  // The machine's stand-in Dockerfiles stay set: the project's own pair wins over them.
  arm.setRunCommandExecutor(localShellExecutor({ cwd: join(REPO_ROOT, "dockerfiles"), env: builder.env }));
  arm.addVm(vm, { powerState: "running" });
  arm.addContainerApp(app, {
    containers: [{ name: ENVIRONMENT.containerName, image: builder.images.runtime }],
    revisionSuffix: "initial",
    // The port the service listens on (fast-build.toml's [container] port): the start checks it.
    targetPort: 3000,
  });
  functionKey = randomBytes(18).toString("base64url");
  host = await startFunctionApp(azurite, arm, {
    environments: { node: { ...ENVIRONMENT, registry: registry.host } },
    functionKey,
    logFile: join(scratch, "functions.log"),
    taskHub: "fastbuildnode",
  });
  cleanups.push(() => host.stop());
  project = join(scratch, "node-hello");
  await cp(join(REPO_ROOT, "examples", "node-hello"), project, { recursive: true });
});
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
});

describe("a Node project with its own Dockerfiles, on the local cloud", () => {
  let first: BuildStatus;
  let second: BuildStatus;
  let third: BuildStatus;

  it("fast-build init detects the Dockerfile pair, the lock files and the port, and writes the example's file", async () => {
    const committed = await readFile(join(project, "fast-build.toml"), "utf8");
    await rm(join(project, "fast-build.toml"));
    const run = await fastBuild(["init", "--dir", project, "--json"]);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { detected: { kind: string; baseKeyFiles: string[] } };
    assert.equal(result.detected.kind, "other");
    assert.deepEqual(result.detected.baseKeyFiles, ["package.json", "package-lock.json"]);
    assert.equal(await readFile(join(project, "fast-build.toml"), "utf8"), committed);
    assert.match(run.stderr, /dockerfiles: {2}the project's own: Dockerfile\.base, Dockerfile\.app/);
  });

  it("builds and deploys it with the project's Dockerfiles, though the environment names no binary", async () => {
    ({ status: first } = await dev());
    assert.equal(first.phase, "succeeded", JSON.stringify(first.error));
    assert.deepEqual([first.cache?.base, first.cache?.skipped], ["miss", false]);
    const log = (await (
      await fetch(`${host.url}/api/builds/${first.buildId}/logs`, {
        headers: { "x-functions-key": functionKey },
      })
    ).json()) as { text: string };
    assert.match(log.text, /using the project's own Dockerfiles: Dockerfile\.base, Dockerfile\.app/);
    assert.match(log.text, /node-hello base: dependencies of package-lock\.json installed/);
    const deployed = arm.getContainerApp(app)?.images[ENVIRONMENT.containerName] ?? "";
    assert.match(deployed, /node\/hello@sha256:/);
  });

  it("the image runs the service on the project file's port", async () => {
    const image = arm.getContainerApp(app)?.images[ENVIRONMENT.containerName] ?? "";
    await builder.buildah("pull", "--tls-verify=false", "-q", image);
    const config = JSON.parse(await builder.buildah("inspect", "--type", "image", image)) as {
      OCIv1: { config: { ExposedPorts?: Record<string, unknown>; Env?: string[]; Cmd?: string[] } };
    };
    assert.deepEqual(Object.keys(config.OCIv1.config.ExposedPorts ?? {}), ["3000/tcp"]);
    assert.ok(config.OCIv1.config.Env?.includes("PORT=3000"), String(config.OCIv1.config.Env));
    assert.deepEqual(config.OCIv1.config.Cmd, ["node", "server.js"]);
    const container = (await builder.buildah("from", "--tls-verify=false", "-q", image)).trim();
    try {
      const server = await builder.buildah(
        "run",
        "--isolation",
        "chroot",
        container,
        "--",
        "cat",
        "/app/server.js",
      );
      assert.match(server, /hello from node/);
    } finally {
      await builder.buildah("rm", container).catch(() => undefined);
    }
  });

  it("a code change reuses the base; a lock file change builds a new one", async () => {
    const server = join(project, "server.js");
    await writeFile(server, (await readFile(server, "utf8")).replace("hello from node", "hello again"));
    ({ status: second } = await dev());
    assert.equal(second.phase, "succeeded", JSON.stringify(second.error));
    assert.deepEqual([second.cache?.base, second.cache?.baseKey], ["hit", first.cache?.baseKey]);

    const lock = join(project, "package-lock.json");
    await writeFile(lock, (await readFile(lock, "utf8")).replace('"requires": true', '"requires": false'));
    ({ status: third } = await dev());
    assert.equal(third.phase, "succeeded", JSON.stringify(third.error));
    assert.equal(third.cache?.base, "miss");
    assert.notEqual(third.cache?.baseKey, first.cache?.baseKey);
  });

  it("refuses a port the app's ingress does not route to before anything runs (exit 2), and a bad project file naming its line", async () => {
    const file = join(project, "fast-build.toml");
    const text = await readFile(file, "utf8");
    const env = {
      FASTBUILD_API_URL: host.url,
      FASTBUILD_API_KEY: functionKey,
      FASTBUILD_CACHE_DIR: join(scratch, "cli-cache"),
    };
    await writeFile(file, text.replace("port = 3000", "port = 4000"));
    const mismatch = await fastBuild(["dev", "--env", "node", "--dir", project], env);
    assert.equal(mismatch.code, 2, mismatch.stderr);
    assert.match(
      mismatch.stderr,
      /sends its traffic to port 3000, but fast-build\.toml's \[container\] port is 4000/,
    );
    assert.doesNotMatch(mismatch.stderr, /^build \S+ started/m);

    await writeFile(file, text.replace("port = 3000", "prot = 3000"));
    const bad = await fastBuild(["dev", "--env", "node", "--dir", project], env);
    assert.equal(bad.code, 2, bad.stderr);
    const line = text.split("\n").findIndex((l) => l.startsWith("port = ")) + 1;
    assert.match(
      bad.stderr,
      new RegExp(`fast-build\\.toml:${line}: container\\.prot: unknown key; fix: did you mean port\\?`),
    );
    await writeFile(file, text);
  });
});
