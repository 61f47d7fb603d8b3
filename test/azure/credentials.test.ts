import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createComputeGateway } from "../../src/azure/compute.js";
import { createCredential } from "../../src/azure/credentials.js";
import { startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { SUB } from "./armHelpers.js";

describe("managed identity against the emulator's token endpoint", () => {
  let emulator: ArmEmulator;
  const saved = { endpoint: process.env.IDENTITY_ENDPOINT, header: process.env.IDENTITY_HEADER };

  before(async () => {
    emulator = await startArmEmulator();
    // What App Service / Functions set for the app's managed identity.
    process.env.IDENTITY_ENDPOINT = emulator.identityEndpoint;
    process.env.IDENTITY_HEADER = emulator.identityHeader;
  });
  after(async () => {
    if (saved.endpoint === undefined) delete process.env.IDENTITY_ENDPOINT;
    else process.env.IDENTITY_ENDPOINT = saved.endpoint;
    if (saved.header === undefined) delete process.env.IDENTITY_HEADER;
    else process.env.IDENTITY_HEADER = saved.header;
    await emulator.stop();
  });

  it("gets an ARM token with the real ManagedIdentityCredential", async () => {
    const token = await createCredential({ mode: "managedIdentity" }).getToken(
      "https://management.azure.com/.default",
    );
    assert.ok(token?.token);
    assert.ok(token.expiresOnTimestamp > Date.now());
  });

  it("lets the compute gateway call ARM with that token unmodified", async () => {
    const vm = { subscriptionId: SUB, resourceGroup: "rg-mi", vmName: "builder" };
    emulator.addVm(vm, { powerState: "running" });
    const gateway = createComputeGateway({
      endpoint: emulator.endpoint,
      credential: createCredential({ mode: "managedIdentity" }),
      tlsCa: emulator.ca,
      retry: { maxRetries: 0 },
    });
    assert.equal((await gateway.getVmStatus(vm)).powerState, "running");
    const call = emulator.requests.findLast((r) => r.path.endsWith("/builder/instanceView"));
    assert.match(call!.headers.authorization ?? "", /^Bearer ey/);
  });
});
