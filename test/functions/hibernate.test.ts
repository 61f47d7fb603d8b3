/**
 * The idle shutdown, the builder list and the warm with `idleShutdown: "hibernate"`, on Azurite's
 * builder records and the ARM emulator's VMs through the real compute SDK: an idle builder is
 * hibernated; when Azure refuses (hibernation not enabled on the VM, a guest not ready) it is
 * deallocated after all and the outcome says why; the list shows the hibernated state; a warm of a
 * hibernated builder starts it, which resumes it.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { startArmEmulator, type ArmEmulator, type VmInit } from "@fast-build/local-cloud/arm";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { createComputeGateway } from "../../src/azure/compute.js";
import { TableHistoryStore } from "../../src/azure/history.js";
import { TableLeaseStore } from "../../src/azure/tables.js";
import { runIdleShutdown, type BuildersDeps } from "../../src/builders/idleShutdown.js";
import { describeBuilders } from "../../src/builders/list.js";
import { warmBuilder } from "../../src/builders/warm.js";
import { loadConfig, type Config } from "../../src/config/index.js";
import { builderKey } from "../../src/core/buildInput.js";
import { emptyRecord } from "../../src/core/lease.js";
import { renderBuilders, renderWarm } from "../../src/cli/render.js";
import { gatewayOptions, SUB, waitFor } from "../azure/armHelpers.js";

const DEV = { subscriptionId: SUB, resourceGroup: "rg-hib", vmName: "builder-hib" };
const IDLE_MS = 30 * 60_000;

describe("idle shutdown with idleShutdown: hibernate", () => {
  let arm: ArmEmulator;
  let azurite: Azurite;
  let config: Config;
  let deps: BuildersDeps & { compute: ReturnType<typeof createComputeGateway> };
  let tables = 0;
  const logs: string[] = [];
  const sink = {
    info: (m: string) => logs.push(`info ${m}`),
    warn: (m: string) => logs.push(`warn ${m}`),
    error: (m: string) => logs.push(`error ${m}`),
  };

  before(async () => {
    [arm, azurite] = await Promise.all([startArmEmulator(), startAzurite()]);
    config = loadConfig({
      FASTBUILD_ENVIRONMENTS: JSON.stringify({
        dev: {
          subscriptionId: SUB,
          resourceGroup: DEV.resourceGroup,
          builderVm: DEV.vmName,
          registry: "127.0.0.1:5000",
          imageRepository: "apps/demo",
          containerApp: "demo",
          containerName: "main",
          binaryName: "app",
          idleShutdown: "hibernate",
        },
      }),
      AzureWebJobsStorage: azurite.connectionString,
      FASTBUILD_COMPUTE_ENDPOINT: arm.endpoint,
      FASTBUILD_IDLE_SHUTDOWN_MINUTES: "30",
    });
  });
  after(async () => {
    await Promise.all([arm.stop(), azurite.stop()]);
  });
  beforeEach(() => {
    logs.length = 0;
    arm.clearFaults();
    deps = {
      config,
      leases: new TableLeaseStore({
        tableName: `hibbuilders${++tables}`,
        connectionString: azurite.connectionString,
      }),
      compute: createComputeGateway(gatewayOptions(arm)),
      history: new TableHistoryStore({
        tableName: `hibhistory${tables}`,
        connectionString: azurite.connectionString,
      }),
      now: () => new Date(),
    };
  });

  /** The builder as `init`, last used well before the idle window. */
  const idleBuilder = async (init: VmInit) => {
    arm.addVm(DEV, init);
    const old = new Date(Date.now() - IDLE_MS - 3600_000).toISOString();
    await deps.leases.write({ ...emptyRecord(builderKey(DEV)), lastActivityAt: old }, undefined);
  };
  const idleRun = () => runIdleShutdown(deps, sink, () => Promise.resolve(undefined));

  it("hibernates an idle builder whose VM has hibernation enabled", async () => {
    await idleBuilder({ powerState: "running", hibernationEnabled: true });

    const outcomes = await idleRun();

    assert.deepEqual(outcomes, [{ builder: DEV.vmName, action: "hibernated" }]);
    assert.deepEqual(arm.getVm(DEV), {
      powerState: "deallocated",
      location: "westus",
      agentReady: false,
      hibernated: true,
    });
    assert.equal((await deps.leases.read(builderKey(DEV)))?.record.holder, undefined, "the lease went back");
    // The costs count a hibernated builder's disk minutes from here.
    assert.equal(await deps.history.lastPowerState(builderKey(DEV)), "hibernated");
  });

  it("deallocates after all when Azure refuses (hibernation not enabled on the VM), and says why", async () => {
    await idleBuilder({ powerState: "running" });

    const outcomes = await idleRun();

    assert.equal(outcomes.length, 1);
    const [outcome] = outcomes;
    assert.equal(outcome?.action, "deallocated");
    assert.match(
      outcome && "reason" in outcome ? (outcome.reason ?? "") : "",
      /hibernate refused, deallocated instead: .*OperationNotAllowed.*enabled for hibernation/,
    );
    assert.deepEqual(arm.getVm(DEV), {
      powerState: "deallocated",
      location: "westus",
      agentReady: false,
      hibernated: false,
    });
    assert.ok(
      logs.some((line) => line.startsWith("warn") && line.includes("hibernate refused")),
      logs.join("\n"),
    );
  });

  it("deallocates after all when the guest cannot hibernate yet (VMHibernateNotSupported)", async () => {
    await idleBuilder({ powerState: "running", hibernationEnabled: true });
    arm.inject({
      operation: "hibernate",
      error: {
        code: "VMHibernateNotSupported",
        message: `The VM '${DEV.vmName}' doesn't support hibernation.`,
      },
    });

    const [outcome] = await idleRun();

    assert.equal(outcome?.action, "deallocated");
    assert.match(outcome && "reason" in outcome ? (outcome.reason ?? "") : "", /VMHibernateNotSupported/);
    assert.equal(arm.getVm(DEV)?.powerState, "deallocated");
    assert.equal(arm.getVm(DEV)?.hibernated, false);
  });

  it("lists a hibernated builder as deallocated (hibernated), with its idle shutdown mode", async () => {
    await idleBuilder({ powerState: "running", hibernationEnabled: true });
    await idleRun();

    const [info] = await describeBuilders(deps, sink);

    assert.equal(info?.powerState, "deallocated");
    assert.equal(info?.hibernated, true);
    assert.equal(info?.idleShutdown, "hibernate");
    assert.match(renderBuilders(info ? [info] : [], new Date()).join("\n"), /deallocated \(hibernated\)/);
  });

  it("warms a hibernated builder: starts it, which resumes it", async () => {
    await idleBuilder({ hibernationEnabled: true, hibernated: true });

    const answer = await warmBuilder(deps, { ...config.environments.dev!, name: "dev" });

    assert.equal(answer.action, "started");
    assert.equal(answer.powerStateBefore, "deallocated");
    assert.equal(answer.hibernated, true);
    assert.match(renderWarm(answer, new Date()), /deallocated \(hibernated\) → starting \(resuming\)/);
    await waitFor(
      () => Promise.resolve(arm.getVm(DEV)),
      (vm) => vm?.powerState === "running",
    );
    assert.equal(arm.getVm(DEV)?.hibernated, false);
  });
});
