/**
 * `POST /api/environments/{env}/warm`: starts the environment's builder VM if it is off and counts
 * as use of it for the idle rule (src/builders/warm.ts). The VM's start is a long-running operation
 * (Azure answers its POST with 202 and Azure-AsyncOperation; from deallocated it takes tens of
 * seconds to minutes): the function answers as soon as Azure accepted the start, 202 with the state
 * `starting`, and does not hold the request for the whole start (a pre-push hook must not wait; the
 * next build sees the VM starting or running and only waits for what is left). 200 when there was
 * nothing to do.
 */
import type { HttpRequest, HttpResponseInit } from "@azure/functions";
import { warmBuilder } from "../builders/warm.js";
import { getDeps } from "./deps.js";
import { apiHandler, json, routeEnvironment } from "./http.js";

async function run(request: HttpRequest): Promise<HttpResponseInit> {
  const deps = await getDeps();
  const env = routeEnvironment(request, deps.config.environments);
  const answer = await warmBuilder(deps, env);
  return json(answer.action === "started" ? 202 : 200, answer);
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const warmBuilderHandler = apiHandler(run);
