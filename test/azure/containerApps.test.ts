import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createContainerAppsGateway } from "../../src/azure/containerApps.js";
import { ConflictError, NotFoundError } from "../../src/core/errors.js";
import type { ContainerAppRef } from "../../src/core/ports.js";
import { startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { gatewayOptions, SUB, waitFor } from "./armHelpers.js";

describe("container apps gateway against the ARM emulator", () => {
  let emulator: ArmEmulator;
  let n = 0;
  const newApp = (): ContainerAppRef => {
    const app = { subscriptionId: SUB, resourceGroup: "rg-apps", appName: `app-${++n}` };
    emulator.addContainerApp(app, {
      containers: [
        { name: "web", image: "registry.local/web:v1" },
        { name: "sidecar", image: "registry.local/sidecar:v1" },
      ],
      revisionSuffix: "initial",
    });
    return app;
  };

  before(async () => {
    emulator = await startArmEmulator({ failRevisionsWithImage: /:broken$/ });
  });
  after(async () => {
    await emulator.stop();
  });

  it("reads the app's revisions, provisioning state, images and ingress target port", async () => {
    const gateway = createContainerAppsGateway(gatewayOptions(emulator));
    const app = newApp();
    assert.deepEqual(await gateway.getApp(app), {
      latestRevisionName: `${app.appName}--initial`,
      latestReadyRevisionName: `${app.appName}--initial`,
      provisioningState: "Succeeded",
      images: { web: "registry.local/web:v1", sidecar: "registry.local/sidecar:v1" },
      activeRevisionsMode: "Single",
      ingress: true,
      targetPort: 8080,
    });
  });

  it("creates the named revision with only the target image changed, which becomes Healthy", async () => {
    const gateway = createContainerAppsGateway(gatewayOptions(emulator));
    const app = newApp();
    const started = await gateway.updateImage(app, {
      containerName: "web",
      image: "registry.local/web:v2",
      revisionSuffix: "b42",
    });
    const { revisionName } = started;
    assert.deepEqual(started, {
      revisionName: `${app.appName}--b42`,
      activeRevisionsMode: "Single",
      ingress: true,
    });
    const patch = emulator.requests.find((r) => r.method === "PATCH" && r.path.endsWith(`/${app.appName}`));
    const sent = JSON.parse(patch!.body) as {
      properties: { template: { containers: { name: string; image: string }[] } };
    };
    assert.deepEqual(
      sent.properties.template.containers.map((c) => [c.name, c.image]),
      [
        ["web", "registry.local/web:v2"],
        ["sidecar", "registry.local/sidecar:v1"],
      ],
    );
    const healthy = await waitFor(
      () => gateway.getRevision(app, revisionName),
      (r) => r.provisioningState !== "Provisioning",
    );
    assert.deepEqual(healthy, {
      name: revisionName,
      healthState: "Healthy",
      provisioningState: "Provisioned",
      runningState: "Running",
      active: true,
    });
    assert.equal((await gateway.getApp(app)).latestReadyRevisionName, revisionName);
  });

  it("reports a revision that cannot start as Failed / Unhealthy and keeps the old ready revision", async () => {
    // In Azure the update's operation fails with its revision (ContainerAppOperationError); the
    // gateway does not wait for that operation, so the revision's own state is what reports it.
    const gateway = createContainerAppsGateway(gatewayOptions(emulator));
    const app = newApp();
    const { revisionName } = await gateway.updateImage(app, {
      containerName: "web",
      image: "registry.local/web:broken",
      revisionSuffix: "bad1",
    });
    const failed = await waitFor(
      () => gateway.getRevision(app, revisionName),
      (r) => r.provisioningState !== "Provisioning",
    );
    assert.equal(failed.provisioningState, "Failed");
    assert.equal(failed.healthState, "Unhealthy");
    const status = await gateway.getApp(app);
    assert.equal(status.latestRevisionName, revisionName);
    assert.equal(status.latestReadyRevisionName, `${app.appName}--initial`);
    assert.equal(status.provisioningState, "Failed");
  });

  it("returns the new revision as soon as Azure accepted the update, while it still provisions", async () => {
    const slow = await startArmEmulator({ revisionReadyMs: 24 * 3600_000 });
    try {
      const app = { subscriptionId: SUB, resourceGroup: "rg", appName: "slow" };
      slow.addContainerApp(app, { containers: [{ name: "web", image: "a:1" }] });
      const gateway = createContainerAppsGateway(gatewayOptions(slow));
      const { revisionName } = await gateway.updateImage(app, {
        containerName: "web",
        image: "a:2",
        revisionSuffix: "r2",
      });
      assert.equal((await gateway.getRevision(app, revisionName)).provisioningState, "Provisioning");
      assert.equal((await gateway.getApp(app)).provisioningState, "InProgress");
    } finally {
      await slow.stop();
    }
  });

  it("in multiple revision mode, sends all traffic to the named revision only when asked", async () => {
    const gateway = createContainerAppsGateway(gatewayOptions(emulator));
    const app = { subscriptionId: SUB, resourceGroup: "rg-apps", appName: `multi-${++n}` };
    const initial = `${app.appName}--initial`;
    emulator.addContainerApp(app, {
      containers: [{ name: "web", image: "registry.local/web:v1" }],
      revisionSuffix: "initial",
      activeRevisionsMode: "Multiple",
      traffic: [{ revisionName: initial, weight: 100 }],
    });
    const started = await gateway.updateImage(app, {
      containerName: "web",
      image: "registry.local/web:v2",
      revisionSuffix: "m2",
    });
    assert.equal(started.activeRevisionsMode, "Multiple");
    const weights = () =>
      Object.fromEntries(
        emulator.getContainerApp(app)?.revisions.map((r) => [r.name, r.trafficWeight]) ?? [],
      );
    await waitFor(
      () => gateway.getRevision(app, started.revisionName),
      (r) => r.healthState === "Healthy",
    );
    assert.deepEqual(weights(), { [initial]: 100, [started.revisionName]: 0 }, "Azure moved nothing");

    await gateway.sendAllTraffic(app, started.revisionName);

    assert.deepEqual(weights(), { [initial]: 0, [started.revisionName]: 100 });
    const patch = emulator.requests.findLast(
      (r) => r.method === "PATCH" && r.path.endsWith(`/${app.appName}`),
    );
    assert.deepEqual(JSON.parse(patch!.body), {
      location: "West US",
      properties: {
        configuration: { ingress: { traffic: [{ revisionName: started.revisionName, weight: 100 }] } },
      },
    });
  });

  it("surfaces an update while the app is provisioning as ConflictError with Azure's code", async () => {
    const slow = await startArmEmulator({ provisioningMs: 5_000 });
    try {
      const app = { subscriptionId: SUB, resourceGroup: "rg", appName: "busy" };
      slow.addContainerApp(app, { containers: [{ name: "web", image: "a:1" }] });
      const gateway = createContainerAppsGateway(gatewayOptions(slow));
      // Left running: stopping the emulator ends it.
      const first = gateway
        .updateImage(app, { containerName: "web", image: "a:2", revisionSuffix: "r2" })
        .catch(() => undefined);
      await waitFor(
        () => Promise.resolve(slow.getContainerApp(app)?.provisioningState),
        (s) => s === "InProgress",
      );
      const error = await gateway
        .updateImage(app, { containerName: "web", image: "a:3", revisionSuffix: "r3" })
        .catch((e: unknown) => e);
      assert.ok(error instanceof ConflictError);
      assert.equal(error.code, "ContainerAppOperationInProgress");
      void first;
    } finally {
      await slow.stop();
    }
  });

  it("reports an unknown revision as NotFoundError", async () => {
    const gateway = createContainerAppsGateway(gatewayOptions(emulator));
    const app = newApp();
    await assert.rejects(gateway.getRevision(app, `${app.appName}--nope`), NotFoundError);
  });
});
