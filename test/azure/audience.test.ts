/**
 * Token audiences through the real SDK clients and the wiring, against two ARM emulators: one like
 * Azure Stack Hub (its own audience, published at /metadata/endpoints) for the builder VM, one like
 * public Azure for the Container App, as an Azure Stack Hub deployment has them.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { TokenCredential } from "@azure/identity";
import { startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { loadConfig } from "../../src/config/index.js";
import { PermanentError, UnauthorizedError } from "../../src/core/errors.js";
import { createDeps } from "../../src/wiring.js";
import { MINIMAL_SETTINGS } from "../config/settings.js";
import { staticCredential, SUB } from "./armHelpers.js";

const STACK_AUDIENCE = "https://management.stackhub.test/6b1f0a3e-0000-4000-8000-00000000a0d1";

/** `aud` of each bearer token an emulator received on its ARM routes. */
const audiencesSeen = (emulator: ArmEmulator): string[] =>
  emulator.requests
    .filter((r) => !r.path.startsWith("/metadata/"))
    .map((r) => {
      const jwt = (r.headers.authorization ?? "").replace(/^Bearer /, "").split(".")[1] ?? "";
      return (JSON.parse(Buffer.from(jwt, "base64url").toString("utf8")) as { aud: string }).aud;
    });

describe("token audiences: compute on an Azure Stack Hub-like ARM, Container Apps on public ARM", () => {
  let stack: ArmEmulator;
  let cloud: ArmEmulator;
  const vm = { subscriptionId: SUB, resourceGroup: "rg-stack", vmName: "builder" };
  const app = { subscriptionId: SUB, resourceGroup: "rg-apps", appName: "web" };

  before(async () => {
    [stack, cloud] = await Promise.all([
      startArmEmulator({ audiences: [STACK_AUDIENCE] }),
      startArmEmulator(),
    ]);
    stack.addVm(vm, { powerState: "running" });
    cloud.addContainerApp(app, { containers: [{ name: "web", image: "registry.local/web:v1" }] });
  });
  after(async () => {
    await Promise.all([stack?.stop(), cloud?.stop()]);
  });

  /** The product's own wiring over both emulators; `settings` adds or overrides app settings. */
  const wire = (settings: Record<string, string> = {}, credential: TokenCredential = staticCredential) =>
    createDeps({
      config: loadConfig({
        ...MINIMAL_SETTINGS,
        FASTBUILD_COMPUTE_ENDPOINT: stack.endpoint,
        FASTBUILD_CONTAINERAPPS_ENDPOINT: cloud.endpoint,
        FASTBUILD_COMPUTE_PROFILE: "2020-09-01-hybrid",
        ...settings,
      }),
      credential,
      tlsCa: `${stack.ca}\n${cloud.ca}`,
      arm: { retry: { maxRetries: 0 }, pollIntervalMs: 10 },
    });

  it("asks each endpoint's own audience: Stack Hub's from its metadata (once), public Azure's for Container Apps", async () => {
    const scopes: string[] = [];
    const recording: TokenCredential = {
      getToken: (scope, options) => {
        scopes.push(...(Array.isArray(scope) ? scope : [scope]));
        return staticCredential.getToken(scope, options);
      },
    };
    const deps = wire({}, recording);
    assert.equal((await deps.compute.getVmStatus(vm)).powerState, "running");
    assert.equal((await deps.compute.getVmStatus(vm)).powerState, "running");
    assert.equal((await deps.apps.getApp(app)).images.web, "registry.local/web:v1");

    assert.ok(scopes.includes(`${STACK_AUDIENCE}/.default`), `scopes asked: ${scopes.join(", ")}`);
    assert.ok(
      !scopes.includes("https://management.azure.com/.default"),
      "never the SDK's fixed public scope",
    );
    assert.deepEqual([...new Set(audiencesSeen(stack))], [STACK_AUDIENCE]);
    // The public-cloud emulator is not at management.azure.com, so its published audience is used.
    assert.ok(audiencesSeen(cloud).length > 0);
    assert.equal(stack.requests.filter((r) => r.path === "/metadata/endpoints").length, 1, "read once");
  });

  it("uses a configured audience without asking the endpoint", async () => {
    const before = stack.requests.filter((r) => r.path === "/metadata/endpoints").length;
    const deps = wire({ FASTBUILD_COMPUTE_AUDIENCE: STACK_AUDIENCE });
    assert.equal((await deps.compute.getVmStatus(vm)).powerState, "running");
    assert.equal(stack.requests.filter((r) => r.path === "/metadata/endpoints").length, before);
  });

  it("reports a wrong audience as UnauthorizedError with Azure's code and the setting to fix", async () => {
    const deps = wire({ FASTBUILD_COMPUTE_AUDIENCE: "https://management.azure.com" });
    const error = await deps.compute.getVmStatus(vm).catch((e: unknown) => e);
    assert.ok(error instanceof UnauthorizedError, String(error));
    assert.equal(error.code, "InvalidAuthenticationTokenAudience");
    assert.match(error.message, /wrong audience or resource 'https:\/\/management\.azure\.com'/);
    assert.match(error.hint ?? "", /FASTBUILD_COMPUTE_AUDIENCE/);
  });

  it("says so when the endpoint publishes no audience, and names the setting", async () => {
    const bare = await startArmEmulator({ audiences: [STACK_AUDIENCE] });
    try {
      bare.addVm(vm, { powerState: "running" });
      bare.inject({ method: "GET", path: /^\/metadata\/endpoints$/, response: { status: 404 } });
      const deps = createDeps({
        config: loadConfig({ ...MINIMAL_SETTINGS, FASTBUILD_COMPUTE_ENDPOINT: bare.endpoint }),
        credential: staticCredential,
        tlsCa: bare.ca,
        arm: { retry: { maxRetries: 0 } },
      });
      const error = await deps.compute.getVmStatus(vm).catch((e: unknown) => e);
      assert.ok(error instanceof PermanentError, String(error));
      assert.equal(error.code, "AudienceUnknown");
      assert.match(error.hint ?? "", /FASTBUILD_COMPUTE_AUDIENCE/);
    } finally {
      await bare.stop();
    }
  });
});
