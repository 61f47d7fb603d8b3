/**
 * `fast-build follow | status | logs | cancel | builders`, run as the user runs them (`main`, and
 * once as a child process for a real Ctrl-C) against the real stack: the local functions host
 * serving the app's own HTTP triggers, the local durable engine running the real build
 * orchestrator and activities, the ARM emulator as the builder VM and Azurite. Builds are started
 * through the API as `fast-build dev` starts them; the emulator's scripted "VM" ends them fast.
 */
import {
  cancelRunningBuilds,
  runsUntilStopped,
  startTestCloud,
  type TestCloud,
} from "../functions/support.js";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { main } from "../../src/cli/main.js";
import type { BuilderInfo, BuildStatus, LogsResponse, StartBuildResponse } from "../../src/core/api.js";
import { BUILD_EVENTS, type BuildInput } from "../../src/core/buildInput.js";
import { builderResult } from "../fixtures/builderResult.js";
import type { RunCommandExecutor } from "@fast-build/local-cloud/arm";
import { cancelBuild } from "../../src/functions/cancelBuild.js";
import { setDeps } from "../../src/functions/deps.js";
import { startLocalHost, type LocalHost } from "@fast-build/local-cloud/host";
import { waitFor } from "../azure/armHelpers.js";

const KEY = "cli-test-function-key";
const SOURCE = Buffer.from("pretend this is a tar.gz of a cargo workspace\n".repeat(10));
const DIGEST = `sha256:${createHash("sha256").update(SOURCE).digest("hex")}`;
const BASE_KEY = "0123456789abcdef".repeat(4);

class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

