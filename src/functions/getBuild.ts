/**
 * `GET /api/builds/{id}`: the build's status, projected from the orchestration's custom status,
 * with an `ETag` of that projection. `?waitForChangeMs=N&etag=E` (or `If-None-Match: E`) makes it
 * a long poll: while the status's ETag is still E it re-reads the durable status every
 * `STATUS_WAIT.recheckMs`, answering 200 as soon as it changed, or 304 once N ms have passed (at
 * once when the build has ended: it will not change again). Without a wait, a matching ETag gets
 * 304 at once, as any conditional GET.
 */
import { createHash } from "node:crypto";
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import { STATUS_WAIT, STATUS_WAIT_QUERY, type BuildStatus } from "../core/api.js";
import { InvalidInputError } from "../core/errors.js";
import { apiHandler, json, queryInteger, routeBuildId } from "./http.js";
import { buildInstances, requireBuild, type KnownBuild } from "./instances.js";

/** A strong ETag of the status as the client gets it (its JSON). */
export function statusEtag(status: BuildStatus): string {
  return `"${createHash("sha256").update(JSON.stringify(status)).digest("base64url").slice(0, 22)}"`;
}

async function run(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const buildId = routeBuildId(request);
  const waitMs = queryInteger(
    request,
    STATUS_WAIT_QUERY.waitMs,
    0,
    STATUS_WAIT.maxMs,
    0,
    `Wait at most ${STATUS_WAIT.maxMs} ms per request, and ask again after a 304.`,
  );
  const known = clientEtags(request);
  if (waitMs > 0 && known.length === 0) {
    throw new InvalidInputError(
      `${STATUS_WAIT_QUERY.waitMs} needs the ETag of the status you have, to wait for it to change.`,
      {
        code: "InvalidQuery",
        hint: `Pass the ETag header of your last answer as ${STATUS_WAIT_QUERY.etag}=… or If-None-Match, or leave out ${STATUS_WAIT_QUERY.waitMs}.`,
      },
    );
  }
  const instances = buildInstances(context);
  const deadline = Date.now() + waitMs;
  let build: KnownBuild = requireBuild(await instances.get(buildId), buildId);
  let etag = statusEtag(build.status);
  while (known.includes(etag)) {
    const left = deadline - Date.now();
    if (build.ended || left <= 0) return { status: 304, headers: { etag, "cache-control": "no-store" } };
    await new Promise((done) => setTimeout(done, Math.min(STATUS_WAIT.recheckMs, left)));
    build = requireBuild(await instances.get(buildId), buildId);
    etag = statusEtag(build.status);
  }
  return json(200, build.status, { etag });
}

/** The ETags the client has: `?etag=` or `If-None-Match` (a list, weak or strong; `*` names none). */
function clientEtags(request: HttpRequest): string[] {
  const raw = request.query.get(STATUS_WAIT_QUERY.etag) ?? request.headers.get("if-none-match") ?? "";
  return raw
    .split(",")
    .map((tag) => tag.trim().replace(/^W\//, ""))
    .filter((tag) => tag !== "" && tag !== "*")
    .map((tag) => (tag.startsWith('"') ? tag : `"${tag}"`));
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const getBuild = apiHandler(run);
