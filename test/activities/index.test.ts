/**
 * The activities over real gateways: the ARM emulator (the builder VM and its run commands) and
 * Azurite (source and log blobs, the lease table).
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfig, type EnvironmentConfig } from "../../src/config/index.js";
import { EXTRACT_LIMITS } from "../../src/core/extractLimits.js";
import {
  ACTIVITIES,
  type BuildCommandHandle,
  type BuildProgress,
  type ResolvedEnvironment,
  type StartBuildInput,
} from "../../src/core/activityContract.js";
import { callbackPath } from "../../src/core/buildInput.js";
import { contentBlobNames } from "../../src/core/sourceManifest.js";
import { EXIT_CODES, RESULT_LIMITS, truncateText } from "../../src/core/buildResult.js";
import { jsonUtf16Bytes, LOG_TAIL_BUDGET_BYTES, POLL_LOG_TAIL_BUDGET_BYTES } from "../../src/core/status.js";
import { startArmEmulator, type ArmEmulator, type RunCommandRun } from "@fast-build/local-cloud/arm";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { createActivities, createDeps } from "../../src/wiring.js";
import { SUB, testWiring, waitFor } from "../azure/armHelpers.js";

let azurite: Azurite;
let arm: ArmEmulator;
let folder: string;
/** The run commands the "VM" was given, in order. */
const runs: RunCommandRun[] = [];
/** What the "VM" prints for a build id (default: nothing), before it exits with `exitCode`. */
const scripted = new Map<string, { stdout: string; exitCode: number; runUntilStopped?: boolean }>();
const REPO_ROOT = join(import.meta.dirname, "..", "..");

before(async () => {
  [azurite, arm, folder] = await Promise.all([
    startAzurite(),
    startArmEmulator(),
    mkdtemp(join(tmpdir(), "fb-activities-")),
  ]);
  arm.setRunCommandExecutor((run) => {
    runs.push(run);
    const script = scripted.get(run.parameters.FASTBUILD_BUILD_ID ?? "");
    if (script) run.stdout(script.stdout);
    if (script?.runUntilStopped) {
      return new Promise((resolve) => run.signal.addEventListener("abort", () => resolve({ exitCode: 137 })));
    }
    return Promise.resolve({ exitCode: script?.exitCode ?? 0 });
  });
});
after(async () => {
  await Promise.all([
    azurite?.stop(),
    arm?.stop(),
    folder ? rm(folder, { recursive: true, force: true }) : undefined,
  ]);
});

let counter = 0;
function activitiesFor(options: { buildScriptPath?: string; publicBaseUrl?: string } = {}) {
  const n = ++counter;
  const env: EnvironmentConfig = {
    name: `env${n}`,
    subscriptionId: SUB,
    resourceGroup: "rg-build",
    builderVm: `activities-builder${n}`,
    registry: "registry.example.test",
    imageRepository: "team/app",
    containerApp: `app${n}`,
    containerName: "web",
    binaryName: "app",
  };
  arm.addVm(
    { subscriptionId: SUB, resourceGroup: env.resourceGroup, vmName: env.builderVm },
    { powerState: "running" },
  );
  const config = loadConfig({
    FASTBUILD_ENVIRONMENTS: JSON.stringify({ [env.name]: env }),
    AzureWebJobsStorage: azurite.connectionString,
    FASTBUILD_COMPUTE_ENDPOINT: arm.endpoint,
    FASTBUILD_CONTAINERAPPS_ENDPOINT: arm.endpoint,
    ...(options.publicBaseUrl ? { FASTBUILD_PUBLIC_BASE_URL: options.publicBaseUrl } : {}),
  });
  const deps = createDeps({ ...testWiring(arm), config });
  const activities = createActivities(
    deps,
    options.buildScriptPath ? { buildScriptPath: options.buildScriptPath } : {},
  );
  const call = (name: string, input: unknown): Promise<unknown> => {
    const handler = activities.get(name);
    assert.ok(handler, `activity ${name} is registered`);
    return handler(input);
  };
  return { env, config, deps, call };
}

