/**
 * Hibernation through the real compute SDK against the ARM emulator: the deallocate with
 * `hibernate=true`, Azure's refusals (MicrosoftDocs/azure-docs
 * articles/virtual-machines/hibernate-resume-troubleshooting.md), the hibernated instance view, and
 * the ordinary start that resumes it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createComputeGateway } from "../../src/azure/compute.js";
import { ConflictError, PermanentError } from "../../src/core/errors.js";
import type { VmRef } from "../../src/core/ports.js";
import { startArmEmulator, type ArmEmulator, type VmInit } from "@fast-build/local-cloud/arm";
import { gatewayOptions, staticCredential, SUB } from "./armHelpers.js";

describe("hibernation through the compute gateway", () => {
  let emulator: ArmEmulator;
  let n = 0;
  const newVm = (init: VmInit): VmRef => {
    const vm = { subscriptionId: SUB, resourceGroup: "rg-hib", vmName: `hib-${++n}` };
    emulator.addVm(vm, init);
    return vm;
  };

  before(async () => {
    emulator = await startArmEmulator();
  });
  after(async () => {
    await emulator.stop();
  });

  it("hibernates a running, hibernation-enabled VM: deallocated and hibernated", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm({ powerState: "running", hibernationEnabled: true });

    await gateway.hibernate(vm);

    assert.deepEqual(await gateway.getVmStatus(vm), {
      powerState: "deallocated",
      agentReady: false,
      hibernated: true,
    });
    const sent = emulator.requests.find(
      (r) => r.method === "POST" && r.path.endsWith(`/${vm.vmName}/deallocate`),
    );
    assert.match(sent?.query ?? "", /(^|&)hibernate=true(&|$)/);
  });

  it("shows the hibernated state in the instance view as Azure does", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm({ powerState: "running", hibernationEnabled: true });
    await gateway.hibernate(vm);

    const res = await fetchInstanceView(emulator, vm);

    const codes = res.statuses.map((s) => s.code);
    assert.ok(codes.includes("PowerState/deallocated"), codes.join());
    assert.ok(codes.includes("HibernationState/Hibernated"), codes.join());
  });

  it("resumes a hibernated VM with the ordinary start: running, no longer hibernated", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm({ hibernationEnabled: true, hibernated: true });

    await gateway.start(vm);

    assert.deepEqual(await gateway.getVmStatus(vm), { powerState: "running", agentReady: true });
    assert.equal(emulator.getVm(vm)?.hibernated, false);
  });

  it("refuses to hibernate a VM without hibernationEnabled: 409 OperationNotAllowed, the VM keeps running", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm({ powerState: "running" });

    await assert.rejects(gateway.hibernate(vm), (error: unknown) => {
      assert.ok(error instanceof ConflictError, String(error));
      assert.equal(error.code, "OperationNotAllowed");
      assert.match(error.message, /enabled for hibernation/);
      return true;
    });
    assert.equal(emulator.getVm(vm)?.powerState, "running");
  });

  it("refuses to hibernate a VM that is not running: 409 OperationNotAllowed", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm({ powerState: "deallocated", hibernationEnabled: true });

    await assert.rejects(gateway.hibernate(vm), (error: unknown) => {
      assert.ok(error instanceof ConflictError, String(error));
      assert.match(
        error.message,
        /only be triggered on a VM that is successfully provisioned and is running/,
      );
      return true;
    });
    assert.equal(emulator.getVm(vm)?.hibernated, false);
  });

  it("reports a guest that cannot hibernate yet (operation ends VMHibernateNotSupported): the VM stays running", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm({ powerState: "running", hibernationEnabled: true });
    emulator.inject({
      operation: "hibernate",
      vmName: vm.vmName,
      error: {
        code: "VMHibernateNotSupported",
        message: `The VM '${vm.vmName}' doesn't support hibernation. Ensure that the VM is correctly configured to support hibernation.`,
      },
    });

    await assert.rejects(gateway.hibernate(vm), (error: unknown) => {
      assert.ok(error instanceof PermanentError, String(error));
      assert.equal(error.code, "VMHibernateNotSupported");
      return true;
    });
    assert.deepEqual(emulator.getVm(vm), {
      powerState: "running",
      location: "westus",
      agentReady: true,
      hibernated: false,
    });
  });

  it("a plain deallocate of a hibernated VM discards its memory: the next start is a cold one", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator));
    const vm = newVm({ hibernationEnabled: true, hibernated: true });

    await gateway.deallocate(vm);

    assert.deepEqual(await gateway.getVmStatus(vm), { powerState: "deallocated", agentReady: false });
  });

  it("never sends a hibernate under the hybrid profile (2020-06-01 has no such parameter)", async () => {
    const gateway = createComputeGateway(gatewayOptions(emulator, { profile: "2020-09-01-hybrid" }));
    const vm = newVm({ powerState: "running", hibernationEnabled: true });
    const before = emulator.requests.length;

    await assert.rejects(gateway.hibernate(vm), (error: unknown) => {
      assert.ok(error instanceof PermanentError, String(error));
      assert.equal(error.code, "HibernationUnsupportedProfile");
      assert.match(error.hint ?? "", /idleShutdown/);
      return true;
    });
    assert.equal(emulator.requests.length, before, "nothing reached ARM");
    assert.equal(emulator.getVm(vm)?.powerState, "running");
  });

  it("treats hibernate=true with an api-version before 2021-03-01 as the plain deallocate it is there", async () => {
    const vm = newVm({ powerState: "running", hibernationEnabled: true });
    const url = `${emulator.endpoint}/subscriptions/${SUB}/resourceGroups/${vm.resourceGroup}/providers/Microsoft.Compute/virtualMachines/${vm.vmName}/deallocate?api-version=2020-06-01&hibernate=true`;

    const res = await armFetch(emulator, url, "POST");

    assert.equal(res.status, 202);
    const gateway = createComputeGateway(gatewayOptions(emulator));
    for (let i = 0; i < 100 && emulator.getVm(vm)?.powerState !== "deallocated"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(await gateway.getVmStatus(vm), { powerState: "deallocated", agentReady: false });
  });
});

async function armFetch(
  emulator: ArmEmulator,
  url: string,
  method: string,
): Promise<{ status: number; body: unknown }> {
  const { request } = await import("node:https");
  const token = await staticCredential.getToken("https://management.azure.com/.default");
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        ca: emulator.ca,
        headers: { authorization: `Bearer ${token?.token ?? ""}`, "content-length": 0 },
      },
      (res) => {
        let text = "";
        res.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as unknown) : undefined }),
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

async function fetchInstanceView(
  emulator: ArmEmulator,
  vm: VmRef,
): Promise<{ statuses: { code: string }[] }> {
  const url = `${emulator.endpoint}/subscriptions/${vm.subscriptionId}/resourceGroups/${vm.resourceGroup}/providers/Microsoft.Compute/virtualMachines/${vm.vmName}/instanceView?api-version=2024-07-01`;
  return (await armFetch(emulator, url, "GET")).body as { statuses: { code: string }[] };
}
