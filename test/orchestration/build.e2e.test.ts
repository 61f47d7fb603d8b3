/**
 * The build orchestrator end to end: durable-functions' replay engine (local driver, virtual
 * timers), the real activities, real gateways over HTTPS to the ARM emulator, and Azurite for
 * blobs and the lease table. The "VM" is the emulator's run-command executor (support.ts).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createArchive } from "../../src/cli/archive.js";
import { createComputeGateway } from "../../src/azure/compute.js";
import { TableHistoryStore } from "../../src/azure/history.js";
import { createContainerAppsGateway } from "../../src/azure/containerApps.js";

import type { BuildStatus } from "../../src/core/api.js";
import { ACTIVITIES, BUILD_ORCHESTRATOR } from "../../src/core/activityContract.js";
import {
  computeBaseKey,
  KIT_DIR_IN_ARCHIVE,
  recipeFiles,
  RECIPE_DIR_IN_ARCHIVE,
} from "../../src/core/baseKey.js";
import { BUILD_EVENTS, builderKey, sourceBlobName } from "../../src/core/buildInput.js";
import { EXIT_CODES } from "../../src/core/buildResult.js";
import { mutateRecord } from "../../src/core/lease.js";

import { localShellExecutor, startArmEmulator, type RunCommandExecutor } from "@fast-build/local-cloud/arm";

import { LOCAL_DOCKERFILES, prepareLocalBuilder } from "@fast-build/local-cloud/builder";
import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";
import {
  checkReplayPrefixes,
  OrchestrationDriver,
  type ActivityHandler,
} from "@fast-build/local-cloud/durable/driver";
import { HistoryEventType } from "@fast-build/local-cloud/durable/history";

import { buildOrchestrator } from "../../src/orchestration/build.js";
import { createActivities, createDeps } from "../../src/wiring.js";
import { gatewayOptions, SUB, testWiring } from "../azure/armHelpers.js";
import { pushImage } from "../azure/registryImages.js";

import {
  azurite,
  historyOf,
  arm,
  leases,
  images,
  REG,
  DIGEST,
  DIGEST_REF,
  START,
  type Scenario,
  scenario,
  resultLine,
  skippedBuild,
  succeed,
  newInput,
  driverFor,
  runBuild,
  runCommandDeletes,
  assertRunCommandGone,
  appPatches,
  appRef,
  vmRequests,
  runUntilStopped,
  holdLease,
  until,
  useLocalCloud,
  assertReason,
} from "./support.js";

useLocalCloud();

describe("build orchestration end to end", () => {
  for (const schema of ["V1", "V3"] as const) {
    it(`builds and deploys: starts the VM, runs the command, waits for the new revision (${schema})`, async () => {
      const s = scenario();
      arm.setRunCommandExecutor(succeed());
      const input = newInput(s);
      const { status, driver } = await runBuild(s, input, schema, (d) =>
        d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
      );
      assert.equal(status.phase, "succeeded");
      assert.equal(status.image?.reference, `${REG}/team/app:${input.buildId}`);
      assert.equal(status.revision?.healthState, "Healthy");
      assert.match(status.revision?.name ?? "", new RegExp(`^${s.env.containerApp}--b`));
      assert.deepEqual(
        status.steps.map((step) => step.state),
        ["succeeded", "succeeded", "succeeded", "succeeded", "succeeded"],
      );
      assert.equal(arm.getVm(s.vm)?.powerState, "running");
      const app = arm.getContainerApp({
        subscriptionId: SUB,
        resourceGroup: s.env.resourceGroup,
        appName: s.env.containerApp,
      });
      // The app runs the digest the builder pushed, not the (movable) tag.
      assert.equal(app?.images.web, DIGEST_REF);
      assert.deepEqual(status.deployment, {
        reference: DIGEST_REF,
        unchanged: false,
        // The message now also says how traffic got there (single revision mode: Azure moved it).
        message: `container app ${s.env.containerApp} now runs ${DIGEST_REF} in revision ${status.revision?.name} (single revision mode: Azure moved all traffic to it)`,
      });
      const served = app?.revisions.find((r) => r.name === status.revision?.name);
      assert.equal(served?.trafficWeight, 100);
      await assertRunCommandGone(s, input.buildId);
      // Determinism: every prefix of the finished history replays to a prefix of its actions.
      await checkReplayPrefixes(buildOrchestrator, {
        instanceId: input.buildId,
        history: driver.getHistory(),
        input,
        schema,
      });
    });
  }

  it("writes the build's history at its end: who, outcome, each step's time, image, revision, and the builder's start with its size", async () => {
    const s = scenario();
    arm.setRunCommandExecutor(succeed());
    const input = newInput(s, {
      commit: "0123456789abcdef0123456789abcdef01234567",
      branch: "feature/x",
      dirty: true,
      author: { name: "Dev One", email: "dev@example.com" },
    });
    const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
    const record = await historyOf(s, input.buildId, input.environment);
    assert.equal(record?.outcome, "succeeded");
    assert.deepEqual(
      [record?.commit, record?.branch, record?.dirty, record?.author?.name],
      [input.commit, "feature/x", true, "Dev One"],
    );
    assert.deepEqual(Object.keys(record?.phasesMs ?? {}).sort(), [
      "build",
      "builder",
      "deploy",
      "lease",
      "source",
    ]);
    assert.equal(record?.image?.digest, status.image?.digest);
    assert.equal(record?.revision, status.revision?.name);
    assert.equal(record?.builder, s.vm.vmName);
    const power = await new TableHistoryStore({
      connectionString: azurite.connectionString,
      tableName: s.config.history.table,
    }).powerSince(builderKey(s.vm), new Date(0));
    assert.deepEqual(
      power.map((p) => [p.state, p.vmSize]),
      [["started", "Standard_D4s_v5"]],
    );
  });

  describe("deploys only an image the environment's registry confirms for this build (issue 9, item 4)", () => {
    const forged: [string, (buildId: string) => Promise<Record<string, unknown>>, RegExp][] = [
      [
        "an image in another registry",
        () => Promise.resolve({ image: `docker.io/attacker/pwn:latest`, digest: `sha256:${"e".repeat(64)}` }),
        /registry "docker\.io", not the environment's/,
      ],
      [
        "an image in another repository of the same registry",
        async (buildId) => ({
          digest: await pushImage(images.url, "team/other", buildId),
          image: `${REG}/team/other:${buildId}`,
        }),
        /repository "team\/other", not the environment's team\/app/,
      ],
      [
        "a digest the registry does not have for the tag",
        async (buildId) => {
          await pushImage(images.url, "team/app", buildId);
          return { digest: await pushImage(images.url, "team/app", "evil", "evil") };
        },
        /the registry's .*:build-[0-9a-f]+ is sha256:[0-9a-f]{64}, not the reported sha256:/,
      ],
      [
        "a tag the registry does not have",
        () => Promise.resolve({}),
        /the registry has no image tagged .*team\/app:build-/,
      ],
    ];
    for (const [what, result, reason] of forged) {
      it(`fails a build whose result names ${what}, and deploys nothing`, async () => {
        const s = scenario({ powerState: "running" });
        const input = newInput(s);
        const fields = await result(input.buildId);
        // Pushed before the run: the "VM" prints the result at once and pushes nothing itself.
        arm.setRunCommandExecutor(succeed(() => fields, false));
        const patchesBefore = appPatches(s);
        const { status } = await runBuild(s, input, "V3", (d) =>
          d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
        );
        assert.equal(status.phase, "failed");
        assert.equal(status.error?.code, "ForgedResult");
        assert.match(status.error?.message ?? "", reason);
        assert.match(status.error?.hint ?? "", /Only an image the builder pushed to .*team\/app/);
        // Version 6: the build ends before its finished command is retired (that comes after a PATCH).
        assertReason(
          status,
          "ForgedResult",
          /its build command finished; builder \S+ goes back to the queue once the command is retired \(within a minute\)$/,
        );
        assert.equal(appPatches(s), patchesBefore, "the app was not patched");
        assert.equal(arm.getContainerApp(appRef(s))?.images.web, "registry.example.test/team/app:old");
      });
    }
  });

  it("gives the builder back as soon as its command is retired, before the deploy (version 5, kept for its in-flight builds)", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(succeed());
    const input = newInput(s, { orchestratorVersion: 5 });
    const { status, driver } = await runBuild(s, input, "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(status.phase, "succeeded");
    const scheduled = driver
      .getHistory()
      .filter((e) => e.EventType === HistoryEventType.TaskScheduled)
      .map((e) => e.Name);
    const release = scheduled.indexOf(ACTIVITIES.releaseLease);
    assert.ok(release > scheduled.lastIndexOf(ACTIVITIES.cancelBuild), "the command is retired first");
    assert.ok(release < scheduled.indexOf(ACTIVITIES.deployImage), "the lease goes back before the deploy");
    assert.equal(scheduled.filter((name) => name === ACTIVITIES.releaseLease).length, 1);
  });

  it("patches the app first, then retires the command and gives the builder back while the revision starts", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(succeed());
    const input = newInput(s);
    const requestsBefore = s.arm.requests.length;
    const { status, driver } = await runBuild(s, input, "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(status.phase, "succeeded");
    const scheduled = driver
      .getHistory()
      .filter((e) => e.EventType === HistoryEventType.TaskScheduled)
      .map((e) => e.Name);
    const patch = scheduled.indexOf(ACTIVITIES.deployImage);
    const retire = scheduled.lastIndexOf(ACTIVITIES.cancelBuild);
    const release = scheduled.indexOf(ACTIVITIES.releaseLease);
    assert.ok(patch >= 0 && patch < retire, "the app is patched before the command is retired");
    assert.ok(retire < release, "the command is retired before the lease goes back");
    assert.ok(
      release < scheduled.indexOf(ACTIVITIES.readDeployment),
      "the builder is back before the revision is first read",
    );
    assert.equal(scheduled.filter((name) => name === ACTIVITIES.releaseLease).length, 1);
    // The exited command's DELETE is accepted, not followed to its end: no read of its operation.
    const requests = s.arm.requests.slice(requestsBefore);
    const del = requests.findIndex((r) => r.method === "DELETE" && /\/runCommands\//i.test(r.path));
    assert.ok(del >= 0, "the command was deleted");
    const opsAfter = requests.slice(del + 1).filter((r) => /\/operations\//i.test(r.path));
    assert.equal(opsAfter.length, 0, "the delete's operation was not polled");
  });

  it("gives the builder back before waiting its turn behind another build's update of the app", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(succeed());
    // Azure's answer while another update of the app provisions (../shared/azure-recordings/
    // containerapp-2022-put-patch-409.json): top-level code and message, no Retry-After.
    arm.inject({
      method: "PATCH",
      path: new RegExp(`/containerApps/${s.env.containerApp}$`, "i"),
      response: {
        status: 409,
        body: {
          code: "ContainerAppOperationInProgress",
          message: `Cannot modify a container app '${s.env.containerApp}' because there is an active provisioning operation in progress.`,
        },
      },
    });
    const input = newInput(s);
    const { status, driver } = await runBuild(s, input, "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
    const scheduled = driver
      .getHistory()
      .filter((e) => e.EventType === HistoryEventType.TaskScheduled)
      .map((e) => e.Name);
    const patches = scheduled.flatMap((name, i) => (name === ACTIVITIES.deployImage ? [i] : []));
    assert.equal(patches.length, 2, "the PATCH was refused once, then accepted");
    const release = scheduled.indexOf(ACTIVITIES.releaseLease);
    assert.ok(patches[0]! < release && release < patches[1]!, "the builder went back before the retry");
  });

  it("reads only the revision while it starts, and the app once it is healthy (version 6)", async () => {
    // New revisions take 300 ms of real time here: several polls see them starting.
    const slow = await startArmEmulator({ revisionReadyMs: 300 });
    try {
      const s = scenario({ powerState: "running", emulator: slow });
      slow.setRunCommandExecutor(succeed());
      const input = newInput(s);
      const { status, driver } = await runBuild(s, input, "V3", (d) =>
        d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
      );
      assert.equal(status.phase, "succeeded");
      const reads = driver
        .getHistory()
        .filter((e) => e.EventType === HistoryEventType.TaskCompleted && e.Result?.includes('"revision"'))
        .map((e) => JSON.parse(e.Result ?? "{}") as { revision?: { healthState?: string }; app?: unknown });
      assert.ok(reads.length >= 2, `${reads.length} revision reads`);
      for (const read of reads.slice(0, -1)) assert.equal(read.app, undefined, "no app read while it starts");
      assert.equal(reads.at(-1)?.revision?.healthState, "Healthy");
      assert.notEqual(reads.at(-1)?.app, undefined, "the app is read once the revision is healthy");
      const appReads = slow.requests.filter(
        (r) => r.method === "GET" && r.path.toLowerCase().endsWith(`/containerapps/${s.env.containerApp}`),
      );
      // The deploy's own two (image check, then the PATCH's read of the app) and the final one.
      assert.ok(appReads.length <= reads.length, `${appReads.length} app reads for ${reads.length} polls`);
    } finally {
      await slow.stop();
    }
  });

  it("deploys the registry's digest for the tag when the builder reported no digest (never the movable tag)", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(succeed(() => ({ digest: undefined })));
    const input = newInput(s);
    const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
    assert.equal(status.phase, "succeeded");
    assert.equal(arm.getContainerApp(appRef(s))?.images.web, DIGEST_REF);
    assert.equal(status.deployment?.reference, DIGEST_REF);
    assert.equal(status.steps.find((step) => step.name === "deploy")?.state, "succeeded");
  });

  it("does not update an app that already runs the image: a skipped build reports the existing revision", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(succeed());
    const first = await runBuild(s, newInput(s), "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
    assert.equal(first.status.phase, "succeeded");
    const deployed = first.status.revision?.name;
    const patchesBefore = appPatches(s);
    const revisionsBefore = arm.getContainerApp(appRef(s))?.revisions.length;

    // The same source again: the builder finds its image in the registry (same digest).
    arm.setRunCommandExecutor(succeed(skippedBuild(DIGEST)));
    const input = newInput(s);
    const { status, driver } = await runBuild(s, input, "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );

    assert.equal(status.phase, "succeeded");
    assert.equal(status.cache?.skipped, true);
    assert.equal(appPatches(s), patchesBefore, "the app was not patched");
    const app = arm.getContainerApp(appRef(s));
    assert.equal(app?.revisions.length, revisionsBefore, "no revision was created");
    assert.equal(app?.images.web, DIGEST_REF);
    assert.deepEqual(status.revision, {
      name: deployed,
      healthState: "Healthy",
      provisioningState: "Provisioned",
    });
    assert.equal(app?.latestReadyRevisionName, deployed);
    assert.equal(status.steps.find((step) => step.name === "deploy")?.state, "skipped");
    assert.equal(status.deployment?.unchanged, true);
    assert.match(
      status.deployment?.message ?? "",
      new RegExp(`already runs .*@${DIGEST}: nothing to deploy`),
    );
    await checkReplayPrefixes(buildOrchestrator, {
      instanceId: input.buildId,
      history: driver.getHistory(),
      input,
      schema: "V3",
    });
  });

  it("deploys a skipped build whose image is not what the app runs (the app was changed by hand)", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(succeed());
    await runBuild(s, newInput(s), "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
    // Someone points the app at another image in the portal.
    const apps = createContainerAppsGateway(gatewayOptions(arm));
    const { revisionName: byHand } = await apps.updateImage(appRef(s), {
      containerName: "web",
      image: "registry.example.test/team/app:hotfix",
      revisionSuffix: "by-hand",
    });
    await until(() => arm.getContainerApp(appRef(s))?.latestReadyRevisionName === byHand, "ready");
    const patchesBefore = appPatches(s);

    arm.setRunCommandExecutor(succeed(skippedBuild(DIGEST)));
    const input = newInput(s);
    const { status } = await runBuild(s, input, "V1", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));

    assert.equal(status.phase, "succeeded");
    assert.equal(appPatches(s), patchesBefore + 1);
    const app = arm.getContainerApp(appRef(s));
    assert.equal(app?.images.web, DIGEST_REF);
    assert.notEqual(status.revision?.name, byHand);
    assert.equal(app?.latestReadyRevisionName, status.revision?.name, "it waited for its own revision");
    assert.equal(status.revision?.healthState, "Healthy");
    assert.equal(status.steps.find((step) => step.name === "deploy")?.state, "succeeded");
    assert.equal(status.deployment?.unchanged, false);
  });

  it("deploys again when the app has the image only in a revision that failed", async () => {
    const s = scenario({ powerState: "running", imageRepository: "team/unhealthy" });
    const unhealthy = (_id: string, vm: Record<string, string>) => ({
      image: `${REG}/team/unhealthy:src-${(vm.FASTBUILD_SOURCE_DIGEST ?? "").replace(/^sha256:/, "")}`,
    });
    arm.setRunCommandExecutor(succeed(unhealthy));
    const first = await runBuild(s, newInput(s), "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
    assert.equal(first.status.error?.code, "DeployFailed");
    const patchesBefore = appPatches(s);

    // Same digest, and the app's template has it: but its ready revision is still the old one.
    arm.setRunCommandExecutor(succeed((id, vm) => ({ ...unhealthy(id, vm), skipped: true })));
    const { status } = await runBuild(s, newInput(s), "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(appPatches(s), patchesBefore + 1, "a new revision was asked for");
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "DeployFailed");
    assert.equal(arm.getContainerApp(appRef(s))?.latestReadyRevisionName, `${s.env.containerApp}--old`);
  });

  it("passes values as run-command parameters, secrets as protected ones, never in the script text", async () => {
    const s = scenario({ powerState: "running" });
    let seen: Parameters<RunCommandExecutor>[0] | undefined;
    arm.setRunCommandExecutor((run) => {
      seen = run;
      return succeed()(run);
    });
    const input = newInput(s, { commit: "abcdef1", deploy: false });
    const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
    assert.equal(status.phase, "succeeded");
    assert.equal(status.steps.find((step) => step.name === "deploy")?.state, "skipped");
    assert.equal(seen?.parameters.FASTBUILD_BUILD_ID, input.buildId);
    assert.equal(seen?.parameters.FASTBUILD_COMMIT, "abcdef1");
    assert.match(seen?.protectedParameters.FASTBUILD_SOURCE_URL ?? "", /sig=/);
    assert.equal(seen?.script.includes(input.buildId), false);
    assert.equal(JSON.stringify(seen?.parameters).includes("sig="), false);
  });

  it("sends the build's branch and the environment's registry cache switch as run-command parameters", async () => {
    for (const [registryCache, sent] of [
      [undefined, "true"],
      [false, "false"],
    ] as const) {
      const s = scenario({
        powerState: "running",
        ...(registryCache === undefined ? {} : { registryCache }),
      });
      let seen: Parameters<RunCommandExecutor>[0] | undefined;
      arm.setRunCommandExecutor((run) => {
        seen = run;
        return succeed()(run);
      });
      const input = newInput(s, { branch: "feature/New-Thing", deploy: false });
      const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
      assert.equal(status.phase, "succeeded");
      assert.equal(seen?.parameters.FASTBUILD_BRANCH, "feature/New-Thing");
      assert.equal(seen?.parameters.FASTBUILD_REGISTRY_CACHE, sent);
      assert.equal(seen?.script.includes("feature/New-Thing"), false);
    }
  });

  it("uses the completion callback when it arrives (VM already running)", async () => {
    const s = scenario({ powerState: "running" });
    let driver: OrchestrationDriver | undefined;
    arm.setRunCommandExecutor((run) => {
      const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
      driver?.raiseEvent(
        BUILD_EVENTS.buildCompleted,
        JSON.parse(resultLine(buildId, { baseCacheHit: false })),
      );
      // The run command itself never finishes: only the callback can end the wait.
      return new Promise((resolve) => run.signal.addEventListener("abort", () => resolve({ exitCode: 137 })));
    });
    const input = newInput(s, { deploy: false });
    const { status, driver: ran } = await runBuild(s, input, "V3", (d) => {
      driver = d;
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    });
    assert.equal(status.phase, "succeeded");
    assert.equal(status.cache?.base, "miss");
    // The poll timer the callback beat was cancelled, and fired all the same later on (as Azure's
    // do): one more episode, which changed nothing.
    const history = ran.getHistory();
    const callbackAt = history.findIndex(
      (e) => e.EventType === HistoryEventType.EventRaised && e.Name === BUILD_EVENTS.buildCompleted,
    );
    const createdBefore = new Set(
      history
        .slice(0, callbackAt)
        .filter((e) => e.EventType === HistoryEventType.TimerCreated)
        .map((e) => e.EventId),
    );
    assert.ok(
      history
        .slice(callbackAt)
        .some((e) => e.EventType === HistoryEventType.TimerFired && createdBefore.has(e.TimerId ?? -1)),
      "the cancelled poll timer fired after the callback",
    );
    // The script had time to exit after its callback; then its run command was deleted all the same.
    await assertRunCommandGone(s, input.buildId);
  });

  it("retries a VM start that failed with AllocationFailed, then builds", async () => {
    const s = scenario();
    arm.setRunCommandExecutor(succeed());
    arm.inject({
      operation: "start",
      vmName: s.vm.vmName,
      times: 1,
      error: { code: "AllocationFailed", message: "no capacity" },
    });
    const { status } = await runBuild(s, newInput(s, { deploy: false }), "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(status.phase, "succeeded");
    assert.equal(arm.getVm(s.vm)?.powerState, "running");
  });

  it("rides out a storm of 429s from ARM", async () => {
    const s = scenario();
    arm.setRunCommandExecutor(succeed());
    arm.inject({
      path: new RegExp(`/virtualMachines/${s.vm.vmName}`, "i"),
      times: 4,
      response: {
        status: 429,
        headers: { "retry-after": "2" },
        body: { error: { code: "TooManyRequests", message: "slow down" } },
      },
    });
    const { status } = await runBuild(s, newInput(s, { deploy: false }), "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(status.phase, "succeeded");
  });

  it("fails a build whose script exits 1, with the failing step and the log tail", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor((run) => {
      const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
      run.stdout(
        `error[E0425]: cannot find value \`x\` in this scope\n${resultLine(buildId, {
          status: "failed",
          exitReason: "app-build",
          exitCode: 21,
          failedStep: "app",
          image: undefined,
          logTail: ["error[E0425]: cannot find value `x` in this scope"],
        })}\n`,
      );
      return Promise.resolve({ exitCode: 21 });
    });
    const input = newInput(s);
    const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "BuildFailed");
    assert.match(status.error?.message ?? "", /step app/);
    // Published as soon as the result was read, while the finished command is retired.
    assertReason(
      status,
      "BuildFailed",
      /its build command finished; builder \S+ goes back to the queue once the command is retired/,
    );
    assert.deepEqual(status.logTail, ["error[E0425]: cannot find value `x` in this scope"]);
    assert.equal(status.steps.find((step) => step.name === "deploy")?.state, "skipped");
    await assertRunCommandGone(s, input.buildId);
  });

  it("times out a build that runs past its limit and stops the run command", async () => {
    const s = scenario({ powerState: "running", builds: { buildTimeoutMinutes: 1 } });
    arm.setRunCommandExecutor(
      (run) =>
        new Promise((resolve) => run.signal.addEventListener("abort", () => resolve({ exitCode: 137 }))),
    );
    const input = newInput(s);
    const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
    assert.equal(status.phase, "timed-out");
    assertReason(
      status,
      "BuildTimeout",
      /its build command fb-\S+ was deleted, which stops its script; builder \S+ was given back$/,
    );
    assert.ok(runCommandDeletes(input.buildId) >= 1, "the run command was deleted");
  });

  it("cancels mid-build: deletes the run command and releases the lease", async () => {
    const s = scenario({ powerState: "running" });
    let driver: OrchestrationDriver | undefined;
    arm.setRunCommandExecutor((run) => {
      driver?.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "changed my mind" });
      return new Promise((resolve) => run.signal.addEventListener("abort", () => resolve({ exitCode: 137 })));
    });
    const input = newInput(s);
    const { status } = await runBuild(s, input, "V1", (d) => {
      driver = d;
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    });
    assert.equal(status.phase, "cancelled");
    assert.match(status.error?.message ?? "", /changed my mind/);
    assertReason(
      status,
      "Cancelled",
      /its build command fb-\S+ was deleted, which stops its script; builder \S+ was given back$/,
    );
    assert.ok(runCommandDeletes(input.buildId) >= 1, "the run command was deleted");
  });

  it("reports a deploy whose new revision is unhealthy, saying the previous one keeps serving", async () => {
    const s = scenario({ powerState: "running", imageRepository: "team/unhealthy" });
    arm.setRunCommandExecutor(succeed((buildId) => ({ image: `${REG}/team/unhealthy:${buildId}` })));
    const { status } = await runBuild(s, newInput(s), "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "DeployFailed");
    assert.match(status.error?.message ?? "", /previous revision keeps serving/);
    assert.match(status.error?.hint ?? "", /Check the revision's logs/);
    assertReason(
      status,
      "DeployFailed",
      /builder \S+ was given back when its build command finished, before the deploy$/,
    );
    const app = arm.getContainerApp({
      subscriptionId: SUB,
      resourceGroup: s.env.resourceGroup,
      appName: s.env.containerApp,
    });
    assert.equal(app?.latestReadyRevisionName, `${s.env.containerApp}--old`);
    // As in Azure, the app's update operation failed with its revision (ContainerAppOperationError):
    // the build reports that as its own DeployFailed, not as the raw Azure error.
    assert.equal(app?.provisioningState, "Failed");
    assert.doesNotMatch(status.error?.message ?? "", /ContainerAppOperationError/);
  });

  it("in multiple revision mode, moves all traffic to the new revision once it is healthy, and says so", async () => {
    // Multiple mode: Azure leaves traffic where ingress.traffic puts it (here: on the old revision).
    const old = (s: Scenario) => `${s.env.containerApp}--old`;
    const s = scenario({ powerState: "running", app: { activeRevisionsMode: "Multiple" } });
    const pinned = [{ revisionName: old(s), weight: 100 }];
    const t = scenario({ powerState: "running", app: { activeRevisionsMode: "Multiple", traffic: pinned } });
    arm.setRunCommandExecutor(succeed());
    for (const each of [s, t]) {
      const { status } = await runBuild(each, newInput(each), "V3", (d) =>
        d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
      );
      assert.equal(status.phase, "succeeded");
      const app = arm.getContainerApp(appRef(each));
      const weights = Object.fromEntries(app?.revisions.map((r) => [r.name, r.trafficWeight]) ?? []);
      assert.deepEqual(weights, { [old(each)]: 0, [status.revision?.name ?? ""]: 100 });
      assert.equal(
        app?.revisions.find((r) => r.name === old(each))?.active,
        true,
        "Multiple keeps it active",
      );
      assert.match(
        status.deployment?.message ?? "",
        /in revision .* \(multiple revision mode: fast-build moved 100% of traffic to it; earlier revisions stay active\)$/,
      );
    }
  });

  it("in multiple revision mode, leaves traffic alone when the new revision fails", async () => {
    const s = scenario({
      powerState: "running",
      imageRepository: "team/unhealthy",
      app: { activeRevisionsMode: "Multiple" },
    });
    arm.setRunCommandExecutor(succeed((buildId) => ({ image: `${REG}/team/unhealthy:${buildId}` })));
    const patchesBefore = appPatches(s);
    const { status } = await runBuild(s, newInput(s), "V3", (d) =>
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
    );
    assert.equal(status.error?.code, "DeployFailed");
    assert.equal(appPatches(s), patchesBefore + 1, "no traffic PATCH after the image PATCH");
    const app = arm.getContainerApp(appRef(s));
    assert.equal(app?.revisions.find((r) => r.name === `${s.env.containerApp}--old`)?.trafficWeight, 100);
  });

  it("fails with 'source never uploaded' when no upload is reported in time", async () => {
    const s = scenario({ powerState: "running", builds: { sourceTimeoutMinutes: 2 } });
    arm.setRunCommandExecutor(succeed());
    const input = newInput(s);
    const { status } = await runBuild(s, input);
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "SourceNeverUploaded");
    assert.match(status.error?.message ?? "", /source never uploaded/);
    assertReason(status, "SourceNeverUploaded", /no build command was started; builder \S+ was given back$/);
    assert.equal(
      arm.requests.some((r) => r.path.toLowerCase().includes(`fb-${input.buildId}`)),
      false,
      "no build command ran",
    );
  });

  it("fails fast on an unknown environment, taking no lease", async () => {
    const s = scenario({ powerState: "running" });
    const driver = driverFor(s, newInput(s, { environment: "nope" }));
    const instance = await driver.run();
    const status = instance.output as BuildStatus;
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "UnknownEnvironment");
    assert.match(status.error?.hint ?? "", new RegExp(s.env.name));
    assertReason(status, "UnknownEnvironment", /; no builder was used$/);
  });

  it("queues a second build for the same builder and runs it after the first", async () => {
    const s = scenario({ powerState: "running" });
    const runs: { buildId: string; event: "start" | "end" }[] = [];
    arm.setRunCommandExecutor(async (run) => {
      const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
      runs.push({ buildId, event: "start" });
      await new Promise((resolve) => setTimeout(resolve, 150));
      run.stdout(`${resultLine(buildId)}\n`);
      runs.push({ buildId, event: "end" });
      return { exitCode: 0 };
    });
    const first = newInput(s, { deploy: false });
    const second = newInput(s, { deploy: false });
    const a = driverFor(s, first);
    const b = driverFor(s, second);
    a.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    b.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    const runA = a.run();
    // Let the first take the lease before the second asks.
    while (!(await leases.read(builderKey(s.vm)))?.record.holder) await new Promise((r) => setTimeout(r, 5));
    let sawQueued = false;
    const runB = b.run();
    const watch = setInterval(() => {
      const st = b.status().customStatus as BuildStatus | undefined;
      if (st?.queuePosition === 1) sawQueued = true;
    }, 1);
    const [ra, rb] = await Promise.all([runA, runB]);
    clearInterval(watch);
    assert.equal((ra.output as BuildStatus).phase, "succeeded");
    assert.equal((rb.output as BuildStatus).phase, "succeeded");
    assert.ok(sawQueued, "the second build showed its queue position");
    assert.deepEqual(
      runs.map((r) => `${r.buildId === first.buildId ? "A" : "B"}:${r.event}`),
      ["A:start", "A:end", "B:start", "B:end"],
    );
    const record = (await leases.read(builderKey(s.vm)))!.record;
    assert.equal(record.holder, undefined);
    assert.equal(record.generation, 2);
  });

  it("cancels a queued build at once: it leaves the queue and never takes the lease", async () => {
    const s = scenario();
    const holder = `build-ahead-${randomBytes(4).toString("hex")}`;
    const generation = await holdLease(s, holder);
    const input = newInput(s);
    const driver = driverFor(s, input);
    driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    const running = driver.run();
    await until(
      () => (driver.status().customStatus as BuildStatus | undefined)?.queuePosition === 1,
      "the build shows its queue position",
    );
    driver.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "tired of waiting" });
    const instance = await running;

    assert.equal(instance.runtimeStatus, "Completed");
    assert.deepEqual(driver.openTimers(), [], "every losing timer is cancelled");
    const status = instance.output as BuildStatus;
    assert.equal(status.phase, "cancelled");
    assert.equal(status.terminal, true);
    assert.match(status.error?.message ?? "", /tired of waiting/);
    assertReason(
      status,
      "Cancelled",
      /it never held builder \S+ \(it left the builder's queue\) and nothing ran on it$/,
    );
    assert.equal(status.queuePosition, undefined);
    const record = (await leases.read(builderKey(s.vm)))!.record;
    assert.equal(record.holder, holder, "the lease stays with the build ahead");
    assert.equal(record.generation, generation, "the cancelled build never took the lease");
    assert.equal(
      record.queue.some((q) => q.buildId === input.buildId),
      false,
      "the build left the queue",
    );
    // Promptly: once the cancel arrived, no queue poll and no timer was waited for.
    const history = driver.getHistory();
    const cancelledAt = history.findIndex(
      (e) => e.EventType === HistoryEventType.EventRaised && e.Name === BUILD_EVENTS.cancelRequested,
    );
    assert.ok(cancelledAt > 0);
    const after = history.slice(cancelledAt);
    assert.equal(
      after.some((e) => e.EventType === HistoryEventType.TaskScheduled && e.Name === ACTIVITIES.acquireLease),
      false,
    );
    assert.equal(
      after.some((e) => e.EventType === HistoryEventType.TimerFired),
      false,
    );
    assert.equal(vmRequests(s, "POST", /\/start$/i).length, 0, "the builder was not started");
    const rows = await leases.listBuilds(builderKey(s.vm));
    assert.ok(rows.some((row) => row.buildId === input.buildId && row.outcome === "cancelled"));
    await checkReplayPrefixes(buildOrchestrator, { instanceId: input.buildId, history, input, schema: "V3" });
  });

  it("gives the lease straight back, without starting the builder, when a cancel lands while a queued build takes it", async () => {
    const s = scenario();
    const holder = `build-ahead-${randomBytes(4).toString("hex")}`;
    await holdLease(s, holder);
    const input = newInput(s);
    let asks = 0;
    const driver: OrchestrationDriver = driverFor(
      s,
      input,
      "V3",
      (activities) =>
        new Map(
          [...activities].map(([name, handler]): [string, ActivityHandler] => [
            name,
            name !== ACTIVITIES.acquireLease
              ? handler
              : async (...args: Parameters<ActivityHandler>) => {
                  if (++asks === 2) {
                    // The build ahead ends, and the user cancels, while this acquire is on its way.
                    await mutateRecord(leases, builderKey(s.vm), (record) => ({
                      record: { ...record, holder: undefined, leaseExpiresAt: undefined },
                      result: undefined,
                    }));
                    driver.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "never mind" });
                  }
                  return handler(...args);
                },
          ]),
        ),
    );
    driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    const instance = await driver.run();
    const status = instance.output as BuildStatus;
    assert.equal(status.phase, "cancelled");
    assert.match(status.error?.message ?? "", /never mind/);
    assert.deepEqual(driver.openTimers(), []);
    const record = (await leases.read(builderKey(s.vm)))!.record;
    assert.equal(record.holder, undefined, "the lease is released");
    assert.equal(vmRequests(s, "POST", /\/start$/i).length, 0, "the builder was not started");
    assert.equal(arm.getVm(s.vm)?.powerState, "deallocated");
  });

  it("fails a deploy whose revision is not healthy in time, saying the previous revision keeps serving", async () => {
    // An emulator whose new revisions stay Provisioning for a day.
    const slow = await startArmEmulator({ revisionReadyMs: 24 * 3600_000 });
    try {
      const s = scenario({ powerState: "running", emulator: slow, builds: { deployTimeoutMinutes: 2 } });
      slow.setRunCommandExecutor(succeed());
      const input = newInput(s);
      const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
      assert.equal(status.phase, "failed");
      assert.equal(status.error?.code, "DeployTimeout");
      assert.match(
        status.error?.message ?? "",
        /was not healthy within 2 minutes; the previous revision keeps serving/,
      );
      assertReason(
        status,
        "DeployTimeout",
        /builder \S+ was given back when its build command finished, before the deploy$/,
      );
      assert.equal(status.revision?.provisioningState, "Provisioning");
      assert.equal(status.steps.find((step) => step.name === "build")?.state, "succeeded");
      assert.equal(status.steps.find((step) => step.name === "deploy")?.state, "failed");
      const app = slow.getContainerApp({
        subscriptionId: SUB,
        resourceGroup: s.env.resourceGroup,
        appName: s.env.containerApp,
      });
      assert.equal(app?.latestReadyRevisionName, `${s.env.containerApp}--old`);
      await assertRunCommandGone(s, input.buildId);
    } finally {
      await slow.stop();
    }
  });

  for (const [how, schema] of [
    ["cancel", "V1"],
    ["timeout", "V3"],
  ] as const) {
    it(`hybrid profile: on ${how}, deallocates the builder to stop the uncancellable Run Command before releasing the lease`, async () => {
      const s = scenario({
        powerState: "running",
        profile: "2020-09-01-hybrid",
        builds: { buildTimeoutMinutes: 1 },
      });
      let driver: OrchestrationDriver | undefined;
      let scriptStopped = false;
      arm.setRunCommandExecutor(async (run) => {
        const stopped = await runUntilStopped(s, () => {
          if (how === "cancel") driver?.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "wrong branch" });
        })(run);
        scriptStopped = true;
        return stopped;
      });
      const input = newInput(s);
      const { status, driver: d } = await runBuild(s, input, schema, (dr) => {
        driver = dr;
        dr.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
      });
      assert.equal(status.phase, how === "cancel" ? "cancelled" : "timed-out");
      assert.match(
        status.error?.message ?? "",
        how === "cancel" ? /wrong branch/ : /did not finish within 1 minutes/,
      );
      assert.match(
        status.error?.message ?? "",
        new RegExp(
          `builder ${s.vm.vmName} was deallocated to stop the build script \\(.*cannot be cancelled\\)`,
        ),
      );
      assert.equal(status.builder.powerState, "deallocated");
      assert.equal(arm.getVm(s.vm)?.powerState, "deallocated");
      assert.ok(scriptStopped, "the script on the VM was stopped");
      const actions = vmRequests(s, "POST", /\/runCommand$/i);
      assert.equal(actions.length, 1, "the build ran as the action Run Command");
      assert.equal(actions[0]?.apiVersion, "2020-06-01");
      assert.equal(vmRequests(s, "DELETE", /\/runCommands\//i).length, 0, "there is nothing to delete");
      assert.equal(vmRequests(s, "POST", /\/deallocate$/i).length, 1);
      // The VM went down before the lease went back.
      const history = d.getHistory();
      const scheduled = (name: string) =>
        history.findIndex((e) => e.EventType === HistoryEventType.TaskScheduled && e.Name === name);
      assert.ok(scheduled(ACTIVITIES.stopBuilder) > 0);
      assert.ok(scheduled(ACTIVITIES.stopBuilder) < scheduled(ACTIVITIES.releaseLease));
      await checkReplayPrefixes(buildOrchestrator, { instanceId: input.buildId, history, input, schema });

      // The next build starts the builder again and runs.
      arm.setRunCommandExecutor(succeed());
      const next = newInput(s, { deploy: false });
      // Running the action's script text takes real time, which the virtual clock runs fast.
      const patient = {
        ...s,
        config: { ...s.config, builds: { ...s.config.builds, buildTimeoutMinutes: 30 } },
      };
      const { status: nextStatus } = await runBuild(patient, next, "V3", (dr) =>
        dr.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
      );
      assert.equal(nextStatus.phase, "succeeded");
      assert.equal(arm.getVm(s.vm)?.powerState, "running");
    });
  }

  it("deallocates the builder when a cancelled build's run command cannot be deleted", async () => {
    const s = scenario({ powerState: "running" });
    let driver: OrchestrationDriver | undefined;
    arm.setRunCommandExecutor(
      runUntilStopped(s, () => driver?.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "stop" })),
    );
    const input = newInput(s);
    arm.inject({
      method: "DELETE",
      path: new RegExp(`/runCommands/fb-${input.buildId}$`, "i"),
      times: 1,
      response: {
        status: 403,
        body: { error: { code: "AuthorizationFailed", message: "no permission to delete run commands" } },
      },
    });
    const { status } = await runBuild(s, input, "V3", (d) => {
      driver = d;
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    });
    assert.equal(status.phase, "cancelled");
    assert.match(
      status.error?.message ?? "",
      /was deallocated to stop the build script \(its run command could not be deleted\)/,
    );
    assertReason(status, "Cancelled", /the next build starts it again; the lease was given back$/);
    assert.equal(arm.getVm(s.vm)?.powerState, "deallocated");
  });

  it("keeps building past Azure's 25 run commands per VM when every build's own delete fails once", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(succeed());
    const inputs = Array.from({ length: 30 }, () => newInput(s, { deploy: false }));
    for (const input of inputs) {
      arm.inject({
        method: "DELETE",
        path: new RegExp(`/runCommands/fb-${input.buildId}$`, "i"),
        times: 1,
        response: {
          status: 403,
          body: { error: { code: "AuthorizationFailed", message: "delete refused once" } },
        },
      });
    }
    for (const input of inputs) {
      const { status } = await runBuild(s, input, "V3", (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}));
      assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
    }
    // Each build's delete failed; the next build removed that command before starting its own.
    for (const input of inputs)
      assert.equal(runCommandDeletes(input.buildId), input === inputs.at(-1) ? 1 : 2);
    assert.ok(s.logs.some((line) => line.includes(`removed stale build commands fb-${inputs[0]!.buildId}`)));
    assert.ok(
      s.logs.some((line) => line.includes(`could not delete build command fb-${inputs[0]!.buildId}`)),
    );
    const left = await createComputeGateway(gatewayOptions(s.arm)).removeBuildCommands(s.vm, {
      prefix: "fb-",
      keep: "",
    });
    assert.deepEqual(left, { removed: [`fb-${inputs.at(-1)!.buildId}`], failed: [] });
  });

  it("ignores a completion callback that is not this build's result and keeps waiting for it", async () => {
    const s = scenario({ powerState: "running" });
    let driver: OrchestrationDriver | undefined;
    arm.setRunCommandExecutor(async (run) => {
      driver?.raiseEvent(BUILD_EVENTS.buildCompleted, JSON.parse(resultLine("build-someone-else")));
      driver?.raiseEvent(BUILD_EVENTS.buildCompleted, { not: "a result" });
      await new Promise((resolve) => setTimeout(resolve, 20));
      return succeed()(run);
    });
    const input = newInput(s, { deploy: false });
    const { status } = await runBuild(s, input, "V3", (d) => {
      driver = d;
      d.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    });
    assert.equal(status.phase, "succeeded");
    assert.equal(status.image?.reference, `${REG}/team/app:${input.buildId}`);
    await assertRunCommandGone(s, input.buildId);
  });
});

describe("a failed build whose callback is lost, on the real build.sh", () => {
  let scratch: string;
  let registry: LocalRegistry;
  let machineEnv: Record<string, string>;

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "fb-e2e-lost-"));
    registry = await startRegistry({ storageDir: join(scratch, "registry") });
    const builder = await prepareLocalBuilder(join(scratch, "builder"), registry);
    // The VM keeps no Dockerfiles: the archive's kit must serve.
    const { FASTBUILD_DOCKERFILES_DIR: _override, ...rest } = builder.env;
    machineEnv = rest;
  });
  after(async () => {
    await registry?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  /** A workspace whose "compiler" fails after 60 long error lines, archived as `fast-build dev` does. */
  async function failingArchive() {
    const root = join(scratch, "ws");
    const files: Record<string, string> = {
      "Cargo.toml": '[package]\nname = "app"\nversion = "0.1.0"\n',
      "src/main.rs": "fn main() { COMPILE_ERROR }\n",
      "Cargo.lock": 'version = 4\n\n[[package]]\nname = "app"\nversion = "0.1.0"\n',
      "local-compile.sh": `for i in $(seq 1 60); do echo "error[E0425]: cannot find value $i ${"x".repeat(120)}" >&2; done\nexit 7\n`,
    };
    for (const [path, content] of Object.entries(files)) {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), content);
    }
    const [dockerfileBase, dockerfileApp] = await Promise.all(
      ["Dockerfile.base", "Dockerfile.app"].map((name) => readFile(join(LOCAL_DOCKERFILES, name))),
    );
    const { key, recipe } = await computeBaseKey(root, { dockerfileBase: dockerfileBase! });
    const archive = await createArchive(root, {
      generated: [
        { prefix: RECIPE_DIR_IN_ARCHIVE, files: recipeFiles(recipe) },
        {
          prefix: KIT_DIR_IN_ARCHIVE,
          files: [
            { path: "Dockerfile.app", content: dockerfileApp! },
            { path: "Dockerfile.base", content: dockerfileBase! },
          ],
        },
      ],
      outputDir: scratch,
    });
    return { archive, baseKey: key };
  }

  it("still reports the failed step, exit code and message, read from the instance view's last 4 KB", async () => {
    // The callback points at a closed port: every heartbeat and the result POST are lost.
    const s = scenario({
      powerState: "running",
      registry: registry.host,
      publicBaseUrl: "http://127.0.0.1:9",
      builds: { buildTimeoutMinutes: 120 },
    });
    const { archive, baseKey } = await failingArchive();
    const input = newInput(s, { sourceDigest: archive.digest, baseKey, deploy: false });
    const wiring = testWiring(s.arm);
    const deps = createDeps({
      ...wiring,
      // This suite's registry, read through its login server (version 5 asks it before the lease).
      tlsCa: `${wiring.tlsCa ?? ""}\n${registry.ca}`,
      registryOptions: { endpoints: { [registry.host]: registry.loginUrl }, maxRetries: 0 },
      config: s.config,
    });
    const upload = await deps.sources.createUploadUrl(sourceBlobName(input.buildId), 10);
    const put = await fetch(upload.url, {
      method: "PUT",
      body: await readFile(archive.path),
      headers: { "x-ms-blob-type": "BlockBlob" },
    });
    assert.equal(put.status, 201);
    let printed = "";
    const shell = localShellExecutor({ env: machineEnv });
    s.arm.setRunCommandExecutor((run) =>
      shell({
        ...run,
        stdout: (text) => {
          printed += text;
          run.stdout(text);
        },
      }),
    );
    const driver = new OrchestrationDriver({
      name: BUILD_ORCHESTRATOR,
      orchestrator: buildOrchestrator,
      instanceId: input.buildId,
      input,
      activities: createActivities(deps, { vmReadyTimeoutMs: 5 * 60_000 }),
      schema: "V3",
      // Real time for each poll: the script runs for real (buildah) meanwhile.
      clock: { kind: "virtual", start: START, realDelayMs: 500 },
      stallTimeoutMs: 20_000,
    });
    driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});

    const instance = await driver.run();

    const status = instance.output as BuildStatus;
    assert.ok(Buffer.byteLength(printed) > 4096, "the output outgrew what the instance view keeps");
    assert.match(printed, /could not post the result to the callback/);
    assert.equal(status.phase, "failed", JSON.stringify(status.error));
    assert.equal(status.error?.code, "BuildFailed");
    assert.match(
      status.error?.message ?? "",
      new RegExp(
        `in step app \\(app-build, exit code ${EXIT_CODES.appBuild}\\): the app build failed \\(exit \\d+\\)`,
      ),
    );
    assert.equal(status.cache?.base, "miss");
    assert.ok(status.logTail?.some((line) => line.includes("error[E0425]: cannot find value 60")));
    assert.ok(status.logTail?.some((line) => line.includes("FAILED: the app build failed")));
  });
});
