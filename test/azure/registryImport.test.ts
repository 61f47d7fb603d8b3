/**
 * ACR's import through the product's gateway (`@azure/arm-containerregistry` 12.0.0, over HTTPS)
 * against the ARM emulator, which copies between two real local registries: the digest is the same
 * after the import, and the emulator refuses what Azure refuses (bad body, unknown registries, a
 * missing source image, an existing tag with NoForce).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ContainerRegistryManagementClient } from "@azure/arm-containerregistry";
import { createRegistryImportGateway } from "../../src/azure/registryImport.js";
import { registryResourceId } from "../../src/core/promotion.js";
import { isFastBuildError } from "../../src/core/errors.js";
import { startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";
import { gatewayOptions, staticCredential, SUB } from "./armHelpers.js";
import { pushImage } from "./registryImages.js";

const SOURCE = { subscriptionId: SUB, resourceGroup: "rg-reg", registryName: "sourcereg" };
const TARGET = { subscriptionId: SUB, resourceGroup: "rg-reg", registryName: "targetreg" };

describe("ACR import against the ARM emulator", () => {
  let arm: ArmEmulator;
  let source: LocalRegistry;
  let target: LocalRegistry;

  before(async () => {
    [arm, source, target] = await Promise.all([startArmEmulator(), startRegistry(), startRegistry()]);
    arm.addRegistry(SOURCE, { loginServer: source.host, storeUrl: source.url });
    arm.addRegistry(TARGET, { loginServer: target.host, storeUrl: target.url });
  });
  after(async () => {
    await Promise.all([arm?.stop(), source?.stop(), target?.stop()]);
  });

  const digestIn = async (registry: LocalRegistry, repository: string, tag: string) =>
    (
      await fetch(`${registry.url}/v2/${repository}/manifests/${tag}`, {
        method: "HEAD",
        headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
      })
    ).headers.get("docker-content-digest");

  /** The raw SDK client, to send what the product never sends. */
  const sdk = () =>
    new ContainerRegistryManagementClient(staticCredential, SUB, {
      endpoint: arm.endpoint,
      credentials: { scopes: ["https://management.azure.com/.default"] },
      tlsOptions: { ca: arm.ca },
      retryOptions: { maxRetries: 0 },
    });

  it("copies the manifest and its blobs by digest: the target has the same digest under the new tag", async () => {
    const digest = await pushImage(source.url, "team/app", "v1", "import-1");
    const gateway = createRegistryImportGateway(gatewayOptions(arm));
    await gateway.importImage(TARGET, {
      sourceResourceId: registryResourceId(SOURCE),
      sourceImage: `team/app@${digest}`,
      targetTags: ["team/app:promoted"],
    });
    assert.equal(await digestIn(target, "team/app", "promoted"), digest);
    const post = arm.requests.find((r) => r.method === "POST" && r.path.endsWith("/importImage"));
    assert.equal(post?.apiVersion, "2025-11-01");
    assert.deepEqual(JSON.parse(post.body), {
      source: { resourceId: registryResourceId(SOURCE), sourceImage: `team/app@${digest}` },
      targetTags: ["team/app:promoted"],
      mode: "Force",
    });
  });

  it("fails the operation with ImageNotFound when the source registry lacks the digest", async () => {
    const gateway = createRegistryImportGateway(gatewayOptions(arm));
    await assert.rejects(
      gateway.importImage(TARGET, {
        sourceResourceId: registryResourceId(SOURCE),
        sourceImage: `team/app@sha256:${"0".repeat(64)}`,
        targetTags: ["team/app:nothing"],
      }),
      (error: unknown) =>
        isFastBuildError(error) && /was not found in the source registry/.test(error.message),
    );
  });

  it("answers 404 for an unknown target registry and for an unknown source registry", async () => {
    const gateway = createRegistryImportGateway(gatewayOptions(arm));
    const image = { sourceImage: "team/app:v1", targetTags: ["team/app:v1"] };
    await assert.rejects(
      gateway.importImage(
        { ...TARGET, registryName: "nosuchreg" },
        { ...image, sourceResourceId: registryResourceId(SOURCE) },
      ),
      (error: unknown) => isFastBuildError(error) && error.kind === "not-found",
    );
    await assert.rejects(
      gateway.importImage(TARGET, {
        ...image,
        sourceResourceId: registryResourceId({ ...SOURCE, registryName: "elsewhere" }),
      }),
      (error: unknown) =>
        isFastBuildError(error) && error.kind === "not-found" && /source registry/.test(error.message),
    );
  });

  it("refuses a bad body with 400 before it starts anything", async () => {
    const client = sdk();
    const bad = [
      {
        source: { resourceId: registryResourceId(SOURCE), sourceImage: "Team/App:v1" },
        message: /source image/,
      },
      { source: { sourceImage: "team/app:v1" }, message: /Exactly one of/ },
      {
        source: { resourceId: "/subscriptions/x/nothing", sourceImage: "team/app:v1" },
        message: /not a container registry/,
      },
      {
        source: { registryUri: "docker.io", sourceImage: "library/busybox:latest" },
        message: /only from another registry/,
      },
      {
        source: { resourceId: registryResourceId(SOURCE), sourceImage: "team/app:v1" },
        targetTags: ["BAD TAG"],
        message: /target tag/,
      },
    ];
    for (const { message, ...parameters } of bad) {
      await assert.rejects(
        client.registries.importImage(TARGET.resourceGroup, TARGET.registryName, parameters),
        (error: unknown) =>
          (error as { statusCode?: number }).statusCode === 400 &&
          message.test(String((error as Error).message)),
        JSON.stringify(parameters),
      );
    }
  });

  it("with NoForce, fails the operation when a target tag exists, and copies nothing", async () => {
    await pushImage(source.url, "team/app", "v2", "import-2");
    const existing = await pushImage(target.url, "team/app", "taken", "already-here");
    await assert.rejects(
      sdk().registries.importImage(TARGET.resourceGroup, TARGET.registryName, {
        source: { resourceId: registryResourceId(SOURCE), sourceImage: "team/app:v2" },
        targetTags: ["team/app:taken"],
        mode: "NoForce",
      }),
      /already exists/,
    );
    assert.equal(await digestIn(target, "team/app", "taken"), existing);
  });
});
