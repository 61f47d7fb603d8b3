/**
 * `fast-build promote`, `approve`, `reject`, `rollback` and `promotion` in-process against the real
 * API on the local host (the app's own registrations, App Service authentication modelled by the
 * host), the durable engine running both orchestrators, the real SDK clients against the ARM
 * emulator (ACR's import, Container Apps), two real registries. Every refusal has its exit code.
 */
import "@fast-build/local-cloud/host";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { main } from "../../src/cli/main.js";
import { loadConfig } from "../../src/config/index.js";
import { BUILD_ORCHESTRATOR } from "../../src/core/activityContract.js";
import { ORCHESTRATOR_VERSION, type BuildInput } from "../../src/core/buildInput.js";
import { DEPLOY_ORCHESTRATOR, type DeployStatus } from "../../src/core/promotion.js";
import { setDeps } from "../../src/functions/deps.js";
import { buildOrchestrator } from "../../src/orchestration/build.js";
import { deployOrchestrator, promotedTag } from "../../src/orchestration/promote.js";
import { createActivities, createDeps } from "../../src/wiring.js";
import { startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { LocalDurableEngine } from "@fast-build/local-cloud/durable/localEngine";
import { startLocalHost, type LocalHost } from "@fast-build/local-cloud/host";
import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";
import { SUB, testWiring, waitFor } from "../azure/armHelpers.js";
import { pushImage } from "../azure/registryImages.js";
import { Capture } from "./cliHost.js";

const KEY = "promote-test-function-key";

/** A signed-in user's token as the local host's App Service authentication reads it (unsigned). */
function userToken(name: string, oid: string): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  return `${part({ alg: "none", typ: "JWT" })}.${part({ preferred_username: name, oid, iat: now, exp: now + 3600 })}.`;
}
const ALICE = userToken("alice@example.com", "oid-alice");
const BOB = userToken("bob@example.com", "oid-bob");
const MALLORY = userToken("mallory@example.com", "oid-mallory");

