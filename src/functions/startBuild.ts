/**
 * `POST /api/builds`: checks the request, mints the build id, its callback token and a short-lived
 * upload SAS, and starts the orchestration at once (instance id = build id), so the builder VM
 * starts while the client is still uploading.
 */
import { quoted } from "../core/logText.js";
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import { startBuildRequestSchema, type StartBuildResponse } from "../core/api.js";
import { createBuildId, createCallbackToken } from "../core/buildId.js";
import { ORCHESTRATOR_VERSION, sourceBlobName, type BuildInput } from "../core/buildInput.js";
import { InvalidInputError, PayloadTooLargeError } from "../core/errors.js";
import { getDeps } from "./deps.js";
import { apiHandler, buildLog, json, parseWith, readJson } from "./http.js";
import { buildInstances } from "./instances.js";

async function run(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const body = await readJson(request);
  if (body === undefined) {
    throw new InvalidInputError("The request body is empty.", {
      code: "MissingBody",
      hint: 'Send {"environment": "...", "sourceDigest": "sha256:..."} as JSON.',
    });
  }
  const req = parseWith(startBuildRequestSchema, body, "build request");
  const deps = await getDeps();
  const { config, sources } = deps;

  if (!Object.hasOwn(config.environments, req.environment)) {
    const known = Object.keys(config.environments).sort();
    throw new InvalidInputError(`Unknown environment ${quoted(req.environment, 80)}.`, {
      code: "UnknownEnvironment",
      hint: `Use one of: ${known.join(", ")}.`,
    });
  }
  const maxBytes = config.builds.maxUploadBytes;
  if (req.sourceBytes !== undefined && req.sourceBytes > maxBytes) {
    throw new PayloadTooLargeError(
      `The source archive (${req.sourceBytes} bytes) is over the ${maxBytes}-byte limit.`,
      {
        code: "SourceTooLarge",
        hint: "Exclude build outputs and dependencies (add them to .gitignore) and try again.",
      },
    );
  }

  const createdAt = deps.now();
  const buildId = createBuildId(createdAt);
  const input: BuildInput = {
    buildId,
    environment: req.environment,
    sourceDigest: req.sourceDigest,
    ...(req.commit !== undefined ? { commit: req.commit } : {}),
    ...(req.branch !== undefined ? { branch: req.branch } : {}),
    baseKey: req.baseKey,
    rebuildBase: req.options?.rebuildBase ?? false,
    deploy: req.options?.deploy ?? true,
    callbackToken: createCallbackToken(),
    createdAt: createdAt.toISOString(),
    orchestratorVersion: ORCHESTRATOR_VERSION,
  };
  const log = buildLog(context, buildId);

  // The SAS first: if it cannot be made, nothing has started.
  const upload = await sources.createUploadUrl(sourceBlobName(buildId), config.builds.uploadSasMinutes);
  await buildInstances(context).start(input);
  log.info(`started for environment ${req.environment} (digest ${req.sourceDigest})`);

  const base = `/api/builds/${buildId}`;
  const response: StartBuildResponse = {
    buildId,
    upload: { url: upload.url, expiresOn: upload.expiresOn, maxBytes },
    statusUrl: base,
    logsUrl: `${base}/logs`,
    sourceCompleteUrl: `${base}/source`,
    cancelUrl: `${base}/cancel`,
  };
  return json(202, response, { location: base });
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const startBuild = apiHandler(run);
