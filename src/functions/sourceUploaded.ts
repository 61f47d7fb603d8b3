/**
 * `POST /api/builds/{id}/source`: the client says its upload is complete. The blob must exist, be
 * within the size limit and hash to the digest announced at start; only then does the
 * orchestration hear `SourceUploaded`. A mismatch changes nothing: the client can upload again.
 */
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import { BUILD_EVENTS, sourceBlobName } from "../core/buildInput.js";
import { ConflictError, InvalidInputError, PayloadTooLargeError } from "../core/errors.js";
import { getDeps } from "./deps.js";
import { apiHandler, buildLog, json, routeBuildId } from "./http.js";
import { buildInstances, requireBuild, requireRunning } from "./instances.js";

async function run(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const buildId = routeBuildId(request);
  const instances = buildInstances(context);
  const build = requireBuild(await instances.get(buildId), buildId);
  // Version 5: the registry had the image for this source digest, so the build never needed the
  // upload (it may even have ended by now). The CLI's upload still in flight is answered, not refused.
  if (build.status.registryCheck?.sourceImage === "present") {
    return json(200, { buildId, needed: false, statusUrl: `/api/builds/${buildId}` });
  }
  requireRunning(build, buildId, "Start a new build.");
  if (build.status.steps.some((step) => step.name === "source" && step.state === "succeeded")) {
    throw new ConflictError(`Build ${buildId} already has its source.`, {
      code: "SourceAlreadyReceived",
      hint: "Follow the build with GET /api/builds/{id}; to build other sources, start a new build.",
    });
  }

  const { config, sources } = await getDeps();
  const blob = sourceBlobName(buildId);
  const stat = await sources.stat(blob);
  if (!stat.exists) {
    throw new InvalidInputError(`No source archive has been uploaded for build ${buildId}.`, {
      code: "SourceNotUploaded",
      hint: "PUT the archive to the upload URL (header x-ms-blob-type: BlockBlob) before calling this.",
    });
  }
  const maxBytes = config.builds.maxUploadBytes;
  if (stat.size > maxBytes) {
    throw new PayloadTooLargeError(
      `The uploaded archive (${stat.size} bytes) is over the ${maxBytes}-byte limit.`,
      {
        code: "SourceTooLarge",
        hint: "Exclude build outputs and dependencies (add them to .gitignore) and start a new build.",
      },
    );
  }
  const expected = build.input.sourceDigest.replace(/^sha256:/, "");
  const actual = await sources.sha256(blob);
  if (actual !== expected) {
    throw new InvalidInputError(
      `The uploaded archive's digest is sha256:${actual}, not the ${build.input.sourceDigest} announced at start.`,
      {
        code: "SourceDigestMismatch",
        hint: "Upload exactly the archive whose digest you sent to POST /api/builds (the upload URL stays valid until it expires), then call this again.",
      },
    );
  }

  // `reportedAt`: an upload reported by the source deadline counts even when its event is
  // delivered after the deadline's timer (orchestration/source.ts).
  await instances.raise(buildId, BUILD_EVENTS.sourceUploaded, {
    size: stat.size,
    reportedAt: new Date().toISOString(),
  });
  buildLog(context, buildId).info(`source received (${stat.size} bytes, digest verified)`);
  return json(202, { buildId, size: stat.size, statusUrl: `/api/builds/${buildId}` });
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const sourceUploaded = apiHandler(run);
