/**
 * `GET /api/builds/{id}/logs?offset=N[&maxBytes=M]`: the build log from byte `offset`, so a client
 * follows it live by passing back `nextOffset`. Before the builder has written anything the log
 * is empty, not missing.
 */
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import type { LogsResponse } from "../core/api.js";
import { logBlobName } from "../core/buildInput.js";
import { NotFoundError } from "../core/errors.js";
import type { LogChunk } from "../core/ports.js";
import { getDeps } from "./deps.js";
import { apiHandler, json, queryInteger, routeBuildId } from "./http.js";
import { buildInstances, requireBuild } from "./instances.js";

const DEFAULT_MAX_BYTES = 256 * 1024;
const LIMIT_MAX_BYTES = 1024 * 1024;
const OFFSET_HINT = "Start at 0 and pass the nextOffset of the previous answer.";

async function run(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const buildId = routeBuildId(request);
  const offset = queryInteger(request, "offset", 0, Number.MAX_SAFE_INTEGER, 0, OFFSET_HINT);
  const maxBytes = queryInteger(request, "maxBytes", 4, LIMIT_MAX_BYTES, DEFAULT_MAX_BYTES);
  const build = requireBuild(await buildInstances(context).get(buildId), buildId);
  const { logs } = await getDeps();
  let chunk: LogChunk;
  try {
    chunk = await logs.read(logBlobName(buildId), offset, maxBytes);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    chunk = { text: "", nextOffset: offset, size: 0 };
  }
  const body: LogsResponse = { ...chunk, complete: build.ended && chunk.nextOffset >= chunk.size };
  return json(200, body);
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const getLogs = apiHandler(run);