describe("fast-build follow, status, logs, cancel and builders against the real API", () => {
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
    await host.stop();
    setDeps(undefined);
    await cloud.stop();
  });
  beforeEach(() => cloud.arm.setRunCommandExecutor(runsUntilStopped()));
  afterEach(() => cancelRunningBuilds(cloud, cancelBuild));

  /**
   * The "VM" build.sh would be: a few log lines, its result line, the completion callback with the
   * build's token (so the orchestration hears of the result at once instead of at its next poll
   * of the run command), exit 0.
   */
  const succeeds: RunCommandExecutor = async (run) => {
    const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
    const result = JSON.stringify(
      builderResult(buildId, {
        image: `127.0.0.1:5000/apps/demo:${buildId}`,
        digest: `sha256:${"a".repeat(64)}`,
        baseCacheHit: true,
        timings: { app: 1200 },
      }),
    );
    run.stdout(`compiling app\nfinished release\n${result}\n`);
    const token = ((await cloud.engine.getStatus(buildId))?.input as BuildInput).callbackToken;
    const callback = await fetch(`${host.url}/api/builds/${buildId}/callback`, {
      method: "POST",
      body: result,
      headers: { "content-type": "application/json", "x-fastbuild-token": token },
    });
    assert.equal(callback.status, 202, await callback.text());
    return { exitCode: 0 };
  };

  const env = () => ({ FASTBUILD_API_URL: host.url, FASTBUILD_API_KEY: KEY });

  /** Runs the command in-process; resolves to its exit code and what it printed. */
  async function fastBuild(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(argv, { stdout, stderr, env: env(), pollIntervalMs: 50 });
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${host.url}/api/${path}`, {
      ...init,
      headers: { "content-type": "application/json", "x-functions-key": KEY },
    });

  /** POST /api/builds as `fast-build dev` does; the upload comes later ({@link sendSource}). */
  async function startBuild(options: { deploy?: boolean } = {}): Promise<StartBuildResponse> {
    const res = await api("builds", {
      method: "POST",
      body: JSON.stringify({ environment: "dev", sourceDigest: DIGEST, baseKey: BASE_KEY, options }),
    });
    assert.equal(res.status, 202, await res.clone().text());
    return (await res.json()) as StartBuildResponse;
  }

  async function sendSource(build: StartBuildResponse): Promise<void> {
    const put = await fetch(build.upload!.url, {
      method: "PUT",
      body: SOURCE,
      headers: { "x-ms-blob-type": "BlockBlob" },
    });
    assert.equal(put.status, 201);
    const done = await api(`builds/${build.buildId}/source`, { method: "POST" });
    assert.equal(done.status, 202, await done.text());
  }

  it("follow joins a build before its upload and shows its log, phases and summary; exits 0 on success", async () => {
    cloud.arm.setRunCommandExecutor(succeeds);
    // No deploy: the orchestration polls a new revision's health (in real time here), and
    // what follow prints of a deploy is render.ts's, tested without a stack.
    const build = await startBuild({ deploy: false });
    const following = fastBuild("follow", build.buildId);
    await cloud.published(build.buildId, (s) => s.phase === "waiting-for-source");
    await sendSource(build);

    const { code, stdout, stderr } = await following;

    assert.equal(code, 0, stderr + stdout);
    assert.match(stdout, new RegExp(`^following build ${build.buildId}`));
    assert.match(stdout, /│ compiling app\n {2}│ finished release\n/);
    assert.match(stdout, /▸ building\n/);
    assert.match(stdout, new RegExp(`✓ build succeeded \\(${build.buildId}\\)`));
    assert.match(stdout, /image {5}127\.0\.0\.1:5000\/apps\/demo/);
    assert.match(stdout, /– deploy skipped/);
    assert.doesNotMatch(stdout, /"fastbuild":"result"/, "the result line is for the orchestration");
  });

  /** What the CLI asked of the API and what it got: a forwarding proxy in front of the host. */
  async function recordingProxy(): Promise<{
    url: string;
    exchanges: { path: string; status: number; etag: string | undefined }[];
    stop(): Promise<void>;
  }> {
    const exchanges: { path: string; status: number; etag: string | undefined }[] = [];
    const target = new URL(host.url);
    const server: Server = createServer((req, res) => {
      const upstream = httpRequest(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
        (answer) => {
          const etag = answer.headers.etag;
          exchanges.push({ path: req.url ?? "", status: answer.statusCode ?? 0, etag });
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      req.pipe(upstream);
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      exchanges,
      stop: () => new Promise((done) => server.close(() => done())),
    };
  }

  it("follow long-polls the status: it asks again only with the ETag it has, waiting longest where no log grows", async () => {
    cloud.arm.setRunCommandExecutor(succeeds);
    const proxy = await recordingProxy();
    try {
      const build = await startBuild({ deploy: false });
      const stdout = new Capture();
      const stderr = new Capture();
      const following = main(["follow", build.buildId], {
        stdout,
        stderr,
        env: { ...env(), FASTBUILD_API_URL: proxy.url },
        pollIntervalMs: 50,
      });
      await waitFor(
        () => Promise.resolve(stdout.text),
        (text) => text.includes("▸ waiting for the source upload"),
      );
      await sendSource(build);
      assert.equal(await following, 0, stderr.text + stdout.text);
      // A long poll answers with the status as it is then: phases shorter than the server's re-read
      // (the fake build takes a few ms) may be skipped, the steps and the end never are.
      assert.match(stdout.text, /✓ build \(\d+ ms\)[\s\S]*✓ build succeeded/);

      const statusPath = `/api/builds/${build.buildId}`;
      const polls = proxy.exchanges.filter((e) => e.path.split("?")[0] === statusPath);
      // At least the first read and one long poll; how many more depends on how the build's changes
      // fall between the server's re-reads.
      assert.ok(polls.length >= 2, JSON.stringify(polls));
      assert.equal(polls[0]!.path, statusPath, "the first read has no ETag to wait on");
      for (const [i, poll] of polls.entries()) {
        assert.ok(poll.status === 200 || poll.status === 304, JSON.stringify(poll));
        if (i === 0) continue;
        // Each later request names the ETag of the last status the CLI got: a changed status is
        // asked after at once, an unchanged one only after the server waited (304).
        const query = new URL(poll.path, "http://x").searchParams;
        const last = polls.slice(0, i).findLast((e) => e.status === 200);
        assert.equal(query.get("etag"), last?.etag, JSON.stringify(poll));
        assert.match(query.get("waitForChangeMs") ?? "", /^(50|25000)$/);
      }
      // Waiting for the source (no log yet), the CLI let the server hold its request 25 s.
      assert.ok(polls.some((e) => e.path.includes("waitForChangeMs=25000")));
    } finally {
      await proxy.stop();
    }
  });

  it("status prints one snapshot of a running build, and --json the API's BuildStatus", async () => {
    const build = await startBuild();
    await cloud.published(build.buildId, (s) => s.phase === "waiting-for-source");

    const human = await fastBuild("status", build.buildId);
    const json = await fastBuild("status", build.buildId, "--json");

    assert.equal(human.code, 0, human.stderr);
    assert.match(
      human.stdout,
      new RegExp(`^build ${build.buildId} \\(dev\\): waiting for the source upload`),
    );
    assert.match(human.stdout, /builder builder-dev: running/);
    assert.equal(json.code, 0, json.stderr);
    const status = JSON.parse(json.stdout) as BuildStatus;
    assert.equal(status.buildId, build.buildId);
    assert.equal(status.phase, "waiting-for-source");
  });

  it("logs prints the log so far; logs --follow prints until cancel ends the build; cancel twice exits 0", async () => {
    cloud.arm.setRunCommandExecutor(runsUntilStopped("step 1\nstep 2\n"));
    const build = await startBuild();
    await sendSource(build);
    await waitFor(
      async () => (await (await api(`builds/${build.buildId}/logs?offset=0`)).json()) as LogsResponse,
      (chunk) => chunk.size >= 14,
    );

    const soFar = await fastBuild("logs", build.buildId);
    assert.deepEqual(soFar, { code: 0, stdout: "step 1\nstep 2\n", stderr: "" });

    const following = fastBuild("logs", build.buildId, "--follow");
    const cancel = await fastBuild("cancel", build.buildId);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.match(cancel.stdout, new RegExp(`build ${build.buildId}: cancel requested`));
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.equal(followed.stdout, "step 1\nstep 2\n");

    const again = await fastBuild("cancel", build.buildId);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /has already ended: nothing to cancel/);
    const ended = await fastBuild("follow", build.buildId);
    assert.equal(ended.code, 3, "exit code of a cancelled build");
    assert.match(ended.stdout, /│ step 2\n[\s\S]*✗ build cancelled/);
  });

  it("follow: one Ctrl-C stops following and leaves the build running, not cancelled", async () => {
    const build = await startBuild();
    await cloud.published(build.buildId, (s) => s.phase === "waiting-for-source");
    const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "follow", build.buildId], {
      env: { PATH: process.env.PATH, ...env() },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    await waitFor(
      () => Promise.resolve(stdout),
      (text) => text.includes("▸ waiting for the source upload"),
    );

    child.kill("SIGINT");

    assert.equal(await exited, 130, stderr);
    assert.match(stderr, /leaving build \S+ running, it is NOT cancelled/);
    assert.match(stdout, /stopped following; build \S+ goes on/);
    assert.equal((await cloud.engine.getStatus(build.buildId))?.runtimeStatus, "Running");
    assert.ok(
      !cloud.engine.events.some(
        (e) => e.instanceId === build.buildId && e.name === BUILD_EVENTS.cancelRequested,
      ),
    );
  });

  it("builders lists every builder as a table, and --json the API's answer", async () => {
    const table = await fastBuild("builders");
    const json = await fastBuild("builders", "--json");

    assert.equal(table.code, 0, table.stderr);
    const [header, ...rows] = table.stdout.trimEnd().split("\n");
    assert.match(
      header ?? "",
      /^BUILDER +ENVIRONMENT +POWER +LEASE HOLDER +QUEUE +LAST ACTIVITY +IDLE SHUTDOWN AT$/,
    );
    assert.deepEqual(rows.map((row) => row.split(/ +/).slice(0, 3)).sort(), [
      ["builder-dev", "dev", "running"],
      ["builder-prod", "prod", "running"],
    ]);
    assert.equal(json.code, 0, json.stderr);
    const builders = JSON.parse(json.stdout) as BuilderInfo[];
    assert.deepEqual(builders.map((b) => b.name).sort(), ["builder-dev", "builder-prod"]);
  });

  it("an unknown build id exits 2 with the server's message; a malformed one is refused before any setting is read", async () => {
    for (const command of ["status", "logs", "cancel", "follow"]) {
      const unknown = await fastBuild(command, "20200101000000-0000000000");
      assert.equal(unknown.code, 2, `${command}: ${unknown.stderr}`);
      assert.match(unknown.stderr, /error: No build with id 20200101000000-0000000000/, command);
    }
    const stderr = new Capture();
    const malformed = await main(["status", "../builders"], { stdout: new Capture(), stderr, env: {} });
    assert.equal(malformed, 2);
    assert.match(stderr.text, /"\.\.\/builders" is not a build id/);
    assert.match(stderr.text, /hint: .*usage: fast-build status <build-id> \[--json\]/);
  });
});
