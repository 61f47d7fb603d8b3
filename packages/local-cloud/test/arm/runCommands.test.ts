/**
 * Managed Run Commands as the Linux handler runs them (Azure/run-command-handler-linux): output
 * blobs created or replaced by the handler, SAS permissions, managed identity, status updates
 * every 15 s, timeouts, and the 25-per-VM limit. Through the real @azure/arm-compute client.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  BlobSASPermissions,
  BlobServiceClient,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import type { ComputeManagementClient, VirtualMachineRunCommand } from "@azure/arm-compute";
import {
  scriptedExecutor,
  startArmEmulator,
  type ArmEmulator,
  type VmIdentity,
} from "../../src/arm/index.js";
import { DEV_ACCOUNT, DEV_KEY, startAzurite, type SecureAzurite } from "../../src/azurite.js";
import { computeClient, POLL, SUB, waitFor } from "./sdk.js";

const RG = "rg-run";
const TERMINAL = ["Succeeded", "Failed", "TimedOut", "Canceled"];

describe("managed run commands on a Linux VM", () => {
  let emulator: ArmEmulator;
  let azurite: SecureAzurite;
  let compute: ComputeManagementClient;
  let blobs: BlobServiceClient;
  const key = new StorageSharedKeyCredential(DEV_ACCOUNT, DEV_KEY);
  let vmCount = 0;

  const newVm = (identity?: VmIdentity) => {
    const vmName = `vm${++vmCount}`;
    emulator.addVm({ subscriptionId: SUB, resourceGroup: RG, vmName }, { powerState: "running", identity });
    return vmName;
  };
  const blobUrl = (name: string) => blobs.getContainerClient("logs").getBlobClient(name).url;
  const sas = (name: string, permissions: string) =>
    `${blobUrl(name)}?${generateBlobSASQueryParameters(
      {
        containerName: "logs",
        blobName: name,
        permissions: BlobSASPermissions.parse(permissions),
        expiresOn: new Date(Date.now() + 30 * 60_000),
      },
      key,
    ).toString()}`;
  const read = async (name: string) =>
    (await blobs.getContainerClient("logs").getBlobClient(name).downloadToBuffer()).toString("utf8");
  const run = async (
    vmName: string,
    name: string,
    properties: Omit<VirtualMachineRunCommand, "location">,
  ) => {
    await compute.virtualMachineRunCommands.beginCreateOrUpdateAndWait(
      RG,
      vmName,
      name,
      { location: "westus", asyncExecution: true, ...properties },
      POLL,
    );
    return waitFor(
      async () =>
        (
          await compute.virtualMachineRunCommands.getByVirtualMachine(RG, vmName, name, {
            expand: "instanceView",
          })
        ).instanceView,
      (view) => TERMINAL.includes(view?.executionState ?? ""),
    );
  };

  before(async () => {
    azurite = await startAzurite({ https: true, oauth: true });
    emulator = await startArmEmulator({ runCommandFlushMs: 50, storageCa: azurite.ca });
    compute = computeClient(emulator);
    // StoragePipelineOptions does not declare tlsOptions, but storage-blob passes it to its pipeline.
    const options = { retryOptions: { maxTries: 1 }, tlsOptions: { ca: azurite.ca } };
    blobs = new BlobServiceClient(azurite.blobEndpoint, key, options);
    await blobs.getContainerClient("logs").createIfNotExists();
  });
  after(async () => {
    await Promise.all([emulator.stop(), azurite.stop()]);
  });

  it("replaces an existing output blob with a new append blob holding only this run's output", async () => {
    await blobs.getContainerClient("logs").getBlockBlobClient("old.out").upload("stale\n", 6);
    emulator.setRunCommandExecutor(scriptedExecutor({ stdout: "fresh\n" }));
    const view = await run(newVm(), "replace", {
      source: { script: "echo fresh" },
      outputBlobUri: sas("old.out", "racw"),
    });
    assert.equal(view?.executionState, "Succeeded");
    assert.equal(await read("old.out"), "fresh\n");
    const properties = await blobs.getContainerClient("logs").getBlobClient("old.out").getProperties();
    assert.equal(properties.blobType, "AppendBlob");
  });

  it("fails with exit code -101 and never runs the script when the SAS lacks create and write", async () => {
    let ran = false;
    emulator.setRunCommandExecutor(async (r) => {
      ran = true;
      return scriptedExecutor()(r);
    });
    const view = await run(newVm(), "weak-sas", {
      source: { script: "echo hi" },
      outputBlobUri: sas("weak.out", "ra"),
    });
    assert.equal(view?.executionState, "Failed");
    assert.equal(view?.exitCode, -101);
    assert.match(view?.executionMessage ?? "", /^Execution failed: Error creating AppendBlob '.*weak\.out'/);
    assert.equal(ran, false);
  });

  it("writes the blobs with the VM's system-assigned identity when given outputBlobManagedIdentity {}", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor({ stdout: "via identity\n", stderr: "warn\n" }));
    const vmName = newVm({ systemAssigned: { principalId: "00000000-0000-0000-0000-0000000000b1" } });
    const view = await run(vmName, "mi", {
      source: { script: "build" },
      outputBlobUri: blobUrl("mi.out"),
      outputBlobManagedIdentity: {},
      errorBlobUri: blobUrl("mi.err"),
      errorBlobManagedIdentity: {},
    });
    assert.equal(view?.executionState, "Succeeded");
    assert.equal(await read("mi.out"), "via identity\n");
    assert.equal(await read("mi.err"), "warn\n");
  });

  it("refuses an objectId managed identity, as the Linux handler takes only a client id", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor());
    const vmName = newVm({
      userAssigned: [
        {
          clientId: "00000000-0000-0000-0000-0000000000c1",
          principalId: "00000000-0000-0000-0000-0000000000c2",
        },
      ],
    });
    const view = await run(vmName, "mi-oid", {
      source: { script: "build" },
      outputBlobUri: blobUrl("oid.out"),
      outputBlobManagedIdentity: { objectId: "00000000-0000-0000-0000-0000000000c2" },
    });
    assert.equal(view?.executionState, "Failed");
    assert.equal(view?.exitCode, -101);
    assert.match(view?.executionMessage ?? "", /ObjectId is not supported\. Use ClientId instead/);
  });

  it("ends a script that outlives timeoutInSeconds as Failed with exit code -1 (no TimedOut on Linux)", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor({ durationMs: 20_000 }));
    const vmName = newVm();
    await compute.virtualMachineRunCommands.beginCreateOrUpdateAndWait(
      RG,
      vmName,
      "slow",
      { location: "westus", asyncExecution: true, timeoutInSeconds: 1, source: { script: "sleep 20" } },
      POLL,
    );
    const running = await compute.virtualMachineRunCommands.getByVirtualMachine(RG, vmName, "slow", {
      expand: "instanceView",
    });
    assert.equal(running.instanceView?.executionState, "Running");
    assert.equal(running.instanceView?.exitCode, 0);
    const done = await waitFor(
      async () =>
        (
          await compute.virtualMachineRunCommands.getByVirtualMachine(RG, vmName, "slow", {
            expand: "instanceView",
          })
        ).instanceView,
      (view) => TERMINAL.includes(view?.executionState ?? ""),
    );
    assert.equal(done?.executionState, "Failed");
    assert.equal(done?.exitCode, -1);
  });

  it("refuses a 26th managed run command on one VM with Azure's limit message", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor());
    const vmName = newVm();
    for (let i = 1; i <= 25; i++) {
      await compute.virtualMachineRunCommands.beginCreateOrUpdateAndWait(
        RG,
        vmName,
        `rc${i}`,
        { location: "westus", asyncExecution: true, source: { script: "true" } },
        POLL,
      );
    }
    await assert.rejects(
      compute.virtualMachineRunCommands.beginCreateOrUpdateAndWait(
        RG,
        vmName,
        "rc26",
        { location: "westus", source: { script: "true" } },
        POLL,
      ),
      (error: { statusCode?: number; code?: string; message: string }) => {
        assert.equal(error.statusCode, 409);
        assert.equal(error.code, "OperationNotAllowed");
        assert.match(
          error.message,
          /The maximum number of managed Run commands \(max=25, current=25\) has been exceeded/,
        );
        return true;
      },
    );
    // Replacing one of the 25 is still allowed.
    await compute.virtualMachineRunCommands.beginCreateOrUpdateAndWait(
      RG,
      vmName,
      "rc1",
      { location: "westus", asyncExecution: true, source: { script: "true" } },
      POLL,
    );
  });
});

describe("managed run command status updates at Azure's default interval", () => {
  let emulator: ArmEmulator;
  before(async () => {
    emulator = await startArmEmulator();
  });
  after(async () => {
    await emulator.stop();
  });

  it("shows no output in the instance view before the first 15-second status update", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor({ stdout: "early\n", durationMs: 1_500 }));
    emulator.addVm({ subscriptionId: SUB, resourceGroup: RG, vmName: "quiet" }, { powerState: "running" });
    const compute = computeClient(emulator);
    await compute.virtualMachineRunCommands.beginCreateOrUpdateAndWait(
      RG,
      "quiet",
      "held",
      { location: "westus", asyncExecution: true, source: { script: "echo early; sleep 20" } },
      POLL,
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const view = await compute.virtualMachineRunCommands.getByVirtualMachine(RG, "quiet", "held", {
      expand: "instanceView",
    });
    assert.equal(view.instanceView?.executionState, "Running");
    assert.equal(view.instanceView?.output, "");
  });
});
