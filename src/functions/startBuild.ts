/**
 * `POST /api/builds`: checks the request, mints the build id, its callback token and a short-lived
 * upload SAS, and starts the orchestration at once (instance id = build id), so the builder VM
 * starts while the client is still uploading.
 *
 * With a manifest (content-addressed source, src/core/sourceManifest.ts) it also checks the
 * manifest, reads the environment's content index, plans the packs of the contents the store lacks
 * (`planPacks`), records the request (`pending/<buildId>.json`) and the builder's plan
 * (`plans/<buildId>.json`), and answers a create/write SAS per pack instead of the one archive upload.
 */
import { quoted } from "../core/logText.js";
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import { startBuildRequestSchema, type ContentUploads, type StartBuildResponse } from "../core/api.js";
import { createBuildId, createCallbackToken } from "../core/buildId.js";
import { effectiveBinary } from "../core/projectSettings.js";
import {
  BUILD_EVENTS,
  builderKey,
  builderVm,
  ORCHESTRATOR_VERSION,
  sourceBlobName,
  type BuildInput,
} from "../core/buildInput.js";
import { markSuperseded, mutateRecord } from "../core/lease.js";
import { supersedeEnabled, type SupersededCancel } from "../core/supersede.js";
import { indexOf, planPacksOf, storedContents, type PlannedPack } from "../core/contentIndex.js";
import { ConflictError, InvalidInputError, PayloadTooLargeError } from "../core/errors.js";
import type { ExtractLimits } from "../core/extractLimits.js";
import type { JsonBlob } from "../core/ports.js";
import {
  applyManifestDelta,
  canonicalManifest,
  checkManifest,
  contentBlobNames,
  ManifestError,
  manifestContents,
  manifestDigest,
  manifestSchema,
  planPacks,
  type ManifestDelta,
  type PendingSource,
  type SourceManifest,
  type SourcePlan,
} from "../core/sourceManifest.js";
import type { EnvironmentConfig } from "../config/index.js";
import type { Deps } from "./deps.js";
import { getDeps } from "./deps.js";
import {
  apiHandler,
  buildLog,
  type BuildLog,
  json,
  MAX_JSON_BODY_BYTES,
  MAX_MANIFEST_BODY_BYTES,
  parseWith,
  readJsonBody,
  tooLarge,
} from "./http.js";
import { buildInstances } from "./instances.js";

/**
 * The image listens on the project file's port, but Azure routes to the app's ingress targetPort,
 * which fast-build does not change: with a mismatch the new revision fails its health probes and
 * the build would end only at the deploy timeout. So the start refuses it before anything runs
 * (one read of the app; a build with `--no-deploy` is not asked). When the read itself fails, the
 * build goes on: the deploy reads the app again and reports what it finds.
 */
async function checkPort(
  deps: Deps,
  environment: EnvironmentConfig,
  port: number,
  context: InvocationContext,
): Promise<void> {
  if (!deps.apps) return;
  const app = {
    subscriptionId: environment.subscriptionId,
    resourceGroup: environment.containerAppResourceGroup ?? environment.resourceGroup,
    appName: environment.containerApp,
  };
  let targetPort: number | undefined;
  try {
    targetPort = (await deps.apps.getApp(app)).targetPort;
  } catch (error) {
    context.warn(
      `could not read container app ${quoted(app.appName, 80)} to compare its port: ${String(error)}`,
    );
    return;
  }
  if (targetPort !== undefined && targetPort !== port) {
    throw new InvalidInputError(
      `Container app ${quoted(app.appName, 80)} sends its traffic to port ${targetPort}, but fast-build.toml's [container] port is ${port}.`,
      {
        code: "PortMismatch",
        hint: `Set [container] port = ${targetPort} in fast-build.toml if the server listens there, or point the app's ingress at ${port} (az containerapp ingress update -n ${app.appName} -g ${app.resourceGroup} --target-port ${port}); --no-deploy builds without deploying.`,
      },
    );
  }
}

