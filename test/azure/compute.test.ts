import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createComputeGateway } from "../../src/azure/compute.js";
import { ConflictError, NotFoundError, PermanentError, TransientError } from "../../src/core/errors.js";
import type { BuildCommandSpec, VmRef } from "../../src/core/ports.js";
import {
  scriptedExecutor,
  startArmEmulator,
  type ArmEmulator,
  type RunCommandExecutor,
} from "@fast-build/local-cloud/arm";
import { readFileSync } from "node:fs";
import { gatewayOptions, SUB, waitFor } from "./armHelpers.js";
import { scriptView } from "./scriptEnvironment.js";

const LAUNCHER = readFileSync(new URL("../../dockerfiles/launcher.sh", import.meta.url), "utf8");

const spec = (name: string, extra: Partial<BuildCommandSpec> = {}): BuildCommandSpec => ({
  name,
  script: "echo building",
  parameters: { BUILD_ID: "b1" },
  protectedParameters: { SOURCE_URL: "https://example.invalid/secret?sig=abc" },
  timeoutInSeconds: 60,
  outputBlobUri: "",
  errorBlobUri: "",
  launcher: LAUNCHER,
  ...extra,
});

/** A script that runs until Run Command stops it (cancel, timeout, the VM going down). */
function runsUntilAborted(): { executor: RunCommandExecutor; aborted: boolean } {
  const state = {
    aborted: false,
    executor: (async (run) => {
      await new Promise<void>((resolve) =>
        run.signal.addEventListener("abort", () => resolve(), { once: true }),
      );
      state.aborted = true;
      return { exitCode: 137 };
    }) as RunCommandExecutor,
  };
  return state;
}

