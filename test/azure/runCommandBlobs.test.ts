import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  BlobSASPermissions,
  BlobServiceClient,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import { createComputeGateway } from "../../src/azure/compute.js";
import { DEV_ACCOUNT, DEV_KEY, startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { scriptedExecutor, startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { gatewayOptions, SUB, waitFor } from "./armHelpers.js";

describe("run command output streamed to Azurite append blobs", () => {
  let emulator: ArmEmulator;
  let azurite: Azurite;
  let service: BlobServiceClient;
  const key = new StorageSharedKeyCredential(DEV_ACCOUNT, DEV_KEY);

  const appendBlobSas = async (name: string): Promise<string> => {
    const blob = service.getContainerClient("logs").getAppendBlobClient(name);
    await blob.createIfNotExists();
    const sas = generateBlobSASQueryParameters(
      {
        containerName: "logs",
        blobName: name,
        permissions: BlobSASPermissions.parse("racw"),
        expiresOn: new Date(Date.now() + 30 * 60_000),
      },
      key,
    );
    return `${blob.url}?${sas.toString()}`;
  };

  before(async () => {
    [emulator, azurite] = await Promise.all([startArmEmulator(), startAzurite()]);
    service = BlobServiceClient.fromConnectionString(azurite.connectionString);
    await service.getContainerClient("logs").createIfNotExists();
  });
  after(async () => {
    await Promise.all([emulator.stop(), azurite.stop()]);
  });

  it("appends the script's stdout and stderr to the output and error blobs as it runs", async () => {
    emulator.setRunCommandExecutor(async (run) => {
      run.stdout("line 1\n");
      run.stderr("oops\n");
      run.stdout("line 2\n");
      return scriptedExecutor({ stdout: "done\n" })(run);
    });
    const vm = { subscriptionId: SUB, resourceGroup: "rg-logs", vmName: "builder" };
    emulator.addVm(vm, { powerState: "running" });
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const handle = await gateway.startBuildCommand(vm, {
      name: "fb-logs",
      script: "build",
      parameters: {},
      protectedParameters: {},
      timeoutInSeconds: 60,
      outputBlobUri: await appendBlobSas("b1.out"),
      errorBlobUri: await appendBlobSas("b1.err"),
    });
    const done = await waitFor(
      () => gateway.readBuildCommand(vm, handle),
      (v) => v.executionState !== "Running",
    );
    assert.equal(done.executionState, "Succeeded");
    const read = async (name: string) =>
      (await service.getContainerClient("logs").getBlobClient(name).downloadToBuffer()).toString("utf8");
    assert.equal(await read("b1.out"), "line 1\nline 2\ndone\n");
    assert.equal(await read("b1.err"), "oops\n");
  });
});
