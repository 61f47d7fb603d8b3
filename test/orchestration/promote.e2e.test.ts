/**
 * The deploy orchestration (promotions and rollbacks) end to end on the local cloud: durable
 * functions' replay engine, the real activities over the real SDK clients (ACR's import,
 * Container Apps) against the ARM emulator, two real registries.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { loadConfig, type EnvironmentConfig } from "../../src/config/index.js";
import {
  DEPLOY_ORCHESTRATOR,
  PROMOTION_EVENTS,
  type DeployInput,
  type DeployStatus,
} from "../../src/core/promotion.js";
import { deployOrchestrator, promotedTag } from "../../src/orchestration/promote.js";
import { createActivities, createDeps } from "../../src/wiring.js";
import { startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { createContainerAppsGateway } from "../../src/azure/containerApps.js";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";
import { OrchestrationDriver } from "@fast-build/local-cloud/durable/driver";
import { gatewayOptions, SUB, testWiring } from "../azure/armHelpers.js";
import { pushImage } from "../azure/registryImages.js";

const START = new Date(Date.UTC(2030, 0, 1, 12));

describe("deploy orchestration: promote and roll back", () => {
  let azurite: Azurite;
  let arm: ArmEmulator;
  let sim: LocalRegistry;
  let staging: LocalRegistry;
  let n = 0;

  before(async () => {
    [azurite, arm, sim, staging] = await Promise.all([
      startAzurite(),
      startArmEmulator({ failRevisionsWithImage: /unhealthy/, revisionReadyMs: 30 }),
      startRegistry(),
      startRegistry(),
    ]);
    arm.addRegistry(
      { subscriptionId: SUB, resourceGroup: "rg-sim", registryName: "simregistry" },
      { loginServer: sim.host, storeUrl: sim.url },
    );
    arm.addRegistry(
      { subscriptionId: SUB, resourceGroup: "rg-staging", registryName: "stagingregistry" },
      { loginServer: staging.host, storeUrl: staging.url },
    );
  });
  after(async () => {
    await Promise.all([azurite?.stop(), arm?.stop(), sim?.stop(), staging?.stop()]);
  });

  const SOURCE_ID = `/subscriptions/${SUB}/resourceGroups/rg-sim/providers/Microsoft.ContainerRegistry/registries/simregistry`;

  function setUp(
    approval?: { required: boolean; approvers: string[]; timeoutHours: number },
    emulator: ArmEmulator = arm,
    settings: Record<string, string> = {},
  ) {
    const k = ++n;
    const env = (
      name: string,
      registry: LocalRegistry,
      rg: string,
      registryName: string,
    ): EnvironmentConfig => ({
      name,
      subscriptionId: SUB,
      resourceGroup: rg,
      builderVm: `builder-${name}`,
      registry: registry.host,
      imageRepository: "team/app",
      containerApp: `app-${name}`,
      containerName: "web",
      binaryName: "app",
      registryResource: { resourceGroup: rg, name: registryName },
    });
    const from = env(`sim${k}`, sim, "rg-sim", "simregistry");
    const to = {
      ...env(`staging${k}`, staging, "rg-staging", "stagingregistry"),
      ...(approval ? { approval } : {}),
    };
    for (const e of [from, to]) {
      emulator.addContainerApp(
        { subscriptionId: SUB, resourceGroup: e.resourceGroup, appName: e.containerApp },
        { containers: [{ name: "web", image: "registry.example.test/team/app:old" }], revisionSuffix: "old" },
      );
    }
    const config = loadConfig({
      FASTBUILD_ENVIRONMENTS: JSON.stringify({ [from.name]: from, [to.name]: to }),
      AzureWebJobsStorage: azurite.connectionString,
      FASTBUILD_COMPUTE_ENDPOINT: emulator.endpoint,
      FASTBUILD_CONTAINERAPPS_ENDPOINT: emulator.endpoint,
      ...settings,
    });
    const wiring = testWiring(emulator);
    const deps = createDeps({
      ...wiring,
      tlsCa: `${wiring.tlsCa ?? ""}\n${sim.ca}\n${staging.ca}`,
      registryOptions: {
        endpoints: { [sim.host]: sim.loginUrl, [staging.host]: staging.loginUrl },
        maxRetries: 0,
      },
      config,
    });
    return { from, to, activities: createActivities(deps) };
  }

  function input(
    to: EnvironmentConfig,
    overrides: Partial<DeployInput> & Pick<DeployInput, "image">,
  ): DeployInput {
    return {
      id: `p-20300101120000-${randomBytes(4).toString("hex")}`,
      kind: "promote",
      environment: to.name,
      from: "sim",
      createdAt: START.toISOString(),
      sourceRegistryResourceId: SOURCE_ID,
      deployStepsVersion: 6,
      ...(to.approval
        ? {
            approval: {
              required: to.approval.required,
              approvers: to.approval.approvers,
              timeoutMs: to.approval.timeoutHours * 3_600_000,
            },
          }
        : {}),
      ...overrides,
    };
  }

  function driver(activities: ReturnType<typeof setUp>["activities"], deployInput: DeployInput) {
    return new OrchestrationDriver({
      name: DEPLOY_ORCHESTRATOR,
      orchestrator: deployOrchestrator,
      instanceId: deployInput.id,
      input: deployInput,
      activities,
      schema: "V3",
      clock: { kind: "virtual", start: START, realDelayMs: 3 },
      stallTimeoutMs: 20_000,
    });
  }

  const appOf = (e: EnvironmentConfig) =>
    arm.getContainerApp({ subscriptionId: SUB, resourceGroup: e.resourceGroup, appName: e.containerApp });

  it("imports the image by digest into the target registry and deploys that same digest there", async () => {
    const { to, activities } = setUp();
    const digest = await pushImage(sim.url, "team/app", `b-${n}`, `promote-${n}`);
    const d = driver(activities, input(to, { image: { repository: "team/app", digest, source: "test" } }));
    const instance = await d.run();
    const status = instance.output as DeployStatus;
    assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
    assert.equal(status.deploy.import?.digestIdentical, true);
    const head = await fetch(`${staging.url}/v2/team/app/manifests/${promotedTag(digest)}`, {
      method: "HEAD",
      headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
    });
    assert.equal(head.headers.get("docker-content-digest"), digest, "the same digest in the target registry");
    const app = appOf(to)!;
    assert.equal(app.images.web, `${staging.host}/team/app@${digest}`);
    const revision = app.revisions.find((r) => r.name === status.revision?.name);
    assert.equal(revision?.healthState, "Healthy");
    assert.equal(app.latestReadyRevisionName, status.revision?.name);
  });

  it("waits for an approver, then deploys and shows who approved", async () => {
    const { to, activities } = setUp({ required: true, approvers: ["alice@example.com"], timeoutHours: 72 });
    const digest = await pushImage(sim.url, "team/app", `b-${n}`, `approve-${n}`);
    const d = driver(activities, input(to, { image: { repository: "team/app", digest, source: "test" } }));
    d.raiseEvent(PROMOTION_EVENTS.decision, {
      approved: true,
      by: { name: "alice@example.com", id: "oid-alice" },
      at: START.toISOString(),
    });
    const status = (await d.run()).output as DeployStatus;
    assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
    assert.equal(status.deploy.approval?.state, "approved");
    assert.equal(status.deploy.approval?.by?.name, "alice@example.com");
    assert.equal(appOf(to)!.images.web, `${staging.host}/team/app@${digest}`);
  });

  it("ends cancelled with nothing imported or deployed when the promotion is rejected", async () => {
    const { to, activities } = setUp({ required: true, approvers: ["alice@example.com"], timeoutHours: 72 });
    const digest = await pushImage(sim.url, "team/app", `b-${n}`, `reject-${n}`);
    const d = driver(activities, input(to, { image: { repository: "team/app", digest, source: "test" } }));
    d.raiseEvent(PROMOTION_EVENTS.decision, {
      approved: false,
      by: { name: "alice@example.com" },
      at: START.toISOString(),
      reason: "not this week",
    });
    const status = (await d.run()).output as DeployStatus;
    assert.equal(status.phase, "cancelled");
    assert.equal(status.error?.code, "Rejected");
    assert.match(status.error?.message ?? "", /not this week/);
    assert.equal(status.deploy.approval?.state, "rejected");
    assert.equal(appOf(to)!.images.web, "registry.example.test/team/app:old");
  });

  it("fails ApprovalTimedOut when nobody decides before the approval's deadline", async () => {
    const { to, activities } = setUp({ required: true, approvers: ["alice@example.com"], timeoutHours: 48 });
    const digest = await pushImage(sim.url, "team/app", `b-${n}`, `timeout-${n}`);
    const d = driver(activities, input(to, { image: { repository: "team/app", digest, source: "test" } }));
    const instance = await d.run();
    const status = instance.output as DeployStatus;
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "ApprovalTimedOut");
    assert.equal(status.deploy.approval?.state, "timed-out");
    assert.deepEqual(d.openTimers(), []);
    assert.equal(appOf(to)!.images.web, "registry.example.test/team/app:old");
  });

  it("fails with the import's reason when the source registry lacks the digest", async () => {
    const { to, activities } = setUp();
    const missing = `sha256:${"e".repeat(64)}`;
    const d = driver(
      activities,
      input(to, { image: { repository: "team/app", digest: missing, source: "test" } }),
    );
    const status = (await d.run()).output as DeployStatus;
    assert.equal(status.phase, "failed");
    assert.match(status.error?.message ?? "", /not found/i);
    assert.equal(appOf(to)!.images.web, "registry.example.test/team/app:old");
  });

  it("a rollback to an image whose revision turns unhealthy fails DeployFailed; the previous revision keeps serving", async () => {
    const { from, activities } = setUp();
    const digest = await pushImage(sim.url, "team/unhealthy", `b-${n}`, `bad-${n}`);
    const before = appOf(from)!.latestReadyRevisionName;
    const d = driver(
      activities,
      input(from, {
        id: `r-20300101120000-${randomBytes(4).toString("hex")}`,
        kind: "rollback",
        environment: from.name,
        image: { repository: "team/unhealthy", digest, source: "revision x" },
      }),
    );
    const status = (await d.run()).output as DeployStatus;
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "DeployFailed");
    assert.equal(appOf(from)!.latestReadyRevisionName, before);
  });

  it("waits for another deploy's revision that is still starting, and ends DeployInProgress with nothing deployed when it never becomes ready", async () => {
    // Revisions here never become ready: another deploy stays under way.
    const stuck = await startArmEmulator({ revisionReadyMs: 24 * 3_600_000 });
    try {
      const { from, activities } = setUp(undefined, stuck, { FASTBUILD_DEPLOY_TIMEOUT_MINUTES: "1" });
      const ref = { subscriptionId: SUB, resourceGroup: from.resourceGroup, appName: from.containerApp };
      const gateway = createContainerAppsGateway(gatewayOptions(stuck));
      await gateway.updateImage(ref, {
        containerName: "web",
        image: "registry.example.test/team/app:other",
        revisionSuffix: "other",
      });
      const digest = await pushImage(sim.url, "team/app", `b-${n}`, `stuck-${n}`);
      const d = driver(
        activities,
        input(from, {
          id: `r-20300101120000-${randomBytes(4).toString("hex")}`,
          kind: "rollback",
          environment: from.name,
          image: { repository: "team/app", digest, source: "revision x" },
        }),
      );
      const status = (await d.run()).output as DeployStatus;
      assert.equal(status.phase, "failed");
      assert.equal(status.error?.code, "DeployInProgress");
      const app = stuck.getContainerApp(ref)!;
      assert.equal(app.images.web, "registry.example.test/team/app:other", "not patched by the rollback");
      assert.equal(app.revisions.length, 2, "the initial revision and the other deploy's only");
    } finally {
      await stuck.stop();
    }
  });
});
