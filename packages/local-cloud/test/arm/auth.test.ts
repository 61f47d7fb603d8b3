/** Bearer-token audience, Azure Stack Hub metadata, the identity endpoint's tokens, and RBAC. */
import assert from "node:assert/strict";
import { get } from "node:https";
import { request as httpGet } from "node:http";
import { after, before, describe, it } from "node:test";
import { requiredPermission, startArmEmulator, type ArmEmulator } from "../../src/arm/index.js";
import { CALLER, computeClient, POLL, SUB, tokenCredential } from "./sdk.js";

const RG = "rg-auth";
const VM_ID = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachines/vm`;
const STACK_AUDIENCE = "https://management.adfs.azurestack.local/00000000-0000-0000-0000-0000000057ac";

const restError = (status: number, code: string) => (error: { statusCode?: number; code?: string }) =>
  error.statusCode === status && error.code === code;

function getJson(
  url: string,
  options: { ca?: string; headers?: Record<string, string> } = {},
): Promise<unknown> {
  const send = url.startsWith("https:") ? get : httpGet;
  return new Promise((resolve, reject) => {
    const req = send(url, { ca: options.ca, headers: options.headers }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve(JSON.parse(text) as unknown));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("ARM token audience", () => {
  let emulator: ArmEmulator;
  let stack: ArmEmulator;
  before(async () => {
    [emulator, stack] = await Promise.all([
      startArmEmulator(),
      startArmEmulator({ audiences: [STACK_AUDIENCE] }),
    ]);
    for (const e of [emulator, stack]) e.addVm({ subscriptionId: SUB, resourceGroup: RG, vmName: "vm" });
  });
  after(async () => {
    await Promise.all([emulator.stop(), stack.stop()]);
  });

  it("refuses a token obtained for another resource with 401 InvalidAuthenticationTokenAudience", async () => {
    const compute = computeClient(emulator, tokenCredential("https://storage.azure.com"));
    await assert.rejects(
      compute.virtualMachines.get(RG, "vm"),
      restError(401, "InvalidAuthenticationTokenAudience"),
    );
  });

  it("publishes an Azure Stack Hub audience at /metadata/endpoints and accepts only tokens for it", async () => {
    const metadata = (await getJson(`${stack.endpoint}/metadata/endpoints?api-version=2015-01-01`, {
      ca: stack.ca,
    })) as { authentication: { audiences: string[] } };
    assert.deepEqual(metadata.authentication.audiences, [STACK_AUDIENCE]);
    const vm = await computeClient(stack, tokenCredential(STACK_AUDIENCE)).virtualMachines.get(RG, "vm");
    assert.equal(vm.name, "vm");
    await assert.rejects(
      computeClient(stack).virtualMachines.get(RG, "vm"),
      restError(401, "InvalidAuthenticationTokenAudience"),
    );
  });

  it("hands out managed-identity tokens whose audience is the requested resource", async () => {
    const token = (await getJson(
      `${emulator.identityEndpoint}?api-version=2019-08-01&resource=https%3A%2F%2Fstorage.azure.com`,
      {
        headers: { "x-identity-header": emulator.identityHeader },
      },
    )) as { access_token: string };
    const claims = JSON.parse(
      Buffer.from(token.access_token.split(".")[1]!, "base64url").toString("utf8"),
    ) as {
      aud: string;
    };
    assert.equal(claims.aud, "https://storage.azure.com");
  });
});

describe("ARM authorization model", () => {
  let emulator: ArmEmulator;
  before(async () => {
    emulator = await startArmEmulator({
      authorization: {
        roleAssignments: {
          [CALLER]: [
            {
              scope: `/subscriptions/${SUB}/resourceGroups/${RG}`,
              actions: ["Microsoft.Compute/virtualMachines/read"],
            },
          ],
          "00000000-0000-0000-0000-0000000000ad": [
            { scope: `/subscriptions/${SUB}`, actions: ["Microsoft.Compute/virtualMachines/*"] },
          ],
        },
      },
    });
    emulator.addVm({ subscriptionId: SUB, resourceGroup: RG, vmName: "vm" });
  });
  after(async () => {
    await emulator.stop();
  });

  it("answers 403 AuthorizationFailed in Azure's words when the caller's roles lack the action", async () => {
    const compute = computeClient(emulator);
    assert.equal((await compute.virtualMachines.get(RG, "vm")).name, "vm");
    await assert.rejects(
      compute.virtualMachines.beginStartAndWait(RG, "vm", POLL),
      (error: { statusCode?: number; code?: string; message: string }) => {
        assert.equal(error.statusCode, 403);
        assert.equal(error.code, "AuthorizationFailed");
        assert.equal(
          error.message,
          `The client '${CALLER}' with object id '${CALLER}' does not have authorization to perform action 'Microsoft.Compute/virtualMachines/start/action' over scope '${VM_ID}' or the scope is invalid. If access was recently granted, please refresh your credentials.`,
        );
        return true;
      },
    );
  });

  it("allows an action a wildcard role grants at a parent scope", async () => {
    const admin = computeClient(emulator, tokenCredential(undefined, "00000000-0000-0000-0000-0000000000ad"));
    await admin.virtualMachines.beginStartAndWait(RG, "vm", POLL);
    assert.equal(
      emulator.getVm({ subscriptionId: SUB, resourceGroup: RG, vmName: "vm" })?.powerState,
      "running",
    );
  });

  it("maps each emulated operation to its action over the resource it names", () => {
    assert.deepEqual(requiredPermission("POST", `${VM_ID}/start`), {
      action: "Microsoft.Compute/virtualMachines/start/action",
      scope: VM_ID,
    });
    assert.equal(
      requiredPermission("PUT", `${VM_ID}/runCommands/b1`)?.action,
      "Microsoft.Compute/virtualMachines/runCommands/write",
    );
    const app = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/containerApps/web`;
    assert.equal(requiredPermission("PATCH", app)?.action, "Microsoft.App/containerApps/write");
  });
});
