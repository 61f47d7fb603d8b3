/**
 * `POST /api/builds/{id}/source`: the client says its upload is complete. The blob must exist, be
 * within the size limit and hash to the digest announced at start; only then does the
 * orchestration hear `SourceUploaded`. A mismatch changes nothing: the client can upload again.
 *
 * A manifest build (src/core/sourceManifest.ts) instead has every planned pack checked (there,
 * within the size limit together, exactly its contents) and joins them to the environment's
 * content index before the event (the start wrote the builder's plan). Every write is idempotent,
 * so a report retried after a failure part-way goes through.
 */
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import { BUILD_EVENTS, sourceBlobName, type BuildInput } from "../core/buildInput.js";
import { indexOf, mergeIntoIndex } from "../core/contentIndex.js";
import { ConflictError, InvalidInputError, PayloadTooLargeError, PermanentError } from "../core/errors.js";
import { contentBlobNames, PACKS, type PendingSource } from "../core/sourceManifest.js";
import { getDeps, type Deps } from "./deps.js";
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

  const deps = await getDeps();
  if (build.input.sourceFormat === "manifest") return manifestSource(deps, build.input, context);
  const { config, sources } = deps;
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

/** Index writers racing on one environment: each lost If-Match re-reads and merges again. */
const INDEX_ATTEMPTS = 8;

async function manifestSource(
  deps: Deps,
  input: BuildInput,
  context: InvocationContext,
): Promise<HttpResponseInit> {
  const { buildId } = input;
  const { config, contents: store } = deps;
  const log = buildLog(context, buildId);
  const pending = pendingOf((await store.readJson(contentBlobNames.pending(buildId)))?.value, input);

  const stats = await Promise.all(pending.packs.map((pack) => store.stat(pack.name)));
  const absent = pending.packs.filter((_, n) => !stats[n]!.exists).map((pack) => pack.name);
  if (absent.length > 0) {
    throw new InvalidInputError(
      `No pack has been uploaded for build ${buildId} as ${absent.join(", ")} (${absent.length} of ${pending.packs.length}).`,
      {
        code: "SourceNotUploaded",
        hint: "PUT each pack to its URL from the start's answer (header x-ms-blob-type: BlockBlob) before calling this.",
      },
    );
  }
  const size = stats.reduce((sum, stat) => sum + stat.size, 0);
  const maxBytes = config.builds.maxUploadBytes;
  if (size > maxBytes) {
    throw new PayloadTooLargeError(
      `The uploaded packs (${size} bytes together) are over the ${maxBytes}-byte limit.`,
      {
        code: "SourceTooLarge",
        hint: "Exclude build outputs and dependencies (add them to .gitignore) and start a new build.",
      },
    );
  }
  for (let from = 0; from < pending.packs.length; from += PACKS.uploadConcurrency) {
    const batch = pending.packs.slice(from, from + PACKS.uploadConcurrency);
    const checks = await Promise.all(batch.map((pack) => store.verifyPack(pack.name, pack.contents)));
    const n = checks.findIndex((check) => !check.ok);
    const failed = checks[n];
    if (failed && !failed.ok) {
      throw new InvalidInputError(
        `Pack ${batch[n]!.name} does not hold the contents planned for it: ${failed.problem}.`,
        {
          code: "PackMismatch",
          hint: "Upload the packs again, each the gzip of exactly its listed contents concatenated in order (the URLs stay valid until they expire), then call this again; nothing has changed.",
        },
      );
    }
  }

  // With no new pack the index has nothing to learn (its stale entries go at the next merge).
  if (pending.packs.length > 0) await mergeIndex(deps, input.environment, pending, log);

  await buildInstances(context).raise(buildId, BUILD_EVENTS.sourceUploaded, {
    size,
    reportedAt: new Date().toISOString(),
  });
  log.info(`source received (${pending.packs.length} packs, ${size} bytes, contents verified)`);
  return json(202, { buildId, size, statusUrl: `/api/builds/${buildId}` });
}

/** What the start wrote; it is ours, so anything else means the store lost or mixed it up. */
function pendingOf(value: unknown, input: BuildInput): PendingSource {
  const pending = value as Partial<PendingSource> | undefined;
  if (pending?.version !== 2 || pending.sourceDigest !== input.sourceDigest || !pending.packs) {
    throw new PermanentError(`The pending source of build ${input.buildId} is missing or not its own.`, {
      code: "PendingSourceMissing",
      hint: "Start a new build.",
    });
  }
  return pending as PendingSource;
}

/** Adds the accepted packs to the environment's index over its ETag, re-reading after a lost race. */
async function mergeIndex(
  deps: Deps,
  environment: string,
  pending: PendingSource,
  log: ReturnType<typeof buildLog>,
): Promise<void> {
  const blob = contentBlobNames.index(environment);
  for (let attempt = 1; ; attempt++) {
    const current = await deps.contents.readJson(blob);
    const merged = mergeIntoIndex(indexOf(current?.value), pending.packs, deps.now());
    try {
      await deps.contents.writeJson(blob, merged, current ? { ifMatch: current.etag } : { ifNoneMatch: "*" });
      return;
    } catch (error) {
      if (!(error instanceof ConflictError) || attempt >= INDEX_ATTEMPTS) throw error;
      log.info(`content index of ${environment} changed meanwhile: merging again (attempt ${attempt + 1})`);
    }
  }
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const sourceUploaded = apiHandler(run);
