/**
 * The activities over real gateways: the ARM emulator (the builder VM and its run commands) and
 * Azurite (source and log blobs, the lease table).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfig, type EnvironmentConfig } from "../../src/config/index.js";
import {
  ACTIVITIES,
  type ResolvedEnvironment,
  type StartBuildInput,
} from "../../src/core/activityContract.js";
import { callbackPath } from "../../src/core/buildInput.js";
import { startArmEmulator, type ArmEmulator, type RunCommandRun } from "@fast-build/local-cloud/arm";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { createActivities, createDeps } from "../../src/wiring.js";
import { SUB, testWiring, waitFor } from "../azure/armHelpers.js";

let azurite: Azurite;
let arm: ArmEmulator;
let folder: string;
/** The run commands the "VM" was given, in order. */
const runs: RunCommandRun[] = [];

before(async () => {
  [azurite, arm, folder] = await Promise.all([
    startAzurite(),
    startArmEmulator(),
    mkdtemp(join(tmpdir(), "fb-activities-")),
  ]);
  arm.setRunCommandExecutor((run) => {
    runs.push(run);
    return Promise.resolve({ exitCode: 0 });
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
  const activities = createActivities(
    createDeps({ ...testWiring(arm), config }),
    options.buildScriptPath ? { buildScriptPath: options.buildScriptPath } : {},
  );
  const call = (name: string, input: unknown): Promise<unknown> => {
    const handler = activities.get(name);
    assert.ok(handler, `activity ${name} is registered`);
    return handler(input);
  };
  return { env, config, call };
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
  it("reads a missing builder script again on the next build instead of keeping the failure", async () => {
    const scriptPath = join(folder, "build.sh");
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