function startInput(buildId: string, environment: ResolvedEnvironment): StartBuildInput {
  return {
    buildId,
    environment,
    sourceDigest: `sha256:${"b".repeat(64)}`,
    baseKey: "c".repeat(64),
    rebuildBase: false,
    callbackToken: "callback-token-for-the-test",
    timeoutSeconds: 600,
  };
}

/** The run command the "VM" got for `buildId` (it starts asynchronously). */
const runFor = (buildId: string) =>
  waitFor(
    () => Promise.resolve(runs.find((run) => run.parameters.FASTBUILD_BUILD_ID === buildId)),
    (run) => run !== undefined,
  );

describe("startBuild activity", () => {
  it("refuses to start beside another build's command that still runs and could not be removed", async () => {
    const { env, call } = activitiesFor();
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;
    // A build whose lease expired while the function app was down: its script still runs.
    scripted.set("build-zombie", { stdout: "", exitCode: 0, runUntilStopped: true });
    await call(ACTIVITIES.startBuild, startInput("build-zombie", environment));
    await runFor("build-zombie");
    arm.inject({
      method: "DELETE",
      path: /\/runCommands\/fb-build-zombie$/i,
      response: { kind: "internalError" },
      times: 5,
    });

    await assert.rejects(
      call(ACTIVITIES.startBuild, startInput("build-next", environment)),
      /the builder still runs command fb-build-zombie \(Running\), which could not be removed/,
    );
    assert.equal(
      runs.some((run) => run.parameters.FASTBUILD_BUILD_ID === "build-next"),
      false,
      "no second build was started on the builder",
    );
    arm.clearFaults();
  });

  it("reads a missing builder script again on the next build instead of keeping the failure", async () => {
    const kit = join(folder, "script-later");
    await mkdir(kit);
    await writeFile(join(kit, "safe_extract.py"), "print('extractor')\n");
    const scriptPath = join(kit, "build.sh");
    const { env, call } = activitiesFor({ buildScriptPath: scriptPath });
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;

    await assert.rejects(
      call(ACTIVITIES.startBuild, startInput("build-script-1", environment)),
      /BuildScriptMissing/,
    );
    await writeFile(scriptPath, "#!/bin/sh\necho deployed at last\n");
    await call(ACTIVITIES.startBuild, startInput("build-script-2", environment));

    assert.equal((await runFor("build-script-2"))?.script, "#!/bin/sh\necho deployed at last\n");
  });

  it("reads a missing extractor again on the next build, and refuses to start a build without it", async () => {
    const kit = join(folder, "extractor-later");
    await mkdir(kit);
    await writeFile(join(kit, "build.sh"), "#!/bin/sh\n");
    const { env, call } = activitiesFor({ buildScriptPath: join(kit, "build.sh") });
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;

    await assert.rejects(
      call(ACTIVITIES.startBuild, startInput("build-extractor-1", environment)),
      /ExtractorMissing/,
    );
    assert.equal(
      runs.some((run) => run.parameters.FASTBUILD_BUILD_ID === "build-extractor-1"),
      false,
    );
    await writeFile(join(kit, "safe_extract.py"), "print('extractor')\n");
    await call(ACTIVITIES.startBuild, startInput("build-extractor-2", environment));

    const run = await runFor("build-extractor-2");
    assert.equal(
      Buffer.from(run?.parameters.FASTBUILD_EXTRACTOR_B64 ?? "", "base64").toString(),
      "print('extractor')\n",
    );
  });

  it("sends the deployed safe_extract.py as a shell-safe parameter, keeping the command far below 256 KB", async () => {
    const { env, call } = activitiesFor({ publicBaseUrl: "https://fb.example.test" });
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;

    await call(ACTIVITIES.startBuild, startInput("build-kit-1", environment));

    const run = await runFor("build-kit-1");
    const encoded = run?.parameters.FASTBUILD_EXTRACTOR_B64 ?? "";
    assert.match(encoded, /^[A-Za-z0-9+/]+={0,2}$/, "no character a shell would read, no line breaks");
    assert.deepEqual(
      Buffer.from(encoded, "base64"),
      await readFile(join(REPO_ROOT, "dockerfiles", "safe_extract.py")),
    );
    assert.equal(run?.script, await readFile(join(REPO_ROOT, "dockerfiles", "build.sh"), "utf8"));
    // The action Run Command writes every parameter into the script: count it all.
    const values = { ...run?.parameters, ...run?.protectedParameters };
    const total =
      Buffer.byteLength(run?.script ?? "") +
      Object.entries(values).reduce((sum, [k, v]) => sum + Buffer.byteLength(`export ${k}=${v}\n`), 0);
    // Run Command takes an inline script of up to 256 KB; the budget leaves half of it free.
    assert.ok(total < 128 * 1024, `${total} bytes`);
  });

  it("sends every extraction limit, as fixed in the orchestration's history", async () => {
    const { env, config, call } = activitiesFor({});
    const fixed = { ...config.builds.extractLimits, maxBytes: 12345, maxLinkDepth: 7 };
    config.builds.extractLimits = fixed;
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;
    config.builds.extractLimits = { ...fixed, maxBytes: 1, maxLinkDepth: 1 };

    await call(ACTIVITIES.startBuild, startInput("build-limits-1", environment));

    const run = await runFor("build-limits-1");
    for (const limit of EXTRACT_LIMITS) {
      assert.equal(run?.parameters[limit.variable], String(fixed[limit.key]), limit.variable);
    }
  });

  it("sends the current extraction limits for a build whose history has none (started before them)", async () => {
    const { env, config, call } = activitiesFor({});
    const { extractLimits: _none, ...environment } = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;

    await call(ACTIVITIES.startBuild, startInput("build-limits-2", environment));

    const run = await runFor("build-limits-2");
    assert.equal(run?.parameters.FASTBUILD_EXTRACT_MAX_BYTES, String(config.builds.extractLimits.maxBytes));
  });

  it("takes the source limit and callback URL from the environment in its input, not the live settings", async () => {
    const { env, config, call } = activitiesFor({ publicBaseUrl: "https://fb.example.test" });
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;
    // The settings change after the orchestration fixed them in its history.
    const limit = config.builds.maxUploadBytes;
    config.builds.maxUploadBytes = 1;
    config.publicBaseUrl = "https://changed.example.test";

    await call(ACTIVITIES.startBuild, startInput("build-fixed-1", environment));

    const run = await runFor("build-fixed-1");
    assert.equal(run?.parameters.FASTBUILD_SOURCE_MAX_BYTES, String(limit));
    assert.equal(
      run?.protectedParameters.FASTBUILD_CALLBACK_URL,
      `https://fb.example.test${callbackPath("build-fixed-1")}`,
    );
  });
});