describe("fast-build promote, approve, reject, rollback against the real API", () => {
  let azurite: Azurite;
  let arm: ArmEmulator;
  let simRegistry: LocalRegistry;
  let stagingRegistry: LocalRegistry;
  let engine: LocalDurableEngine;
  let host: LocalHost;
  let deps: ReturnType<typeof createDeps>;
  let first: string;
  let second: string;
  const app = (name: string) => ({ subscriptionId: SUB, resourceGroup: "rg-apps", appName: name });

  before(async () => {
    [azurite, arm, simRegistry, stagingRegistry] = await Promise.all([
      startAzurite(),
      startArmEmulator({ failRevisionsWithImage: /unhealthy/, revisionReadyMs: 30 }),
      startRegistry(),
      startRegistry(),
    ]);
    arm.addRegistry(
      { subscriptionId: SUB, resourceGroup: "rg-reg", registryName: "simregistry" },
      { loginServer: simRegistry.host, storeUrl: simRegistry.url },
    );
    arm.addRegistry(
      { subscriptionId: SUB, resourceGroup: "rg-reg", registryName: "stagingregistry" },
      { loginServer: stagingRegistry.host, storeUrl: stagingRegistry.url },
    );
    first = await pushImage(simRegistry.url, "apps/demo", "first", "first");
    second = await pushImage(simRegistry.url, "apps/demo", "second", "second");
    const env = (appName: string, registry: LocalRegistry, registryName?: string) => ({
      subscriptionId: SUB,
      resourceGroup: "rg-apps",
      builderVm: `builder-${appName}`,
      registry: registry.host,
      imageRepository: "apps/demo",
      containerApp: appName,
      containerName: "main",
      binaryName: "app",
      ...(registryName ? { registryResource: { resourceGroup: "rg-reg", name: registryName } } : {}),
    });
    for (const name of ["sim-app", "staging-app", "plain-app", "auto-app", "broken-app"]) {
      arm.addContainerApp(app(name), {
        containers: [{ name: "main", image: `${simRegistry.host}/apps/demo@${first}` }],
        revisionSuffix: "one",
      });
    }
    const config = loadConfig({
      FASTBUILD_ENVIRONMENTS: JSON.stringify({
        sim: env("sim-app", simRegistry, "simregistry"),
        staging: {
          ...env("staging-app", stagingRegistry, "stagingregistry"),
          approval: { required: true, approvers: ["alice@example.com", "bob@example.com"], timeoutHours: 72 },
        },
        auto: env("auto-app", stagingRegistry, "stagingregistry"),
        plain: env("plain-app", simRegistry),
        broken: env("broken-app", simRegistry),
      }),
      AzureWebJobsStorage: azurite.connectionString,
      FASTBUILD_COMPUTE_ENDPOINT: arm.endpoint,
      FASTBUILD_CONTAINERAPPS_ENDPOINT: arm.endpoint,
      FASTBUILD_AUTH: "appservice",
    });
    const wiring = testWiring(arm);
    deps = createDeps({
      ...wiring,
      tlsCa: `${wiring.tlsCa ?? ""}\n${simRegistry.ca}\n${stagingRegistry.ca}`,
      registryOptions: {
        endpoints: {
          [simRegistry.host]: simRegistry.loginUrl,
          [stagingRegistry.host]: stagingRegistry.loginUrl,
        },
        maxRetries: 0,
      },
      config,
    });
    setDeps(deps);
    engine = new LocalDurableEngine({
      orchestrators: new Map([
        [BUILD_ORCHESTRATOR, buildOrchestrator],
        [DEPLOY_ORCHESTRATOR, deployOrchestrator],
      ]),
      activities: createActivities(deps),
      clock: { kind: "real" },
      log: () => undefined,
    });
    host = await startLocalHost({
      entry: new URL("../../src/functions/index.ts", import.meta.url).href,
      engine,
      functionKey: KEY,
      easyAuth: true,
      log: () => undefined,
    });
    // The sim app moves on to the second image, so it has a previous healthy one to go back to.
    await deps.apps.updateImage(app("sim-app"), {
      containerName: "main",
      image: `${simRegistry.host}/apps/demo@${second}`,
      revisionSuffix: "two",
    });
    await waitFor(
      () => Promise.resolve(arm.getContainerApp(app("sim-app"))?.latestReadyRevisionName),
      (ready) => ready === "sim-app--two",
    );
  });
  after(async () => {
    await host?.stop();
    await engine?.stop();
    setDeps(undefined);
    await Promise.all([azurite?.stop(), arm?.stop(), simRegistry?.stop(), stagingRegistry?.stop()]);
  });

  function cli(argv: string[], token?: string) {
    const stdout = new Capture();
    const stderr = new Capture();
    const done = main(argv, {
      stdout,
      stderr,
      env: {
        FASTBUILD_API_KEY: KEY,
        FASTBUILD_API_URL: host.url,
        ...(token ? { FASTBUILD_API_TOKEN: token } : {}),
      },
      pollIntervalMs: 50,
    });
    return {
      stdout,
      stderr,
      result: done.then((code) => ({ code, stdout: stdout.text, stderr: stderr.text })),
    };
  }
  const run = (argv: string[], token?: string) => cli(argv, token).result;

  /** The promotion id the running command printed. */
  async function idFrom(capture: Capture): Promise<string> {
    const text = await waitFor(
      () => Promise.resolve(capture.text),
      (t) => /promotion p-\S+:/.test(t),
    );
    return /promotion (p-\S+):/.exec(text)![1]!;
  }

  it("promote waits for an approver; approve by a listed user deploys the same digest, and the status shows who", async () => {
    const promote = cli(["promote", "sim", "staging", "--json"], ALICE);
    const id = await idFrom(promote.stderr);

    const self = await run(["approve", id], ALICE);
    assert.equal(self.code, 5, self.stderr);
    assert.match(self.stderr, /alice@example\.com requested this promotion and cannot also approve it/);

    const stranger = await run(["approve", id], MALLORY);
    assert.equal(stranger.code, 5, stranger.stderr);
    assert.match(stranger.stderr, /mallory@example\.com may not approve/);
    assert.match(stranger.stderr, /Approvers: alice@example\.com, bob@example\.com/);

    const anonymous = await run(["approve", id]);
    assert.equal(anonymous.code, 5);
    assert.match(anonymous.stderr, /no signed-in user/);

    const approved = await run(["approve", id], BOB);
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(approved.stdout, new RegExp(`${id}: approved`));

    const done = await promote.result;
    assert.equal(done.code, 0, done.stderr);
    const status = JSON.parse(done.stdout) as DeployStatus;
    assert.equal(status.phase, "succeeded");
    assert.equal(status.deploy.approval?.state, "approved");
    assert.equal(status.deploy.approval?.by?.name, "bob@example.com");
    assert.equal(status.deploy.requestedBy?.name, "alice@example.com");
    assert.equal(status.deploy.import?.digestIdentical, true);
    assert.match(done.stderr, /approval: approved by bob@example\.com/);
    assert.match(done.stderr, /import: done/);
    assert.equal(
      arm.getContainerApp(app("staging-app"))?.images.main,
      `${stagingRegistry.host}/apps/demo@${second}`,
    );
    const head = await fetch(`${stagingRegistry.url}/v2/apps/demo/manifests/${promotedTag(second)}`, {
      method: "HEAD",
      headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
    });
    assert.equal(head.headers.get("docker-content-digest"), second);

    const shown = await run(["promotion", id]);
    assert.equal(shown.code, 0);
    assert.match(
      shown.stdout,
      /^promote p-\S+ to staging: succeeded\napproval: approved by bob@example\.com/,
    );

    const late = await run(["approve", id], BOB);
    assert.equal(late.code, 5);
    assert.match(late.stderr, /is not waiting for a decision/);
  });

  it("reject ends the promotion cancelled (exit 3) with nothing deployed", async () => {
    const before = arm.getContainerApp(app("staging-app"))?.images.main;
    const promote = cli(["promote", "sim", "staging"]);
    const id = await idFrom(promote.stdout);
    const rejected = await run(["reject", id, "--reason", "freeze week"], ALICE);
    assert.equal(rejected.code, 0, rejected.stderr);
    const done = await promote.result;
    assert.equal(done.code, 3, done.stdout + done.stderr);
    assert.match(done.stdout, /approval: rejected by alice@example\.com at \S+: freeze week/);
    assert.equal(arm.getContainerApp(app("staging-app"))?.images.main, before);
  });

  it("promote to an environment without approval deploys at once; --no-follow returns with the id", async () => {
    const started = await run(["promote", "sim", "auto", "--no-follow"]);
    assert.equal(started.code, 0, started.stderr);
    const id = /promotion (p-\S+):/.exec(started.stdout)![1]!;
    assert.match(started.stdout, new RegExp(`follow it with: fast-build promotion ${id}`));
    await waitFor(
      () => Promise.resolve(arm.getContainerApp(app("auto-app"))?.images.main),
      (image) => image === `${stagingRegistry.host}/apps/demo@${second}`,
    );
  });

  it("rollback goes back to the previous healthy image by digest; with nothing else to go to it is refused (exit 5)", async () => {
    const back = await run(["rollback", "sim", "--json"]);
    assert.equal(back.code, 0, back.stderr);
    const status = JSON.parse(back.stdout) as DeployStatus;
    assert.equal(status.phase, "succeeded");
    assert.equal(status.deploy.kind, "rollback");
    assert.equal(arm.getContainerApp(app("sim-app"))?.images.main, `${simRegistry.host}/apps/demo@${first}`);

    const nothing = await run(["rollback", "plain"]);
    assert.equal(nothing.code, 5, nothing.stderr);
    assert.match(nothing.stderr, /there is nothing to go back to/);
  });

  it("rollback after a deploy whose revision failed goes back to the healthy image (a failed revision is no deploy under way)", async () => {
    const bad = await pushImage(simRegistry.url, "apps/unhealthy", "bad", "bad");
    await deps.apps.updateImage(app("broken-app"), {
      containerName: "main",
      image: `${simRegistry.host}/apps/unhealthy@${bad}`,
      revisionSuffix: "bad",
    });
    await waitFor(
      () =>
        Promise.resolve(
          arm.getContainerApp(app("broken-app"))?.revisions.find((r) => r.name === "broken-app--bad"),
        ),
      (r) => r?.provisioningState === "Failed",
    );
    const back = await run(["rollback", "broken"]);
    assert.equal(back.code, 0, back.stderr);
    assert.equal(
      arm.getContainerApp(app("broken-app"))?.images.main,
      `${simRegistry.host}/apps/demo@${first}`,
    );
  });

  it("rollback --to a revision name deploys that revision's image; an unknown one exits 2", async () => {
    const to = await run(["rollback", "sim", "--to", "sim-app--two"]);
    assert.equal(to.code, 0, to.stderr);
    assert.equal(arm.getContainerApp(app("sim-app"))?.images.main, `${simRegistry.host}/apps/demo@${second}`);

    const unknown = await run(["rollback", "sim", "--to", "sim-app--nope"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /the app has no revision named sim-app--nope/);
  });

  it("promote --build ID promotes the digest that build deployed; a build of another environment is refused (exit 5)", async () => {
    // A build whose source image the registry has: the orchestrator deploys its digest without a builder.
    const hex = randomBytes(32).toString("hex");
    const built = await pushImage(simRegistry.url, "apps/demo", `src-${hex}`, `build-${hex}`);
    const buildId = `20261203000000-${randomBytes(5).toString("hex")}`;
    const input: BuildInput = {
      buildId,
      environment: "auto",
      sourceDigest: `sha256:${hex}`,
      baseKey: "c".repeat(64),
      rebuildBase: false,
      deploy: true,
      callbackToken: randomBytes(24).toString("base64url"),
      createdAt: new Date().toISOString(),
      orchestratorVersion: ORCHESTRATOR_VERSION,
    };
    // auto's registry is staging's: push the build's image there too, as the builder would.
    await pushImage(stagingRegistry.url, "apps/demo", `src-${hex}`, `build-${hex}`);
    await engine.startNew(BUILD_ORCHESTRATOR, buildId, input);
    const ended = await engine.waitForCompletion(buildId, 60_000);
    assert.equal((ended.output as { phase?: string }).phase, "succeeded", JSON.stringify(ended.output));

    const wrong = await run(["promote", "sim", "staging", "--build", buildId]);
    assert.equal(wrong.code, 5, wrong.stderr);
    assert.match(wrong.stderr, new RegExp(`build ${buildId} was a build of auto, not of sim`));

    const promoted = await run(["promote", "auto", "plain", "--build", buildId]);
    assert.equal(promoted.code, 2, "plain has no registryResource");
    const ok = await run(["promote", "auto", "sim", "--build", buildId, "--json"]);
    assert.equal(ok.code, 0, ok.stderr);
    const status = JSON.parse(ok.stdout) as DeployStatus;
    assert.equal(status.deploy.image.digest, built);
    assert.equal(status.deploy.image.source, `build ${buildId}`);
    assert.equal(arm.getContainerApp(app("sim-app"))?.images.main, `${simRegistry.host}/apps/demo@${built}`);
  });

  it("refuses bad input before anything starts (exit 2), with what to type instead", async () => {
    const cases: [string[], RegExp][] = [
      [["promote", "sim"], /needs two environments/],
      [["promote", "sim", "sim"], /both sim: promote to another environment/],
      [
        ["promote", "sim", "nowhere"],
        /unknown environment "nowhere"\nhint: Use one of: sim, staging, auto, plain/,
      ],
      [["promote", "sim", "plain"], /plain has no registryResource/],
      [["promote", "sim", "staging", "--build", "NOT A BUILD"], /is not a build id/],
      [["promote", "sim", "staging", "--to", "x"], /--to is not an option of `fast-build promote`/],
      [["approve", "bogus"], /"bogus" is not a promotion or rollback id/],
      [["approve", "p-20260101000000-0000abcd"], /No promotion or rollback with id/],
      [["reject", "p-20260101000000-0000abcd", "--reason", ""], /--reason needs a value/],
      [["rollback"], /needs an environment/],
      [["rollback", "sim", "--to", "bad name!"], /neither a revision name nor a build id/],
      [["rollback", "nowhere"], /unknown environment "nowhere"/],
    ];
    for (const [argv, expected] of cases) {
      const result = await run(argv);
      assert.equal(result.code, 2, `${argv.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, expected, argv.join(" "));
    }
  });
});
