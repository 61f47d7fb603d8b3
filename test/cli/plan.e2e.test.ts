/**
 * `fast-build plan --api` against the real API on the local host, whose registry lookup is the
 * orchestrator's own (src/activities/index.ts `lookUpImages`) asking the local registry through
 * its ACR-faithful front: what the build would do when the registry has neither image, the base,
 * or this source's image; the digest plan prints is the one `dev` sends; an unknown environment
 * and a bad query are refused with their hints.
 */
import {
  cancelRunningBuilds,
  runsUntilStopped,
  startTestCloud,
  type TestCloud,
} from "../functions/support.js";
import assert from "node:assert/strict";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { main } from "../../src/cli/main.js";
import type { SourcePlan } from "../../src/cli/plan.js";
import { cancelBuild } from "../../src/functions/cancelBuild.js";
import { setDeps } from "../../src/functions/deps.js";
import { startLocalHost, type LocalHost } from "@fast-build/local-cloud/host";
import { pushImage } from "../azure/registryImages.js";

const KEY = "plan-test-function-key";
const MiB = 1024 * 1024;

class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

describe("fast-build plan --api against the real API and registry", () => {
  let cloud: TestCloud;
  let host: LocalHost;
  const dirs: string[] = [];

  before(async () => {
    cloud = await startTestCloud();
    // The project's tree with the kit's Dockerfiles is bigger than the test cloud's 2 KiB limit.
    const builds = {
      ...cloud.config.builds,
      maxUploadBytes: 64 * MiB,
      extractLimits: { ...cloud.config.builds.extractLimits, maxBytes: 64 * MiB, maxFileBytes: 8 * MiB },
    };
    cloud.deps = { ...cloud.deps, config: { ...cloud.config, builds } };
    setDeps(cloud.deps);
    host = await startLocalHost({
      entry: new URL("../../src/functions/index.ts", import.meta.url).href,
      engine: cloud.engine,
      functionKey: KEY,
      log: () => undefined,
    });
  });
  after(async () => {
    await host.stop();
    setDeps(undefined);
    await cloud.stop();
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });
  beforeEach(() => {
    setDeps(cloud.deps);
    cloud.arm.setRunCommandExecutor(runsUntilStopped());
  });
  afterEach(() => cancelRunningBuilds(cloud, cancelBuild));

  async function project(): Promise<{ root: string; cache: string }> {
    const dir = await mkdtemp(join(tmpdir(), "fb-plan-e2e-"));
    dirs.push(dir);
    await cp(new URL("../../examples/hello", import.meta.url), join(dir, "tree"), { recursive: true });
    // Content of this test's own, so no other test's image matches it.
    await writeFile(join(dir, "tree", "src", "salt.rs"), `// ${dir}\n`);
    return { root: join(dir, "tree"), cache: join(dir, "cache") };
  }

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
    const run = await cli(["plan", "--dir", root, "--api", host.url, "--env", "dev", ...flags]);
    assert.equal(run.code, 0, run.stderr);
    const json = await cli(["plan", "--dir", root, "--api", host.url, "--env", "dev", "--json", ...flags]);
    assert.equal(json.code, 0, json.stderr);
    return { text: run.stdout, plan: JSON.parse(json.stdout) as SourcePlan };
  }

  it("says a build would build the base first, then only the app layer, then nothing, as the registry fills", async () => {
    const { root } = await project();

    const cold = await plan(root);
    assert.equal(cold.plan.registry?.action, "base-miss");
    assert.equal(cold.plan.registry.sourceImage.state, "absent");
    assert.equal(
      cold.plan.registry.baseImage.reference,
      `${cloud.registry.host}/apps/demo-base:${cold.plan.baseKey}`,
    );
    assert.match(cold.text, /^ {2}the build: {4}base miss: builds the base first/m);

    await pushImage(cloud.registry.url, "apps/demo-base", cold.plan.baseKey, "base");
    const warm = await plan(root);
    assert.equal(warm.plan.registry?.action, "base-hit");
    assert.equal(warm.plan.registry.baseImage.state, "present");
    assert.match(warm.text, /^ {2}registry \(dev\): source image absent, base image present$/m);
    assert.match(warm.text, /^ {2}the build: {4}base hit: app layer only/m);
    const rebuild = await plan(root, "--rebuild-base");
    assert.equal(rebuild.plan.registry?.action, "base-miss");
    assert.match(rebuild.text, /base miss: builds the base first \(--rebuild-base\)/);

    const tag = `src-${warm.plan.sourceDigest.replace(/^sha256:/, "")}`;
    const digest = await pushImage(cloud.registry.url, "apps/demo", tag);
    const built = await plan(root);
    assert.equal(built.plan.registry?.action, "skip");
    assert.equal(built.plan.registry.sourceImage.digest, digest);
    assert.match(built.text, /^ {2}the build: {4}skipped: the registry has this source's image \(/m);
  });

  it("prints the source digest and base key dev then sends", async () => {
    const { root, cache } = await project();
    const planned = (await plan(root)).plan;
    const dev = await cli(["dev", "--dir", root, "--env", "dev", "--no-follow"], {
      FASTBUILD_API_URL: host.url,
      FASTBUILD_CACHE_DIR: cache,
    });
    assert.equal(dev.code, 0, dev.stderr);
    const buildId = /^build (\S+) started/m.exec(dev.stdout)?.[1] ?? "";
    const status = await cloud.published(buildId, (s) => s.cache?.baseKey !== undefined);
    assert.equal(status.cache?.baseKey, planned.baseKey);
    assert.match(dev.stdout, new RegExp(`^hashed ${planned.files} files .+ ${planned.sourceDigest}$`, "m"));
  });

  it("refuses an unknown environment with exit 2 and the environments it knows", async () => {
    const { root } = await project();
    const run = await cli(["plan", "--dir", root, "--api", host.url, "--env", "staging"]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^error: unknown environment "staging"\nhint: Use one of: dev, prod\.$/m);
  });

  it("the route refuses a missing or malformed digest with 400 and says what to pass", async () => {
    const headers = { "x-functions-key": KEY };
    const missing = await fetch(`${host.url}/api/environments/dev/images?baseKey=${"a".repeat(64)}`, {
      headers,
    });
    assert.equal(missing.status, 400);
    const body = (await missing.json()) as { error: { code: string; message: string; hint: string } };
    assert.equal(body.error.code, "InvalidQuery");
    assert.match(body.error.message, /missing query parameter sourceDigest/);
    assert.match(body.error.hint, /fast-build plan --json/);
    const malformed = await fetch(
      `${host.url}/api/environments/dev/images?sourceDigest=sha256:xyz&baseKey=${"a".repeat(64)}`,
      { headers },
    );
    assert.equal(malformed.status, 400);
    const unauthorised = await fetch(`${host.url}/api/environments/dev/images`);
    assert.equal(unauthorised.status, 401, "function-level auth: no key, no answer");
  });
});
