/**
 * HTTP faults as the real SDK clients see them, with the SDK's own retries off and on: throttling,
 * 500, 503, a reset connection, and a reply lost after the request was carried out; random faults
 * from a seed, their filters and counters.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ComputeManagementClient } from "@azure/arm-compute";
import {
  startArmEmulator,
  type ArmEmulator,
  type HttpFaultKind,
  type RunCommandExecutor,
} from "../../src/arm/index.js";
import { appsClient, computeClient, POLL, SUB, tokenCredential, waitFor } from "./sdk.js";

const RG = "rg-faults";
/** One SDK retry, at once: the pipeline's own delay (1 s by default) is not what these tests test. */
const RETRY_ONCE = { maxRetries: 1, retryDelayInMs: 1 };

interface SdkError {
  statusCode?: number;
  code?: string;
}
const sdkError = (error: unknown): SdkError => error as SdkError;

describe("ARM faults through the SDK clients", () => {
  let emulator: ArmEmulator;
  let plain: ComputeManagementClient;
  let retrying: ComputeManagementClient;
  const started: string[] = [];
  let vmCount = 0;

  const newVm = (powerState: "running" | "deallocated" = "running") => {
    const vmName = `vm${++vmCount}`;
    emulator.addVm({ subscriptionId: SUB, resourceGroup: RG, vmName }, { powerState });
    return vmName;
  };
  const calls = (method: string, tail: string) =>
    emulator.requests.filter((r) => r.method === method && r.path.endsWith(tail)).length;

  before(async () => {
    const executor: RunCommandExecutor = (run) => {
      started.push(`${run.vm.vmName}/${run.name}`);
      return Promise.resolve({ exitCode: 0 });
    };
    emulator = await startArmEmulator({ executor, revisionReadyMs: 20 });
    plain = computeClient(emulator);
    retrying = computeClient(emulator, tokenCredential(), RETRY_ONCE);
  });
  after(async () => {
    await emulator.stop();
  });

  const refused: { kind: HttpFaultKind; statusCode?: number; code: string }[] = [
    { kind: "throttled", statusCode: 429, code: "SubscriptionRequestsThrottled" },
    { kind: "internalError", statusCode: 500, code: "InternalServerError" },
    { kind: "unavailable", statusCode: 503, code: "ServiceUnavailable" },
    { kind: "connectionReset", code: "ECONNRESET" },
  ];
  for (const { kind, statusCode, code } of refused) {
    it(`${kind}: without SDK retries the caller gets ${statusCode ?? code}`, async () => {
      const vmName = newVm();
      emulator.inject({ path: new RegExp(`/${vmName}/instanceView$`), response: { kind } });
      const error = sdkError(await plain.virtualMachines.instanceView(RG, vmName).catch((e: unknown) => e));
      assert.equal(error.statusCode, statusCode);
      assert.equal(error.code, code);
      assert.equal(calls("GET", `/${vmName}/instanceView`), 1);
    });

    it(`${kind}: the SDK's retry gets the real answer`, async () => {
      const vmName = newVm();
      // Retry-After 0: the SDK honours the header, and waiting is not what this tests.
      emulator.inject({
        path: new RegExp(`/${vmName}/instanceView$`),
        response: { kind, retryAfterSeconds: 0 },
      });
      const view = await retrying.virtualMachines.instanceView(RG, vmName);
      assert.ok(view.statuses?.some((s) => s.code === "PowerState/running"));
      assert.equal(calls("GET", `/${vmName}/instanceView`), 2);
    });
  }

  it("throttled: the 429 carries Retry-After in seconds", async () => {
    const vmName = newVm();
    emulator.inject({
      path: new RegExp(`/${vmName}$`),
      response: { kind: "throttled", retryAfterSeconds: 7 },
    });
    const error = (await plain.virtualMachines.get(RG, vmName).catch((e: unknown) => e)) as {
      response?: { headers: { get(name: string): string | undefined } };
    };
    assert.equal(error.response?.headers.get("retry-after"), "7");
  });

  describe("a reply lost after the request was carried out", () => {
    const putRunCommand = (client: ComputeManagementClient, vmName: string, name: string) =>
      client.virtualMachineRunCommands.beginCreateOrUpdateAndWait(
        RG,
        vmName,
        name,
        { location: "westus", source: { script: "echo hi" }, asyncExecution: true },
        POLL,
      );

    it("without SDK retries the run command's PUT fails, yet the command exists and its script ran", async () => {
      const vmName = newVm();
      emulator.inject({ method: "PUT", path: /\/runCommands\/lost$/, response: { replyLost: "reset" } });
      const error = sdkError(await putRunCommand(plain, vmName, "lost").catch((e: unknown) => e));
      assert.equal(error.code, "ECONNRESET");
      const command = await plain.virtualMachineRunCommands.getByVirtualMachine(RG, vmName, "lost");
      assert.equal(command.name, "lost");
      await waitFor(
        () => Promise.resolve(started.filter((s) => s === `${vmName}/lost`).length),
        (n) => n === 1,
      );
    });

    it("with SDK retries the PUT is sent again and replaces the command the first one created", async () => {
      const vmName = newVm();
      emulator.inject({ method: "PUT", path: /\/runCommands\/again$/, response: { replyLost: "reset" } });
      await putRunCommand(retrying, vmName, "again");
      // The second PUT replaces the command the first one created, and its script runs anew.
      assert.equal(calls("PUT", `/${vmName}/runCommands/again`), 2);
      await waitFor(
        () =>
          plain.virtualMachineRunCommands.getByVirtualMachine(RG, vmName, "again", {
            expand: "instanceView",
          }),
        (command) => command.instanceView?.executionState === "Succeeded",
      );
    });

    it("a VM start answered 500 starts the VM all the same", async () => {
      const vmName = newVm("deallocated");
      emulator.inject({ method: "POST", path: /\/start$/, response: { replyLost: "internalError" } });
      const error = sdkError(
        await plain.virtualMachines.beginStartAndWait(RG, vmName, POLL).catch((e: unknown) => e),
      );
      assert.equal(error.statusCode, 500);
      assert.equal(error.code, "InternalServerError");
      assert.notEqual(
        emulator.getVm({ subscriptionId: SUB, resourceGroup: RG, vmName })?.powerState,
        "deallocated",
      );
    });

    it("a container app update answered 504 GatewayTimeout still creates its revision", async () => {
      const apps = appsClient(emulator);
      const ref = { subscriptionId: SUB, resourceGroup: RG, appName: "timeout" };
      emulator.addContainerApp(ref, {
        containers: [{ name: "web", image: "repo/web:v1" }],
        revisionSuffix: "v1",
      });
      emulator.inject({
        method: "PATCH",
        path: /\/containerApps\/timeout$/,
        response: { replyLost: "gatewayTimeout" },
      });
      const error = sdkError(
        await apps.containerApps
          .beginUpdateAndWait(
            RG,
            "timeout",
            {
              location: "West US",
              template: { revisionSuffix: "v2", containers: [{ name: "web", image: "repo/web:v2" }] },
            },
            POLL,
          )
          .catch((e: unknown) => e),
      );
      assert.equal(error.statusCode, 504);
      assert.equal(error.code, "GatewayTimeout");
      assert.ok(emulator.getContainerApp(ref)?.revisions.some((r) => r.name === "timeout--v2"));
    });
  });

  describe("random faults", () => {
    const readMany = async (vmName: string, n: number) => {
      const outcomes: string[] = [];
      for (let i = 0; i < n; i++) {
        outcomes.push(
          await plain.virtualMachines.get(RG, vmName).then(
            () => "ok",
            (e: unknown) => String(sdkError(e).statusCode ?? sdkError(e).code),
          ),
        );
      }
      return outcomes;
    };

    it("makes the same decisions from the same seed, and counts them by kind", async () => {
      const vmName = newVm();
      const config = { rates: { throttled: 0.2, internalError: 0.2, connectionReset: 0.1 }, seed: 42 };
      const before = emulator.faultStats();
      emulator.setRandomFaults(config);
      const first = await readMany(vmName, 40);
      emulator.setRandomFaults(config);
      const second = await readMany(vmName, 40);
      emulator.setRandomFaults(undefined);
      assert.deepEqual(second, first);
      const faulted = first.filter((o) => o !== "ok").length;
      assert.ok(faulted > 0 && faulted < 40, `some of 40 requests fail (${faulted})`);
      const stats = emulator.faultStats();
      assert.equal(stats.requests - before.requests, 80);
      const counted = (kind: string) => (stats.httpFaults[kind] ?? 0) - (before.httpFaults[kind] ?? 0);
      assert.equal(counted("throttled"), 2 * first.filter((o) => o === "429").length);
      assert.equal(counted("internalError"), 2 * first.filter((o) => o === "500").length);
      assert.equal(counted("connectionReset"), 2 * first.filter((o) => o === "ECONNRESET").length);
    });

    it("leaves requests its method and path filters do not match alone", async () => {
      const vmName = newVm();
      emulator.setRandomFaults({
        rates: { internalError: 1 },
        seed: 1,
        methods: ["put"],
        path: /\/runCommands\//,
      });
      try {
        assert.deepEqual(await readMany(vmName, 5), ["ok", "ok", "ok", "ok", "ok"]);
        const error = sdkError(
          await plain.virtualMachineRunCommands
            .beginCreateOrUpdateAndWait(
              RG,
              vmName,
              "x",
              { location: "westus", source: { script: "true" } },
              POLL,
            )
            .catch((e: unknown) => e),
        );
        assert.equal(error.statusCode, 500);
      } finally {
        emulator.setRandomFaults(undefined);
      }
    });

    it("fails long-running VM operations at the rate asked, with Azure's error", async () => {
      const vmName = newVm("deallocated");
      const before = emulator.faultStats().operationFaults.AllocationFailed ?? 0;
      emulator.setRandomFaults({
        rates: {},
        seed: 7,
        operations: [
          { operation: "start", rate: 1, error: { code: "AllocationFailed", message: "Allocation failed." } },
        ],
      });
      try {
        // The SDK's poller fails with a plain Error naming the operation's error code.
        await assert.rejects(plain.virtualMachines.beginStartAndWait(RG, vmName, POLL), /AllocationFailed/);
        assert.equal(emulator.faultStats().operationFaults.AllocationFailed, before + 1);
      } finally {
        emulator.setRandomFaults(undefined);
      }
    });

    it("refuses rates that are not shares, or add up to more than 1, saying which", () => {
      assert.throws(
        () => emulator.setRandomFaults({ rates: { throttled: 0.7, unavailable: 0.6 }, seed: 1 }),
        /the rates add up to 1\.300; they must not exceed 1/,
      );
      assert.throws(
        () => emulator.setRandomFaults({ rates: { internalError: -0.1 }, seed: 1 }),
        /rate of 'internalError' must be a number from 0 to 1/,
      );
      assert.throws(
        () => emulator.setRandomFaults({ rates: { teapot: 0.1 } as never, seed: 1 }),
        /unknown fault kind 'teapot'/,
      );
    });
  });
});