async function run(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const { value: body, bytes } = await readJsonBody(request, MAX_MANIFEST_BODY_BYTES);
  // Only a manifest makes a request big: any other stays within the small-document limit.
  if (bytes > MAX_JSON_BODY_BYTES && !hasManifest(body)) throw tooLarge(MAX_JSON_BODY_BYTES);
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
  // The binary comes from the project file, else the environment (older CLIs); the built-in
  // Dockerfile.app cannot build without one, so a build with neither never starts.
  const environment = config.environments[req.environment]!;
  if (effectiveBinary(req.project, environment.binaryName).missing) {
    throw new InvalidInputError(
      `No binary to build: the request names none (project.binary) and environment ${quoted(req.environment, 80)} has no binaryName.`,
      {
        code: "BinaryNameMissing",
        hint: 'Set [build] binary = "NAME" in fast-build.toml (`fast-build init` detects it), or binaryName in the environment\'s FASTBUILD_ENVIRONMENTS entry.',
      },
    );
  }
  if (req.project?.port !== undefined && req.options?.deploy !== false) {
    await checkPort(deps, environment, req.project.port, context);
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

  // The environment's content index is read while the delta's base is (one round trip, not two).
  const index =
    req.manifest || req.manifestDelta
      ? deps.contents.readJson(contentBlobNames.index(req.environment))
      : undefined;
  index?.catch(() => undefined);
  const manifest = req.manifestDelta ? await manifestOfDelta(deps, req.manifestDelta) : req.manifest;
  if (manifest) checkManifestRequest(manifest, req.sourceDigest, deps.config.builds.extractLimits);

  const createdAt = deps.now();
  const buildId = createBuildId(createdAt);
  const input: BuildInput = {
    buildId,
    environment: req.environment,
    sourceDigest: req.sourceDigest,
    ...(req.commit !== undefined ? { commit: req.commit } : {}),
    ...(req.branch !== undefined ? { branch: req.branch } : {}),
    ...(req.dirty !== undefined ? { dirty: req.dirty } : {}),
    ...(req.author !== undefined ? { author: req.author } : {}),
    baseKey: req.baseKey,
    rebuildBase: req.options?.rebuildBase ?? false,
    deploy: req.options?.deploy ?? true,
    callbackToken: createCallbackToken(),
    createdAt: createdAt.toISOString(),
    orchestratorVersion: ORCHESTRATOR_VERSION,
    ...(manifest ? { sourceFormat: "manifest" as const } : {}),
    ...(req.project ? { project: req.project } : {}),
  };
  const log = buildLog(context, buildId);

  // The SAS (and, for a manifest, the pending request) first: if they cannot be made, nothing has started.
  const source = manifest
    ? {
        contents: (
          await Promise.all([
            planUploads(deps, input, manifest, await index, createdAt),
            keepManifest(deps, manifest, req.sourceDigest, log),
          ])
        )[0],
      }
    : {
        upload: {
          ...(await sources.createUploadUrl(sourceBlobName(buildId), config.builds.uploadSasMinutes)),
          maxBytes,
        },
      };
  await buildInstances(context).start(input);
  if (input.branch !== undefined && supersedeEnabled(environment.name, environment.supersede)) {
    await announceSupersede(deps, context, environment, input.buildId, input.branch, log);
  }
  log.info(
    `started for environment ${req.environment} (digest ${req.sourceDigest})` +
      (source.contents
        ? `: ${source.contents.stored} contents stored, ${source.contents.missing} (${source.contents.missingBytes} bytes) to upload in ${source.contents.packs.length} packs`
        : ""),
  );

  const base = `/api/builds/${buildId}`;
  const response: StartBuildResponse = {
    buildId,
    ...(source.upload
      ? { upload: { url: source.upload.url, expiresOn: source.upload.expiresOn, maxBytes } }
      : {}),
    ...(source.contents ? { contents: source.contents } : {}),
    statusUrl: base,
    logsUrl: `${base}/logs`,
    sourceCompleteUrl: `${base}/source`,
    cancelUrl: `${base}/cancel`,
  };
  return json(202, response, { location: base });
}

/**
 * Supersede (issue 12 item 3), the prompt half: marks the older builds of this environment and
 * branch still waiting in the builder's queue as superseded by the new build (compare-and-set on the
 * lease record, the same rule the queue applies, `markSuperseded`), then tells each one with a
 * cancel event, so it ends now rather than at its next ask for the lease. Only a build marked in that
 * write is told, and a marked build never takes the builder, so this never cancels a build that
 * holds it. Best effort: if the table or the event fails, the new build's own join marks them and
 * each learns it at its next ask (within the queue's poll), so the start goes on.
 */
async function announceSupersede(
  deps: Deps,
  context: InvocationContext,
  environment: EnvironmentConfig,
  buildId: string,
  branch: string,
  log: BuildLog,
): Promise<void> {
  const scope = { environment: environment.name, branch, supersede: true };
  try {
    // The new build has started, so its own join may have marked them first: tell every entry
    // marked for it, whoever wrote the mark.
    const superseded = await mutateRecord(deps.leases, builderKey(builderVm(environment)), (record) => {
      const marked = markSuperseded(record, buildId, scope);
      const mine = marked.record.queue.filter((e) => e.supersededBy === buildId).map((e) => e.buildId);
      return { record: marked.superseded.length > 0 ? marked.record : undefined, result: mine };
    });
    const instances = buildInstances(context);
    const cancel: SupersededCancel = {
      reason: `superseded by build ${buildId}`,
      supersededBy: buildId,
      branch,
    };
    await Promise.all(
      superseded.map(async (older) => {
        try {
          await instances.raise(older, BUILD_EVENTS.cancelRequested, cancel);
          log.info(`superseded queued build ${older} (branch ${quoted(branch)})`);
        } catch (error) {
          // It may have ended meanwhile (it learnt it from the queue); nothing is lost either way.
          log.warn(
            `could not tell build ${older} it is superseded; it learns it from the queue: ${String(error)}`,
          );
        }
      }),
    );
  } catch (error) {
    log.warn(`could not mark the builds it supersedes; the queue marks them when it joins: ${String(error)}`);
  }
}

function hasManifest(body: unknown): boolean {
  return typeof body === "object" && body !== null && ("manifest" in body || "manifestDelta" in body);
}

/**
 * The manifest a delta names: its base from the store (kept by digest, `contentBlobNames.manifest`,
 * until the lifecycle rule deletes it) with the change applied; the caller then checks it like a
 * whole manifest, its digest included, so a delta made from another base cannot pass.
 */
async function manifestOfDelta(deps: Deps, delta: ManifestDelta): Promise<SourceManifest> {
  const base = RECENT_MANIFESTS.get(delta.base) ?? (await readManifest(deps, delta.base));
  if (!base) {
    throw new ConflictError(`The store does not have the base manifest ${delta.base}.`, {
      code: "BaseManifestUnknown",
      hint: "Send the whole manifest (field manifest) instead of manifestDelta; nothing was started.",
    });
  }
  try {
    return applyManifestDelta(base, delta);
  } catch (error) {
    if (!(error instanceof ManifestError)) throw error;
    throw new InvalidInputError(`The manifest change is refused: ${error.message}.`, {
      code: `InvalidManifestDelta:${error.code}`,
      hint: "Send the whole manifest (field manifest) instead; nothing was started.",
    });
  }
}

async function readManifest(deps: Deps, digest: string): Promise<SourceManifest | undefined> {
  const stored = await deps.contents.readJson(contentBlobNames.manifest(digest));
  const parsed = manifestSchema.safeParse(stored?.value);
  if (!parsed.success || manifestDigest(parsed.data) !== digest) return undefined;
  RECENT_MANIFESTS.set(digest, parsed.data);
  return parsed.data;
}

/**
 * The last manifests this instance kept or read, by digest: a manifest never changes under its
 * digest, so a developer's next delta usually finds its base here, without a read of the store.
 */
const RECENT_MANIFESTS = new (class extends Map<string, SourceManifest> {
  override set(digest: string, manifest: SourceManifest): this {
    this.delete(digest);
    super.set(digest, manifest);
    if (this.size > 16) this.delete(this.keys().next().value!);
    return this;
  }
})();

/**
 * Keeps the manifest by its digest for the next build's delta: create-only (the name is the
 * content's hash, so one already there is this one), and a failure here only costs that delta.
 */
async function keepManifest(
  deps: Deps,
  manifest: SourceManifest,
  digest: string,
  log: BuildLog,
): Promise<void> {
  RECENT_MANIFESTS.set(digest, manifest);
  try {
    await deps.contents.writeJson(contentBlobNames.manifest(digest), manifest, { ifNoneMatch: "*" });
  } catch (error) {
    if (error instanceof ConflictError) return;
    log.warn(
      `could not keep the manifest for later deltas: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

/** The manifest names exactly the announced digest and keeps the builder's extraction rules. */
function checkManifestRequest(manifest: SourceManifest, sourceDigest: string, limits: ExtractLimits): void {
  const digest = manifestDigest(manifest);
  if (digest !== sourceDigest) {
    throw new InvalidInputError(
      `The manifest's digest is ${digest}, not the sourceDigest ${sourceDigest} of the request.`,
      {
        code: "SourceDigestMismatch",
        hint: "Send as sourceDigest the sha256 of the manifest's canonical text (canonicalManifest in src/core/sourceManifest.ts); nothing was started.",
      },
    );
  }
  try {
    checkManifest(manifest, limits);
  } catch (error) {
    if (!(error instanceof ManifestError)) throw error;
    const tooBig = ["TooManyFiles", "FileTooLarge", "TreeTooLarge"].includes(error.code);
    throw new InvalidInputError(`The manifest is refused: ${error.message}.`, {
      code: `InvalidManifest:${error.code}`,
      hint: tooBig
        ? "Exclude build outputs and dependencies (add them to .gitignore) and try again; nothing was started."
        : "Fix the entry named above in the tree (or send the manifest as the fastbuild CLI makes it) and try again; nothing was started.",
    });
  }
}

/**
 * Which contents the store lacks and their packs: the environment's index (absent: empty) says
 * which are stored in a pack still young enough to reuse; the rest, distinct and in manifest
 * order, are packed by `planPacks`. The pending request is written create-only: a build id is new.
 */
async function planUploads(
  deps: Deps,
  input: BuildInput,
  manifest: SourceManifest,
  indexBlob: JsonBlob | undefined,
  now: Date,
): Promise<ContentUploads> {
  const { config, contents: store } = deps;
  const index = indexOf(indexBlob?.value);
  const all = manifestContents(manifest);
  const stored = storedContents(index, all, now);
  const missing = all.filter((content) => !Object.hasOwn(stored, content.sha256));
  const packs: PlannedPack[] = planPacks(missing).map((contents, n) => ({
    name: contentBlobNames.pack(input.buildId, n),
    contents,
  }));
  const pending: PendingSource = { version: 2, sourceDigest: input.sourceDigest, packs };
  const minutes = config.builds.uploadSasMinutes;
  const [urls] = await Promise.all([
    Promise.all(packs.map((pack) => store.createUploadUrl(pack.name, minutes))),
    store.writeJson(contentBlobNames.pending(input.buildId), pending, { ifNoneMatch: "*" }),
    planFor(deps, input.sourceDigest, manifest, planPacksOf({ packs, stored }, all)).then((plan) =>
      store.writeJson(contentBlobNames.plan(input.buildId), plan, { ifNoneMatch: "*" }),
    ),
  ]);
  return {
    packs: packs.map((pack, n) => ({ url: urls[n]!.url, contents: pack.contents.map((c) => c.sha256) })),
    expiresOn: urls[0]?.expiresOn ?? new Date(now.getTime() + minutes * 60_000).toISOString(),
    maxBytes: config.builds.maxUploadBytes,
    stored: Object.keys(stored).length,
    missing: missing.length,
    missingBytes: missing.reduce((sum, content) => sum + content.size, 0),
  };
}

/**
 * The builder's plan: the manifest's text and, per pack it takes contents from, a read URL. The
 * builder reads it when its build starts, maybe after a wait in the builder's queue: the grants
 * last as long as a build may.
 */
async function planFor(
  deps: Deps,
  sourceDigest: string,
  manifest: SourceManifest,
  packs: ReturnType<typeof planPacksOf>,
): Promise<SourcePlan> {
  const minutes = deps.contents.maxReadMinutes;
  const urls = await Promise.all(packs.map((pack) => deps.contents.createReadUrl(pack.pack, minutes)));
  return {
    version: 1,
    sourceDigest,
    manifest: canonicalManifest(manifest),
    packs: packs.map((pack, n) => ({ url: urls[n]!.url, contents: pack.contents })),
  };
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const startBuild = apiHandler(run);
