/**
 * `GET /api/environments/{env}/images?sourceDigest=…&baseKey=…`: whether the environment's
 * registry already has the image of this source and the base image of this base key, asked
 * through the same lookup as the orchestrator's registry-first step (src/activities/index.ts
 * `lookUpImages`). Read-only: nothing is started, leased or stored.
 */
import type { HttpRequest, HttpResponseInit } from "@azure/functions";
import { lookUpImages } from "../activities/index.js";
import { baseKeySchema, sourceDigestSchema, type ImagesResponse } from "../core/api.js";
import { ConfigError, InvalidInputError } from "../core/errors.js";
import { quoted } from "../core/logText.js";
import { lookUpInput } from "../orchestration/registryFirst.js";
import { getDeps } from "./deps.js";
import { apiHandler, json, routeEnvironment } from "./http.js";

const QUERY_HINT =
  "Pass sourceDigest=sha256:<64 hex> and baseKey=<64 hex>, as `fast-build plan --json` prints them.";

async function run(request: HttpRequest): Promise<HttpResponseInit> {
  const deps = await getDeps();
  const env = routeEnvironment(request, deps.config.environments);
  const name = env.name;
  const sourceDigest = queryValue(request, "sourceDigest", sourceDigestSchema);
  const baseKey = queryValue(request, "baseKey", baseKeySchema);
  if (!deps.registry) throw new ConfigError(["the function app has no registry gateway"]);
  const input = lookUpInput(env, { sourceDigest, baseKey, environment: name });
  const found = await lookUpImages({ registry: deps.registry, leases: deps.leases }, input);
  const image = (repository: string, tag: string, digest: string | undefined) => ({
    reference: `${env.registry}/${repository}:${tag}`,
    state: digest === undefined ? ("absent" as const) : ("present" as const),
    ...(digest !== undefined ? { digest } : {}),
  });
  const body: ImagesResponse = {
    environment: name,
    sourceImage: image(input.repository, input.sourceTag, found.source),
    baseImage: image(input.baseRepository, input.baseTag, found.base),
    ...(found.expected ? { expected: found.expected } : {}),
  };
  return json(200, body);
}

function queryValue(
  request: HttpRequest,
  name: string,
  // Both are the same kind of rule schema (src/core/rules.ts).
  schema: typeof sourceDigestSchema,
): string {
  const raw = request.query.get(name);
  if (raw === null || raw === "") {
    throw new InvalidInputError(`missing query parameter ${name}`, {
      code: "InvalidQuery",
      hint: QUERY_HINT,
    });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new InvalidInputError(
      `${name} ${quoted(raw, 80)} is invalid: ${parsed.error.issues[0]?.message ?? "invalid"}`,
      { code: "InvalidQuery", hint: QUERY_HINT },
    );
  }
  return parsed.data;
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const findImages = apiHandler(run);
