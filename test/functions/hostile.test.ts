/**
 * Hostile requests as data (issue 9, item 8): each row is one request a client or an attacker can
 * send, and what the API must answer. Adding a case is one line. Every row also checks that no
 * log line the request caused holds a line break (a forged log line) or the secrets it carried.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import type { HttpHandler } from "@azure/functions";
import type { ErrorResponse } from "../../src/core/api.js";
import { buildCallback } from "../../src/functions/buildCallback.js";
import { cancelBuild } from "../../src/functions/cancelBuild.js";
import { setDeps } from "../../src/functions/deps.js";
import { getBuild } from "../../src/functions/getBuild.js";
import { getLogs } from "../../src/functions/getLogs.js";
import { sourceUploaded } from "../../src/functions/sourceUploaded.js";
import { startBuild } from "../../src/functions/startBuild.js";
import {
  builderResult,
  call,
  cancelRunningBuilds,
  runsUntilStopped,
  startTestCloud,
  type TestCloud,
} from "./support.js";

const DIGEST = `sha256:${"a".repeat(64)}`;
const BASE_KEY = "b".repeat(64);
const UNKNOWN = "20200101000000-dddddddddd";
const FORGED = "\n[build x] succeeded\r\nfake";
const TOKEN = "t".repeat(32);
const start = (body: Record<string, unknown>) =>
  JSON.stringify({ environment: "dev", sourceDigest: DIGEST, baseKey: BASE_KEY, ...body });
const result = (buildId: string) => JSON.stringify(builderResult(buildId));

type Route = "start" | "source" | "status" | "logs" | "cancel" | "callback";
const ROUTES: Record<Route, { handler: HttpHandler; method: string; path: (id: string) => string }> = {
  start: { handler: startBuild, method: "POST", path: () => "builds" },
  source: { handler: sourceUploaded, method: "POST", path: (id) => `builds/${id}/source` },
  status: { handler: getBuild, method: "GET", path: (id) => `builds/${id}` },
  logs: { handler: getLogs, method: "GET", path: (id) => `builds/${id}/logs` },
  cancel: { handler: cancelBuild, method: "POST", path: (id) => `builds/${id}/cancel` },
  callback: { handler: buildCallback, method: "POST", path: (id) => `builds/${id}/callback` },
};

interface Case {
  name: string;
  route: Route;
  id?: string;
  body?: string;
  headers?: Record<string, string>;
  query?: string;
  status: number;
  code?: string;
  message?: RegExp;
}

// case | route | id | body | headers | expected status | code | message
const CASES: Case[] = [
  {
    name: "environment with a newline",
    route: "start",
    body: start({ environment: `dev${FORGED}` }),
    status: 400,
    code: "UnknownEnvironment",
    message: /^Unknown environment "dev\\n\[build x\] succeeded\\r\\nfake"\.$/,
  },
  {
    name: "unknown environment",
    route: "start",
    body: start({ environment: "staging" }),
    status: 400,
    code: "UnknownEnvironment",
  },
  {
    name: "digest with shell text",
    route: "start",
    body: start({ sourceDigest: "sha256:$(reboot)" }),
    status: 400,
    code: "InvalidRequest",
  },
  {
    name: "base key with a path",
    route: "start",
    body: start({ baseKey: "../../etc/passwd" }),
    status: 400,
    code: "InvalidRequest",
  },
  {
    name: "commit with an option",
    route: "start",
    body: start({ commit: "--upload-pack=touch /tmp/x" }),
    status: 400,
    code: "InvalidRequest",
  },
  {
    name: "branch with a newline",
    route: "start",
    body: start({ branch: `main${FORGED}` }),
    status: 400,
    code: "InvalidRequest",
  },
  { name: "body is not JSON", route: "start", body: "{not json", status: 400 },
  { name: "body is an array", route: "start", body: "[]", status: 400, code: "InvalidRequest" },
  { name: "oversized body", route: "start", body: start({ branch: "x".repeat(200_000) }), status: 413 },
  {
    name: "build id with a newline",
    route: "status",
    id: `b${FORGED}`,
    status: 400,
    code: "InvalidBuildId",
    message: /^"b\\n\[build x\]/,
  },
  { name: "build id as a path", route: "logs", id: "../../secrets", status: 400, code: "InvalidBuildId" },
  { name: "unknown build's status", route: "status", id: UNKNOWN, status: 404, code: "BuildNotFound" },
  { name: "unknown build's source", route: "source", id: UNKNOWN, status: 404, code: "BuildNotFound" },
  { name: "unknown build's cancel", route: "cancel", id: UNKNOWN, status: 404, code: "BuildNotFound" },
  {
    name: "callback without a token",
    route: "callback",
    id: UNKNOWN,
    body: result(UNKNOWN),
    status: 401,
    code: "InvalidCallbackToken",
  },
  {
    name: "callback for an unknown build (no oracle)",
    route: "callback",
    id: UNKNOWN,
    body: result(UNKNOWN),
    headers: { "x-fastbuild-token": TOKEN },
    status: 401,
    code: "InvalidCallbackToken",
  },
  {
    name: "callback with a forged id",
    route: "callback",
    id: `x${FORGED}`,
    body: "{}",
    headers: { "x-fastbuild-token": TOKEN },
    status: 400,
    code: "InvalidBuildId",
  },
  {
    name: "callback for a running build, wrong token",
    route: "callback",
    id: "RUNNING",
    body: "{}",
    headers: { "x-fastbuild-token": TOKEN },
    status: 401,
    code: "InvalidCallbackToken",
  },
  {
    name: "callback with a token in the body",
    route: "callback",
    id: "RUNNING",
    body: JSON.stringify({ callbackToken: TOKEN }),
    headers: { "x-fastbuild-token": "RUNNING_TOKEN" },
    status: 400,
  },
  {
    name: "callback result for another build",
    route: "callback",
    id: "RUNNING",
    body: result(UNKNOWN),
    headers: { "x-fastbuild-token": "RUNNING_TOKEN" },
    status: 400,
    code: "BuildIdMismatch",
  },
];

describe("hostile requests", () => {
  let cloud: TestCloud;
  before(async () => {
    cloud = await startTestCloud();
    setDeps(cloud.deps);
  });
  after(async () => {
    setDeps(undefined);
    await cloud.stop();
  });
  beforeEach(() => cloud.arm.setRunCommandExecutor(runsUntilStopped()));
  afterEach(() => cancelRunningBuilds(cloud, cancelBuild));

  for (const c of CASES) {
    it(`${c.name} → ${c.status}${c.code ? ` ${c.code}` : ""}`, async () => {
      let id = c.id ?? UNKNOWN;
      let token = "";
      if (id === "RUNNING") {
        const res = await call(cloud.rpc, startBuild, "startBuild", {
          method: "POST",
          path: "builds",
          body: start({}),
        });
        assert.equal(res.status, 202, res.text);
        id = (res.body as { buildId: string }).buildId;
        token = ((await cloud.engine.getStatus(id))?.input as { callbackToken: string }).callbackToken;
      }
      const body = c.body?.replaceAll(UNKNOWN, c.code === "BuildIdMismatch" ? UNKNOWN : id);
      const headers = Object.fromEntries(
        Object.entries(c.headers ?? {}).map(([k, v]) => [k, v === "RUNNING_TOKEN" ? token : v]),
      );
      const route = ROUTES[c.route];
      const res = await call(cloud.rpc, route.handler, c.route, {
        method: route.method,
        path: route.path(id),
        params: { id },
        ...(body !== undefined ? { body } : {}),
        headers,
      });
      assert.equal(res.status, c.status, res.text);
      const error = (res.body as ErrorResponse).error;
      if (c.code) assert.equal(error.code, c.code, res.text);
      if (c.message) assert.match(error.message, c.message);
      for (const line of res.logs) {
        assert.doesNotMatch(line, /[\r\n]/, `one log line per message: ${line}`);
        if (token) assert.ok(!line.includes(token), "no callback token in the log");
        assert.ok(!line.includes(TOKEN), "no presented token in the log");
      }
    });
  }
});
