/**
 * `POST /api/builds/{id}/callback`: the builder VM reports its result line. The VM has no function
 * key and must never get the durable system key, so this route is anonymous and trusts only the
 * random per-build token kept in the orchestration input (header `x-fastbuild-token`, compared in
 * constant time). A missing or wrong token is 401 and nothing is raised. An unknown build is the
 * same 401, after the same comparison against a dummy token: the anonymous route must not tell
 * which build ids exist (issue 9, item 6). Besides the final result line, the script posts
 * heartbeats here; those are recorded on the builder's heartbeat row (the idle shutdown's second
 * signal) and raise nothing.
 */
import { randomBytes } from "node:crypto";
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import { secretsEqual } from "../core/buildId.js";
import { BUILD_EVENTS, builderKey, builderVm } from "../core/buildInput.js";
import { buildHeartbeatSchema, buildResultSchema } from "../core/buildResult.js";
import { describeError, InvalidInputError, UnauthorizedError } from "../core/errors.js";
import { getDeps } from "./deps.js";
import { apiHandler, buildLog, json, parseWith, readJson, routeBuildId } from "./http.js";
import { buildInstances, requireRunning, type KnownBuild } from "./instances.js";

export const CALLBACK_TOKEN_HEADER = "x-fastbuild-token";
/** The result line carries a log tail and step timings: larger than other requests, still bounded. */
const MAX_CALLBACK_BYTES = 64 * 1024;

const unauthorized = (): UnauthorizedError =>
  new UnauthorizedError("The callback token is missing or wrong.", {
    code: "InvalidCallbackToken",
    hint: `Send the build's token in the ${CALLBACK_TOKEN_HEADER} header.`,
  });

/**
 * What an unknown build's token is compared with: as long as a real one (24 random bytes,
 * base64url), so the comparison costs the same, and never presented by anyone.
 */
const DUMMY_TOKEN = randomBytes(24).toString("base64url");

async function run(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const buildId = routeBuildId(request);
  const token = request.headers.get(CALLBACK_TOKEN_HEADER);
  if (!token) throw unauthorized();
  const instances = buildInstances(context);
  const found = await instances.get(buildId);
  const build: KnownBuild | undefined = found?.input ? (found as KnownBuild) : undefined;
  const log = buildLog(context, buildId);
  // Compared either way (against the dummy when the build is unknown), and both refusals are the
  // same 401: neither the answer nor its time says whether the build exists.
  const matches = secretsEqual(token, build?.input.callbackToken ?? DUMMY_TOKEN);
  if (!build || !matches) {
    log.warn("callback refused: unknown build or wrong token");
    throw unauthorized();
  }
  const body = await readJson(request, MAX_CALLBACK_BYTES);
  // The script also posts heartbeats here while it runs: they prove the build is alive, so they
  // are recorded for the idle shutdown, and raise nothing in the orchestration.
  const isHeartbeat =
    typeof body === "object" && body !== null && (body as { fastbuild?: unknown }).fastbuild === "heartbeat";
  const message = isHeartbeat
    ? parseWith(buildHeartbeatSchema, body, "heartbeat")
    : parseWith(buildResultSchema, body, "build result");
  if (message.buildId !== buildId) {
    throw new InvalidInputError(`The message is for build ${message.buildId.slice(0, 80)}, not ${buildId}.`, {
      code: "BuildIdMismatch",
      hint: "Post each build's result to its own callback URL.",
    });
  }
  requireRunning(build, buildId, "The result arrived too late to be used.");
  if (message.fastbuild === "heartbeat") {
    await recordHeartbeat(build, log);
    return json(202, { buildId, accepted: true });
  }
  await instances.raise(buildId, BUILD_EVENTS.buildCompleted, message);
  log.info(`builder reported ${message.status} (${message.exitReason}, exit ${message.exitCode})`);
  return json(202, { buildId, accepted: true });
}

/**
 * Keeps the heartbeat where the idle shutdown reads it (one row per builder, by the function
 * app's clock at receipt: the VM's clock is never compared with ours). Best effort: the script
 * ignores a failed heartbeat, and the idle shutdown has the VM's run commands and the lease besides.
 */
async function recordHeartbeat(build: KnownBuild, log: ReturnType<typeof buildLog>): Promise<void> {
  try {
    const deps = await getDeps();
    const env = deps.config.environments[build.input.environment];
    if (!env) return;
    await deps.leases.recordHeartbeat(builderKey(builderVm(env)), {
      buildId: build.input.buildId,
      at: deps.now().toISOString(),
    });
  } catch (error) {
    log.warn(`heartbeat not recorded: ${describeError(error)}`);
  }
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const buildCallback = apiHandler(run);
