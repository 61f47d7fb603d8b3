/**
 * Supersede through the API and the CLI (issue 12 item 3): the local functions host serving the
 * app's own HTTP triggers, the local durable engine running the real orchestrator and activities,
 * the ARM emulator as the builder VM and Azurite. A build waits behind one that holds the builder;
 * a newer build of its branch supersedes it, and `fast-build follow` of the older one says by whom.
 */
import { cancelRunningBuilds, startTestCloud, type TestCloud } from "../functions/support.js";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { main } from "../../src/cli/main.js";
import { EXIT } from "../../src/cli/follow.js";
import type { BuildStatus, StartBuildResponse } from "../../src/core/api.js";
import { cancelBuild } from "../../src/functions/cancelBuild.js";
import { setDeps } from "../../src/functions/deps.js";
import { startLocalHost, type LocalHost } from "@fast-build/local-cloud/host";
import { Capture } from "./cliHost.js";

const KEY = "supersede-test-function-key";
const DIGEST = `sha256:${"5".repeat(64)}`;
const BASE_KEY = "0123456789abcdef".repeat(4);

describe("supersede through the API and fast-build follow", () => {
  let cloud: TestCloud;
  let host: LocalHost;

  before(async () => {
    cloud = await startTestCloud();
    setDeps(cloud.deps);
    host = await startLocalHost({
      entry: new URL("../../src/functions/index.ts", import.meta.url).href,
      engine: cloud.engine,
      functionKey: KEY,
      log: () => undefined,
    });
  });
  after(async () => {
    await cancelRunningBuilds(cloud, cancelBuild);
    await host.stop();
    setDeps(undefined);
    await cloud.stop();
  });

  /** POST /api/builds as `fast-build dev` does (the source is never sent: the builds wait). */
  async function startBuild(environment: string, branch?: string): Promise<StartBuildResponse> {
    const res = await fetch(`${host.url}/api/builds`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-functions-key": KEY },
      body: JSON.stringify({
        environment,
        sourceDigest: DIGEST,
        baseKey: BASE_KEY,
        ...(branch ? { branch } : {}),
        options: { deploy: false },
      }),
    });
    assert.equal(res.status, 202, await res.clone().text());
    return (await res.json()) as StartBuildResponse;
  }

  async function fastBuild(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(argv, {
      stdout,
      stderr,
      env: { FASTBUILD_API_URL: host.url, FASTBUILD_API_KEY: KEY },
      pollIntervalMs: 50,
    });
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  it("the older queued build of a branch ends cancelled, its follower prints who superseded it and exits 3", async () => {
    const holder = await startBuild("dev", "main");
    await cloud.published(holder.buildId, (s) => s.phase !== "queued");
    const older = await startBuild("dev", "feature/x");
    await cloud.published(older.buildId, (s) => s.queuePosition === 1);
    const following = fastBuild("follow", older.buildId);
    const newer = await startBuild("dev", "feature/x");

    const { code, stdout, stderr } = await following;
    assert.equal(code, EXIT.cancelled, stdout + stderr);
    assert.match(stdout, new RegExp(`superseded by build ${newer.buildId}`));
    assert.match(stdout, /\[Superseded\]/);
    assert.match(
      stdout,
      new RegExp(`hint: Follow the newer build instead: fast-build follow ${newer.buildId}`),
    );

    // POST /builds told it at once, unless it had already left the queue (learnt it at its next
    // ask, in the moment between the newer build's start and that write: the queue path's tests).
    const told = cloud.engine.events.filter((e) => e.instanceId === older.buildId);
    assert.ok(told.length <= 1, JSON.stringify(told));
    for (const event of told) {
      assert.deepEqual(event, {
        instanceId: older.buildId,
        name: "CancelRequested",
        data: {
          reason: `superseded by build ${newer.buildId}`,
          supersededBy: newer.buildId,
          branch: "feature/x",
        },
      });
    }

    const status = await fastBuild("status", older.buildId, "--json");
    const shown = JSON.parse(status.stdout) as BuildStatus;
    assert.equal(shown.phase, "cancelled");
    assert.equal(shown.supersededBy, newer.buildId);
    const waiting = await cloud.published(newer.buildId, (s) => s.queuePosition === 1);
    assert.equal(waiting.supersededBy, undefined, "the newer build waits, first in the queue");
  });

  it("in an environment named prod (supersede off by default) both builds of a branch stay queued", async () => {
    const holder = await startBuild("prod", "main");
    await cloud.published(holder.buildId, (s) => s.phase !== "queued");
    const older = await startBuild("prod", "release");
    await cloud.published(older.buildId, (s) => s.queuePosition === 1);
    const newer = await startBuild("prod", "release");
    await cloud.published(newer.buildId, (s) => s.queuePosition === 2);
    assert.deepEqual(
      cloud.engine.events.filter((e) => e.instanceId === older.buildId),
      [],
      "nothing was raised",
    );
    const still = await cloud.published(older.buildId, () => true);
    assert.equal(still.queuePosition, 1);
    assert.equal(still.terminal, false);
  });
});