describe("startBuild activity for a manifest build", () => {
  it("sends a read URL of the build's plan as FASTBUILD_SOURCE_PLAN_URL instead of FASTBUILD_SOURCE_URL", async () => {
    const { env, deps, call } = activitiesFor({});
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;
    const plan = { version: 1, sourceDigest: `sha256:${"b".repeat(64)}`, manifest: "{}", packs: [] };
    await deps.contents.writeJson(contentBlobNames.plan("build-plan-1"), plan, undefined);

    await call(ACTIVITIES.startBuild, {
      ...startInput("build-plan-1", environment),
      sourceFormat: "manifest",
    });

    const run = await runFor("build-plan-1");
    assert.equal(run?.protectedParameters.FASTBUILD_SOURCE_URL, undefined);
    assert.equal(
      run?.parameters.FASTBUILD_SOURCE_PLAN_URL,
      undefined,
      "a SAS URL is never a public parameter",
    );
    const url = run?.protectedParameters.FASTBUILD_SOURCE_PLAN_URL ?? "";
    assert.match(url, /sig=/);
    assert.equal(
      new URL(url).pathname,
      `/devstoreaccount1/source-content/${contentBlobNames.plan("build-plan-1")}`,
    );
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), plan);
    assert.equal(
      (await fetch(url, { method: "PUT", body: "x", headers: { "x-ms-blob-type": "BlockBlob" } })).status,
      403,
    );
  });

  it("sends FASTBUILD_SOURCE_URL, as before, for an archive build", async () => {
    const { env, call } = activitiesFor({});
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;
    await call(ACTIVITIES.startBuild, startInput("build-archive-1", environment));
    const run = await runFor("build-archive-1");
    assert.match(
      run?.protectedParameters.FASTBUILD_SOURCE_URL ?? "",
      /build-archive-1\/source\.tar\.gz\?.*sig=/,
    );
    assert.equal(run?.protectedParameters.FASTBUILD_SOURCE_PLAN_URL, undefined);
  });
});

