/** The revisions list (rollback's choice) through `@azure/arm-appcontainers` against the ARM emulator. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createContainerAppsGateway, createRevisionHistoryGateway } from "../../src/azure/containerApps.js";
import { isFastBuildError } from "../../src/core/errors.js";
import { startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { gatewayOptions, SUB, waitFor } from "./armHelpers.js";

describe("revision history gateway against the ARM emulator", () => {
  let emulator: ArmEmulator;
  before(async () => {
    emulator = await startArmEmulator({ failRevisionsWithImage: /:broken$/, revisionReadyMs: 20 });
  });
  after(async () => {
    await emulator.stop();
  });

  it("lists every revision newest first, with its images, health and creation time", async () => {
    const app = { subscriptionId: SUB, resourceGroup: "rg-rev", appName: "listed" };
    emulator.addContainerApp(app, {
      containers: [{ name: "web", image: "reg.local/web:v1" }],
      revisionSuffix: "one",
    });
    const apps = createContainerAppsGateway(gatewayOptions(emulator));
    await apps.updateImage(app, {
      containerName: "web",
      image: "reg.local/web:broken",
      revisionSuffix: "two",
    });
    await waitFor(
      () => apps.getRevision(app, "listed--two"),
      (r) => r.provisioningState === "Failed",
    );
    const revisions = await createRevisionHistoryGateway(gatewayOptions(emulator)).listRevisions(app);
    assert.deepEqual(
      revisions.map((r) => [r.name, r.images.web, r.provisioningState, r.healthState]),
      [
        ["listed--two", "reg.local/web:broken", "Failed", "Unhealthy"],
        ["listed--one", "reg.local/web:v1", "Provisioned", "Healthy"],
      ],
    );
    assert.ok(revisions.every((r) => typeof r.createdTime === "string"));
  });

  it("answers not found for an unknown app", async () => {
    await assert.rejects(
      createRevisionHistoryGateway(gatewayOptions(emulator)).listRevisions({
        subscriptionId: SUB,
        resourceGroup: "rg-rev",
        appName: "nope",
      }),
      (error: unknown) => isFastBuildError(error) && error.kind === "not-found",
    );
  });
});
