/**
 * `fast-build plan --api` against the real API on the local host, whose registry lookup is the
 * orchestrator's own (src/activities/index.ts `lookUpImages`) asking the local registry through
 * its ACR-faithful front: what the build would do when the registry has neither image, the base,
 * or this source's image; the digest plan prints is the one `dev` sends; an unknown environment
 * and a bad query are refused with their hints.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { main } from "../../src/cli/main.js";
import type { DevPlan } from "../../src/cli/plan.js";
import { Capture, KEY, useCliHost } from "./cliHost.js";
import { pushImage } from "../azure/registryImages.js";

describe("fast-build plan --api against the real API and registry", () => {
  const local = useCliHost();

  async function cli(argv: string[], env: Record<string, string> = {}) {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(argv, {
      stdout,
      stderr,
      env: { FASTBUILD_API_KEY: KEY, ...env },
    });
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  async function plan(root: string, ...flags: string[]) {
    const run = await cli(["plan", "--dir", root, "--api", local.host.url, "--env", "dev", ...flags]);
    assert.equal(run.code, 0, run.stderr);
    const json = await cli([
      "plan",
      "--dir",
      root,
      "--api",
      local.host.url,
      "--env",
      "dev",
      "--json",
      ...flags,
    ]);
    assert.equal(json.code, 0, json.stderr);
    return { text: run.stdout, plan: JSON.parse(json.stdout) as DevPlan };
  }

  it("says a build would build the base first, then only the app layer, then nothing, as the registry fills", async () => {
    const { root } = await local.project();

    const cold = await plan(root);
    assert.equal(cold.plan.registry?.action, "base-miss");
    assert.equal(cold.plan.registry.sourceImage.state, "absent");
    assert.equal(
      cold.plan.registry.baseImage.reference,
      `${local.cloud.registry.host}/apps/demo-base:${cold.plan.baseKey}`,
    );
    assert.match(cold.text, /^ {2}the build: {4}base miss: builds the base first/m);

    await pushImage(local.cloud.registry.url, "apps/demo-base", cold.plan.baseKey, "base");
    const warm = await plan(root);
    assert.equal(warm.plan.registry?.action, "base-hit");
    assert.equal(warm.plan.registry.baseImage.state, "present");
    assert.match(warm.text, /^ {2}registry \(dev\): source image absent, base image present$/m);
    assert.match(warm.text, /^ {2}the build: {4}base hit: app layer only/m);
    const rebuild = await plan(root, "--rebuild-base");
    assert.equal(rebuild.plan.registry?.action, "base-miss");
    assert.match(rebuild.text, /base miss: builds the base first \(--rebuild-base\)/);

    const tag = `src-${warm.plan.sourceDigest.replace(/^sha256:/, "")}`;
    const digest = await pushImage(local.cloud.registry.url, "apps/demo", tag);
    const built = await plan(root);
    assert.equal(built.plan.registry?.action, "skip");
    assert.equal(built.plan.registry.sourceImage.digest, digest);
    assert.match(built.text, /^ {2}the build: {4}skipped: the registry has this source's image \(/m);
  });

  it("prints the source digest and base key dev then sends", async () => {
    const { root, cache } = await local.project();
    const planned = (await plan(root)).plan;
    const dev = await cli(["dev", "--dir", root, "--env", "dev", "--no-follow"], {
      FASTBUILD_API_URL: local.host.url,
      FASTBUILD_CACHE_DIR: cache,
    });
    assert.equal(dev.code, 0, dev.stderr);
    const buildId = /^build (\S+) started/m.exec(dev.stdout)?.[1] ?? "";
    const status = await local.cloud.published(buildId, (s) => s.cache?.baseKey !== undefined);
    assert.equal(status.cache?.baseKey, planned.baseKey);
    assert.match(dev.stdout, new RegExp(`^hashed ${planned.files} files .+ ${planned.sourceDigest}$`, "m"));
  });

  it("refuses an unknown environment with exit 2 and the environments it knows", async () => {
    const { root } = await local.project();
    const run = await cli(["plan", "--dir", root, "--api", local.host.url, "--env", "staging"]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^error: unknown environment "staging"\nhint: Use one of: dev, prod\.$/m);
  });

  it("the route refuses a missing or malformed digest with 400 and says what to pass", async () => {
    const headers = { "x-functions-key": KEY };
    const missing = await fetch(`${local.host.url}/api/environments/dev/images?baseKey=${"a".repeat(64)}`, {
      headers,
    });
    assert.equal(missing.status, 400);
    const body = (await missing.json()) as { error: { code: string; message: string; hint: string } };
    assert.equal(body.error.code, "InvalidQuery");
    assert.match(body.error.message, /missing query parameter sourceDigest/);
    assert.match(body.error.hint, /fast-build plan --json/);
    const malformed = await fetch(
      `${local.host.url}/api/environments/dev/images?sourceDigest=sha256:xyz&baseKey=${"a".repeat(64)}`,
      { headers },
    );
    assert.equal(malformed.status, 400);
    const unauthorised = await fetch(`${local.host.url}/api/environments/dev/images`);
    assert.equal(unauthorised.status, 401, "function-level auth: no key, no answer");
  });
});