describe("readBuild activity", () => {
  it("finds a failed build's result in an instance view its long output filled, and leaves out the cut line", async () => {
    const { env, call } = activitiesFor();
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;
    const buildId = "build-full-view";
    const result = {
      fastbuild: "result",
      version: 1,
      buildId,
      status: "failed",
      exitReason: "app-build",
      exitCode: EXIT_CODES.appBuild,
      failedStep: "app",
      stepExitCode: 101,
      message: "the app build failed (exit 1): see the log tail",
      skipped: false,
      timings: { app: 1200 },
    };
    const noise = Array.from({ length: 100 }, (_, i) => `error[E0425]: line ${i} ${"x".repeat(300)}`);
    scripted.set(buildId, {
      stdout: `${noise.join("\n")}\nFAILED: the app build failed\n${JSON.stringify(result)}\n`,
      exitCode: EXIT_CODES.appBuild,
    });
    const handle = (await call(
      ACTIVITIES.startBuild,
      startInput(buildId, environment),
    )) as BuildCommandHandle;

    const progress = await waitFor(
      () => call(ACTIVITIES.readBuild, { vm: environment.vm, handle, buildId }) as Promise<BuildProgress>,
      (p) => p.executionState !== "Running" && p.executionState !== "Pending",
    );

    assert.deepEqual(progress.result, result);
    assert.equal(progress.exitCode, EXIT_CODES.appBuild);
    const tail = progress.logTail ?? [];
    assert.equal(tail.at(-1), "FAILED: the app build failed");
    assert.ok(tail.length > 1);
    assert.ok(jsonUtf16Bytes(tail) <= LOG_TAIL_BUDGET_BYTES);
    // Every line shown is whole (cut only to the line limit): the view's first (cut) line is not among them.
    const shown = noise.map((line) => truncateText(line, RESULT_LIMITS.logLineChars));
    assert.ok(
      tail.slice(0, -1).every((line) => shown.includes(line)),
      tail.join("\n"),
    );
  });

  it("sends the log tail only when it changed: a read naming the current tail's digest gets none", async () => {
    const { env, call } = activitiesFor();
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;
    const buildId = "build-tail-digest";
    scripted.set(buildId, { stdout: "compiling a\ncompiling b\n", exitCode: 0, runUntilStopped: true });
    const handle = (await call(
      ACTIVITIES.startBuild,
      startInput(buildId, environment),
    )) as BuildCommandHandle;
    const read = (logTailDigest?: string) =>
      call(ACTIVITIES.readBuild, {
        vm: environment.vm,
        handle,
        buildId,
        ...(logTailDigest ? { logTailDigest } : {}),
      }) as Promise<BuildProgress>;
    const first = await waitFor(read, (p) => (p.logTail?.length ?? 0) === 2);

    const again = await read(first.logTailDigest);
    const stale = await read("not-the-digest");

    assert.deepEqual(first.logTail, ["compiling a", "compiling b"]);
    assert.equal(again.logTail, undefined);
    assert.equal(again.logTailDigest, first.logTailDigest);
    assert.deepEqual(stale.logTail, first.logTail);
    await call(ACTIVITIES.cancelBuild, { vm: environment.vm, handle });
  });

  it("keeps a running build's log tail within the poll budget however its lines escape", async () => {
    const { env, call } = activitiesFor();
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;
    const buildId = "build-tail-escapes";
    const lines = Array.from({ length: 12 }, (_, i) => `${i} ${'"\t\u0001'.repeat(100)}`);
    scripted.set(buildId, { stdout: `${lines.join("\n")}\n`, exitCode: 0, runUntilStopped: true });
    const handle = (await call(
      ACTIVITIES.startBuild,
      startInput(buildId, environment),
    )) as BuildCommandHandle;

    const progress = await waitFor(
      () => call(ACTIVITIES.readBuild, { vm: environment.vm, handle, buildId }) as Promise<BuildProgress>,
      (p) => (p.logTail?.length ?? 0) > 0,
    );

    const tail = progress.logTail ?? [];
    assert.equal(progress.executionState, "Running");
    assert.ok(jsonUtf16Bytes(tail) <= POLL_LOG_TAIL_BUDGET_BYTES, `${jsonUtf16Bytes(tail)} bytes`);
    assert.ok((tail.at(-1) ?? "").startsWith(`11 "\t\u0001`), "the newest line is kept");
    await call(ACTIVITIES.cancelBuild, { vm: environment.vm, handle });
  });
});

