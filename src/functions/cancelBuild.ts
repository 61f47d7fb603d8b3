/**
 * `POST /api/builds/{id}/cancel`: raises `CancelRequested`; the orchestration stops the run command,
 * releases the lease and records the build through its normal cleanup (terminating the instance
 * would skip all three).
 */
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import { z } from "zod";
import { BUILD_EVENTS } from "../core/buildInput.js";
import { apiHandler, buildLog, json, parseWith, readJson, routeBuildId } from "./http.js";
import { buildInstances, requireBuild, requireRunning } from "./instances.js";

const cancelRequestSchema = z
  .object({ reason: z.string().max(500).optional() })
  .strict()
  .optional();

async function run(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const buildId = routeBuildId(request);
  const body = parseWith(cancelRequestSchema, await readJson(request), "cancel request");
  const instances = buildInstances(context);
  const build = requireBuild(await instances.get(buildId), buildId);
  requireRunning(build, buildId, "Nothing to cancel.");
  await instances.raise(buildId, BUILD_EVENTS.cancelRequested, {
    reason: body?.reason ?? "cancelled by the user",
  });
  buildLog(context, buildId).info("cancel requested");
  return json(202, { buildId, cancelRequested: true, statusUrl: `/api/builds/${buildId}` });
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const cancelBuild = apiHandler(run);
