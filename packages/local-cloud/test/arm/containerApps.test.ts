/** Container-app updates whose revision fails, and traffic in Single and Multiple revision mode. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ContainerAppsAPIClient } from "@azure/arm-appcontainers";
import { startArmEmulator, type ArmEmulator } from "../../src/arm/index.js";
import { appsClient, POLL, SUB } from "./sdk.js";

const RG = "rg-apps";

describe("container app updates", () => {
  let emulator: ArmEmulator;
  let apps: ContainerAppsAPIClient;
  before(async () => {
    emulator = await startArmEmulator({ failRevisionsWithImage: /:broken$/, revisionReadyMs: 30 });
    apps = appsClient(emulator);
  });
  after(async () => {
    await emulator.stop();
  });

  const update = (appName: string, image: string) =>
    apps.containerApps.beginUpdateAndWait(
      RG,
      appName,
      // A new suffix per image: the initial revision's suffix would otherwise merge into the patch.
      {
        location: "West US",
        template: { revisionSuffix: image.split(":")[1], containers: [{ name: "web", image }] },
      },
      POLL,
    );
  const weights = async (appName: string) => {
    const revisions: Record<string, { weight: number; active: boolean; state: string }> = {};
    for await (const r of apps.containerAppsRevisions.listRevisions(RG, appName)) {
      revisions[r.name!] = {
        weight: r.trafficWeight ?? 0,
        active: r.active ?? false,
        state: r.provisioningState ?? "",
      };
    }
    return revisions;
  };

  it("fails the update's long-running operation when the new revision fails to provision", async () => {
    emulator.addContainerApp(
      { subscriptionId: SUB, resourceGroup: RG, appName: "failing" },
      { containers: [{ name: "web", image: "repo/web:v1" }], revisionSuffix: "v1" },
    );
    await assert.rejects(update("failing", "repo/web:broken"), (error: { code?: string }) => {
      assert.equal(error.code, "ContainerAppOperationError");
      return true;
    });
    const app = await apps.containerApps.get(RG, "failing");
    assert.equal(app.provisioningState, "Failed");
    assert.equal(app.latestReadyRevisionName, "failing--v1");
  });

  it("in Multiple revision mode leaves traffic where ingress.traffic puts it", async () => {
    emulator.addContainerApp(
      { subscriptionId: SUB, resourceGroup: RG, appName: "multi" },
      {
        containers: [{ name: "web", image: "repo/web:v1" }],
        revisionSuffix: "v1",
        activeRevisionsMode: "Multiple",
        traffic: [{ revisionName: "multi--v1", weight: 100 }],
      },
    );
    const updated = await update("multi", "repo/web:v2");
    const revisions = await weights("multi");
    const fresh = updated.latestRevisionName!;
    assert.deepEqual(revisions["multi--v1"], { weight: 100, active: true, state: "Provisioned" });
    assert.deepEqual(revisions[fresh], { weight: 0, active: true, state: "Provisioned" });
  });

  it("in Single revision mode moves all traffic to the new revision", async () => {
    emulator.addContainerApp(
      { subscriptionId: SUB, resourceGroup: RG, appName: "single" },
      { containers: [{ name: "web", image: "repo/web:v1" }], revisionSuffix: "v1" },
    );
    const updated = await update("single", "repo/web:v2");
    const revisions = await weights("single");
    assert.equal(revisions[updated.latestRevisionName!]?.weight, 100);
    assert.deepEqual(revisions["single--v1"], { weight: 0, active: false, state: "Provisioned" });
  });
});