describe("startBuild activity with the project file's settings", () => {
  it("sends them as run-command parameters, the project's binary over the environment's", async () => {
    const { env, call } = activitiesFor();
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;
    await call(ACTIVITIES.startBuild, {
      ...startInput("build-project-1", environment),
      project: {
        binary: "server",
        features: ["metrics", "serde/derive"],
        profile: "dist",
        target: "x86_64-unknown-linux-musl",
        port: 8080,
        dockerfiles: { base: "docker/Dockerfile.base", app: "docker/Dockerfile.app" },
      },
    } satisfies StartBuildInput);
    const run = await runFor("build-project-1");
    assert.deepEqual(
      Object.fromEntries(
        [
          "FASTBUILD_BINARY_NAME",
          "FASTBUILD_CARGO_FEATURES",
          "FASTBUILD_CARGO_PROFILE",
          "FASTBUILD_CARGO_TARGET",
          "FASTBUILD_PORT",
          "FASTBUILD_DOCKERFILE_BASE",
          "FASTBUILD_DOCKERFILE_APP",
        ].map((name) => [name, run?.parameters[name]]),
      ),
      {
        FASTBUILD_BINARY_NAME: "server",
        FASTBUILD_CARGO_FEATURES: "metrics,serde/derive",
        FASTBUILD_CARGO_PROFILE: "dist",
        FASTBUILD_CARGO_TARGET: "x86_64-unknown-linux-musl",
        FASTBUILD_PORT: "8080",
        FASTBUILD_DOCKERFILE_BASE: "docker/Dockerfile.base",
        FASTBUILD_DOCKERFILE_APP: "docker/Dockerfile.app",
      },
    );
    // Values travel as parameters only, never in the script's text.
    assert.doesNotMatch(run?.script ?? "", /docker\/Dockerfile\.base|serde\/derive/);
  });

  it("builds a start input from before the project file as before: the environment's binary, nothing else", async () => {
    const { env, call } = activitiesFor();
    const environment = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;
    await call(ACTIVITIES.startBuild, startInput("build-project-2", environment));
    const run = await runFor("build-project-2");
    assert.equal(run?.parameters.FASTBUILD_BINARY_NAME, "app");
    for (const name of ["FASTBUILD_PORT", "FASTBUILD_DOCKERFILE_BASE", "FASTBUILD_CARGO_PROFILE"]) {
      assert.equal(run?.parameters[name], undefined, name);
    }
  });

  it("needs no binary for a project with its own Dockerfiles, and refuses a build with none for the built-in ones", async () => {
    const { env, call } = activitiesFor();
    const resolved = (await call(ACTIVITIES.resolveEnvironment, {
      environment: env.name,
    })) as ResolvedEnvironment;
    const { binaryName: _dropped, ...environment } = resolved;
    const dockerfiles = { base: "Dockerfile.base", app: "Dockerfile.app" };
    await call(ACTIVITIES.startBuild, {
      ...startInput("build-project-3", environment),
      project: { dockerfiles },
    });
    assert.equal((await runFor("build-project-3"))?.parameters.FASTBUILD_BINARY_NAME, undefined);
    await assert.rejects(
      call(ACTIVITIES.startBuild, { ...startInput("build-project-4", environment), project: { port: 80 } }),
      /BinaryNameMissing|no binary to build/,
    );
    assert.equal(
      runs.some((run) => run.parameters.FASTBUILD_BUILD_ID === "build-project-4"),
      false,
    );
  });
});