describe("compute gateway against the ARM emulator", () => {
  let emulator: ArmEmulator;
  let n = 0;
  const newVm = (powerState: "running" | "deallocated" = "running"): VmRef => {
    const vm = { subscriptionId: SUB, resourceGroup: "rg-build", vmName: `builder-${++n}` };
    emulator.addVm(vm, { powerState });
    return vm;
  };

  before(async () => {
    emulator = await startArmEmulator();
  });
  after(async () => {
    await emulator.stop();
  });

  it("starts a deallocated VM and waits until it is running with a ready agent", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm("deallocated");
    assert.deepEqual(await gateway.getVmStatus(vm), { powerState: "deallocated", agentReady: false });
    await gateway.start(vm);
    assert.deepEqual(await gateway.getVmStatus(vm), { powerState: "running", agentReady: true });
  });

  it("reads the VM's size from hardwareProfile.vmSize, and a missing VM is NotFound", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = { subscriptionId: SUB, resourceGroup: "rg-build", vmName: `builder-${++n}` };
    emulator.addVm(vm, { vmSize: "Standard_E8s_v5" });
    assert.equal(await gateway.getVmSize(vm), "Standard_E8s_v5");
    assert.equal(await gateway.getVmSize(newVm()), "Standard_D4s_v5");
    await assert.rejects(gateway.getVmSize({ ...vm, vmName: "no-such-vm" }), NotFoundError);
  });

  it("deallocates a running VM", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm("running");
    await gateway.deallocate(vm);
    assert.equal(emulator.getVm(vm)?.powerState, "deallocated");
  });

  it("runs a build command Pending → Running → Succeeded with its output and exit code", async () => {
    emulator.setRunCommandExecutor(
      scriptedExecutor({ stdout: "step 1\nstep 2\n", stderr: "warn\n", durationMs: 50 }),
    );
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm();
    const handle = await gateway.startBuildCommand(vm, spec("fb-ok"));
    assert.deepEqual(handle, { kind: "managed", name: "fb-ok" });
    const running = await gateway.readBuildCommand(vm, handle);
    assert.equal(running.executionState, "Running");
    assert.equal(running.exitCode, undefined);
    const done = await waitFor(
      () => gateway.readBuildCommand(vm, handle),
      (v) => v.executionState !== "Running",
    );
    assert.equal(done.executionState, "Succeeded");
    assert.equal(done.exitCode, 0);
    assert.equal(done.output, "step 1\nstep 2\n");
    assert.equal(done.error, "warn\n");
    assert.ok(done.startTime && done.endTime);
  });

  it("sends the run command as the swagger wants and never gets protected parameters back", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor());
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm();
    await gateway.startBuildCommand(vm, spec("fb-shape"));
    const put = emulator.requests.find((r) => r.method === "PUT" && r.path.endsWith("/runCommands/fb-shape"));
    const body = JSON.parse(put!.body) as { location: string; properties: Record<string, unknown> };
    assert.equal(body.location, "westus");
    assert.equal(body.properties.asyncExecution, true);
    assert.equal(body.properties.timeoutInSeconds, 60);
    assert.deepEqual(body.properties.protectedParameters, [
      { name: "SOURCE_URL", value: "https://example.invalid/secret?sig=abc" },
    ]);
    const view = await gateway.readBuildCommand(vm, { kind: "managed", name: "fb-shape" });
    assert.ok(!JSON.stringify(view).includes("sig=abc"));
    const get = emulator.requests.findLast(
      (r) => r.method === "GET" && r.path.endsWith("/runCommands/fb-shape"),
    );
    assert.match(get!.query, /(%24|\$)expand=instanceView/);
  });

  it("lets the VM's managed identity write the log blobs: no SAS in the run command's public properties", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor());
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm();
    const blob = "https://127.0.0.1:1/devstoreaccount1/build-logs/b1.log";
    await gateway.startBuildCommand(
      vm,
      spec("fb-identity", { outputBlobUri: blob, errorBlobUri: `${blob}.err`, blobManagedIdentity: {} }),
    );
    const put = emulator.requests.find(
      (r) => r.method === "PUT" && r.path.endsWith("/runCommands/fb-identity"),
    );
    const props = (JSON.parse(put!.body) as { properties: Record<string, unknown> }).properties;
    assert.deepEqual(props.outputBlobManagedIdentity, {});
    assert.deepEqual(props.errorBlobManagedIdentity, {});
    assert.equal(props.outputBlobUri, blob);
    assert.ok(!JSON.stringify(props.parameters).includes("sig="));
  });

  it("reports a failing script as Failed with its exit code", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor({ exitCode: 21, stderr: "cargo failed\n" }));
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm();
    const handle = await gateway.startBuildCommand(vm, spec("fb-fail"));
    const done = await waitFor(
      () => gateway.readBuildCommand(vm, handle),
      (v) => v.executionState !== "Running",
    );
    assert.equal(done.executionState, "Failed");
    assert.equal(done.exitCode, 21);
    assert.equal(done.error, "cargo failed\n");
  });

  it("reports a script Linux killed at timeoutInSeconds (Failed, exit code -1) as TimedOut", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor({ durationMs: 60_000 }));
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm();
    const handle = await gateway.startBuildCommand(vm, spec("fb-timeout", { timeoutInSeconds: 1 }));
    const done = await waitFor(
      () => gateway.readBuildCommand(vm, handle),
      (v) => v.executionState !== "Running",
    );
    // The emulator answers as Linux does (Failed, -1); the gateway tells a timeout from a failure.
    assert.equal(done.executionState, "TimedOut");
    assert.equal(done.exitCode, -1);
  });

  it("reports a script killed by something else (exit code -1 before its timeout) as Failed", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor({ exitCode: -1 }));
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm();
    const handle = await gateway.startBuildCommand(vm, spec("fb-killed", { timeoutInSeconds: 60 }));
    const done = await waitFor(
      () => gateway.readBuildCommand(vm, handle),
      (v) => v.executionState !== "Running",
    );
    assert.equal(done.executionState, "Failed");
    assert.equal(done.exitCode, -1);
  });

  it("cancels a running build command: the executor is aborted and the command is gone", async () => {
    const script = runsUntilAborted();
    emulator.setRunCommandExecutor(script.executor);
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm();
    const handle = await gateway.startBuildCommand(vm, spec("fb-cancel"));
    await gateway.cancelBuildCommand(vm, handle);
    assert.equal(script.aborted, true);
    await assert.rejects(gateway.readBuildCommand(vm, handle), NotFoundError);
    const del = emulator.requests.find(
      (r) => r.method === "DELETE" && r.path.endsWith("/runCommands/fb-cancel"),
    );
    assert.ok(del);
  });

  it("retires an exited build command with an accepted DELETE, without following its operation", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor({ durationMs: 10 }));
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm();
    const handle = await gateway.startBuildCommand(vm, spec("fb-retire"));
    await waitFor(
      () => gateway.readBuildCommand(vm, handle),
      (v) => v.executionState === "Succeeded",
    );
    const before = emulator.requests.length;
    await gateway.cancelBuildCommand(vm, handle, { untilGone: false });
    const sent = emulator.requests.slice(before);
    assert.deepEqual(
      sent.map((r) => r.method),
      ["DELETE"],
      "one DELETE, no poll of its operation",
    );
    // Azure finishes the delete by itself: the command goes.
    await waitFor(
      () =>
        gateway.readBuildCommand(vm, handle).then(
          () => false,
          (error: unknown) => error instanceof NotFoundError,
        ),
      (gone) => gone,
    );
  });

  it("runs the action Run Command under the hybrid profile and reads it back from the serialized poller", async () => {
    emulator.setRunCommandExecutor(async (run) => {
      const { env } = await scriptView(run);
      return scriptedExecutor({ stdout: `id=${env.BUILD_ID}\n`, stderr: "", durationMs: 40 })(run);
    });
    const gateway = createComputeGateway(gatewayOptions(emulator, { profile: "2020-09-01-hybrid" }));
    const vm = newVm();
    const handle = await gateway.startBuildCommand(vm, spec("fb-hybrid"));
    assert.equal(handle.kind, "action");
    assert.ok(handle.resumeState);
    // A fresh gateway (another activity, another host) resumes from the handle alone.
    const other = createComputeGateway(gatewayOptions(emulator, { profile: "2020-09-01-hybrid" }));
    const done = await waitFor(
      () => other.readBuildCommand(vm, handle),
      (v) => v.executionState !== "Running",
    );
    assert.equal(done.executionState, "Succeeded");
    assert.equal(done.output, "id=b1\n");
    const post = emulator.requests.find(
      (r) => r.method === "POST" && r.path.endsWith(`/${vm.vmName}/runCommand`),
    );
    assert.equal((JSON.parse(post!.body) as { commandId: string }).commandId, "RunShellScript");
  });

  it("hands build.sh every value intact through the action's unquoted export prelude, leaving no script file", async () => {
    let seen: Awaited<ReturnType<typeof scriptView>> | undefined;
    let run: Parameters<RunCommandExecutor>[0] | undefined;
    emulator.setRunCommandExecutor(async (r) => {
      run = r;
      seen = await scriptView(r);
      return { exitCode: 0 };
    });
    const gateway = createComputeGateway(gatewayOptions(emulator, { profile: "2020-09-01-hybrid" }));
    const vm = newVm();
    const sas = "https://acct.blob.core.windows.net/c/b?sv=2024&sp=r&sig=a%2Bb/c=&x=$HOME;echo pwned";
    const handle = await gateway.startBuildCommand(
      vm,
      spec("fb-hybrid-values", {
        parameters: { BUILD_ID: "b1", SPACED: "two words\nand a line", EMPTY: "" },
        protectedParameters: { SOURCE_URL: sas },
      }),
    );
    await waitFor(
      () => gateway.readBuildCommand(vm, handle),
      (v) => v.executionState !== "Running",
    );
    assert.equal(run?.shell, "/bin/sh");
    assert.deepEqual(run?.parameters, {}, "the action's parameters live in the script text only");
    assert.ok(!run?.script.includes("sig=a"), "no value appears in clear in the script text");
    assert.deepEqual(seen?.env, {
      BUILD_ID: "b1",
      SPACED: "two words\nand a line",
      EMPTY: "",
      SOURCE_URL: sas,
    });
    assert.equal(seen?.scriptFileRemoved, true);
  });

  it("stops a running action Run Command when its VM is deallocated (the only way to stop it)", async () => {
    const script = runsUntilAborted();
    emulator.setRunCommandExecutor(script.executor);
    const gateway = createComputeGateway(gatewayOptions(emulator, { profile: "2020-09-01-hybrid" }));
    const vm = newVm();
    await gateway.startBuildCommand(vm, spec("fb-hybrid-stop"));
    await gateway.deallocate(vm);
    assert.equal(script.aborted, true);
    assert.equal(emulator.getVm(vm)?.powerState, "deallocated");
  });

  it("sends api-version 2020-06-01 on every compute request under the hybrid profile", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator, { profile: "2020-09-01-hybrid" }));
    const vm = newVm("deallocated");
    const from = emulator.requests.length;
    await gateway.start(vm);
    await gateway.getVmStatus(vm);
    await gateway.deallocate(vm);
    const sent = emulator.requests.slice(from);
    assert.ok(sent.length >= 5, "start, its polls, instance view, deallocate, its polls");
    assert.deepEqual(new Set(sent.map((r) => r.apiVersion)), new Set(["2020-06-01"]));
  });

  it("surfaces a VM start that ends AllocationFailed as a retryable error with Azure's code", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm("deallocated");
    emulator.inject({
      operation: "start",
      vmName: vm.vmName,
      error: {
        code: "AllocationFailed",
        message: "Allocation failed. Not enough capacity for Standard_D4s_v5.",
      },
    });
    const error = await gateway.start(vm).then(
      () => assert.fail("start should fail"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof TransientError);
    assert.equal(error.code, "AllocationFailed");
    assert.match(error.message, /Not enough capacity/);
    assert.equal(emulator.getVm(vm)?.powerState, "deallocated");
  });

  it("retries a throttled call after the Retry-After the server sent", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator, { retry: { maxRetries: 2 } }));
    const vm = newVm();
    emulator.inject({
      method: "GET",
      path: new RegExp(`/${vm.vmName}/instanceView$`),
      response: {
        status: 429,
        headers: { "Retry-After": "0", "retry-after-ms": "20" },
        body: { error: { code: "TooManyRequests", message: "slow down" } },
      },
    });
    assert.equal((await gateway.getVmStatus(vm)).powerState, "running");
    const calls = emulator.requests.filter((r) => r.path.endsWith(`/${vm.vmName}/instanceView`));
    assert.equal(calls.length, 2);
  });

  it("surfaces throttling that outlasts the retries as TransientError with retryAfterMs", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm();
    emulator.inject({
      path: new RegExp(`/${vm.vmName}/instanceView$`),
      response: {
        status: 429,
        headers: { "Retry-After": "7" },
        body: { error: { code: "TooManyRequests", message: "slow down" } },
      },
    });
    const error = await gateway.getVmStatus(vm).catch((e: unknown) => e);
    assert.ok(error instanceof TransientError);
    assert.equal(error.retryAfterMs, 7000);
    assert.equal(error.code, "TooManyRequests");
  });

  it("treats a dropped connection as transient", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm();
    emulator.inject({ path: new RegExp(`/${vm.vmName}/instanceView$`), response: { reset: true } });
    await assert.rejects(gateway.getVmStatus(vm), TransientError);
  });

  it("surfaces a 400 from Azure as PermanentError with Azure's code", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm();
    emulator.inject({
      method: "PUT",
      path: /\/runCommands\/fb-bad$/,
      response: {
        status: 400,
        body: { error: { code: "InvalidParameter", message: "timeoutInSeconds is too large" } },
      },
    });
    const error = await gateway.startBuildCommand(vm, spec("fb-bad")).catch((e: unknown) => e);
    assert.ok(error instanceof PermanentError);
    assert.equal(error.code, "InvalidParameter");
  });

  it("reports an unknown VM as NotFoundError with ResourceNotFound", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const error = await gateway
      .getVmStatus({ subscriptionId: SUB, resourceGroup: "rg-build", vmName: "nope" })
      .catch((e: unknown) => e);
    assert.ok(error instanceof NotFoundError);
    assert.equal(error.code, "ResourceNotFound");
  });

  it("reports starting a VM that is mid-deallocation as ConflictError", async () => {
    const slow = await startArmEmulator({ vmDeallocateMs: 5_000 });
    try {
      const gateway = createComputeGateway(gatewayOptions(slow));
      const vm = { subscriptionId: SUB, resourceGroup: "rg", vmName: "busy" };
      slow.addVm(vm, { powerState: "running" });
      // Left running: stopping the emulator ends it.
      const pending = gateway.deallocate(vm).catch(() => undefined);
      await waitFor(
        () => Promise.resolve(slow.getVm(vm)?.powerState),
        (s) => s === "deallocating",
      );
      await assert.rejects(gateway.start(vm), ConflictError);
      void pending;
    } finally {
      await slow.stop();
    }
  });
});
