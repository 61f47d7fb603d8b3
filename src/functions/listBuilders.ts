/** `GET /api/builders`: every environment's builder: power state, lease, queue, idle shutdown time. */
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import { describeBuilders } from "../builders/list.js";
import { getDeps } from "./deps.js";
import { apiHandler, json } from "./http.js";

async function run(_request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return json(200, await describeBuilders(await getDeps(), context));
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const listBuilders = apiHandler(run);
