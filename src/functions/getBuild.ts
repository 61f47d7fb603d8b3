/** `GET /api/builds/{id}`: the build's status, projected from the orchestration's custom status. */
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import { apiHandler, json, routeBuildId } from "./http.js";
import { buildInstances, requireBuild } from "./instances.js";

async function run(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const buildId = routeBuildId(request);
  const build = requireBuild(await buildInstances(context).get(buildId), buildId);
  return json(200, build.status);
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const getBuild = apiHandler(run);
