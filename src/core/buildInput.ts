/**
 * The build orchestration's input (written by the HTTP starter, validated by the orchestrator),
 * the names derived from a build id, and the external events the orchestration waits for.
 */
import { z } from "zod";
import { authorSchema, baseKeySchema, branchSchema, commitSchema, sourceDigestSchema } from "./api.js";
import { buildResultSchema } from "./buildResult.js";
import { projectSettingsSchema } from "./projectSettings.js";
import { BUILD_ID, CALLBACK_TOKEN, ruleSchema } from "./rules.js";
import type { VmRef } from "./ports.js";

/** External events (raised by the HTTP functions). */
export const BUILD_EVENTS = {
  /** The client finished the upload and the function checked the blob. */
  sourceUploaded: "SourceUploaded",
  /** The builder's completion callback (authenticated by the per-build token). */
  buildCompleted: "BuildCompleted",
  cancelRequested: "CancelRequested",
} as const;

export const buildIdSchema = ruleSchema(BUILD_ID);

/**
 * The orchestrator version new builds start with. Raise it when a change alters the sequence of
 * activities or timers on an existing path, and keep the old path for builds of older versions.
 * 2: a failed start stops the command by its name; retry waits renew the builder lease.
 * 3: past the source deadline, one more wait for an upload reported by the deadline whose event
 *    comes after the deadline's timer (orchestration/source.ts).
 * 4: a cancel that arrived with or after the build's result, before the deploy, ends the build
 *    cancelled with nothing deployed; once the app was patched, the deploy's wait is not cancelled
 *    (orchestration/deploy.ts).
 * 5: before the lease, one registry lookup (image for the source digest, base image for the base
 *    key); with the image present, no lease, VM, source or build: the digest is deployed
 *    (orchestration/registryFirst.ts).
 * 6: the deploy no longer waits for the builder's hand-back: the app is patched first, then the
 *    finished command is retired (its DELETE not followed to the end once the script has exited)
 *    and the lease given back while the revision starts; the revision is first read a poll wait
 *    after the PATCH, and each read asks ARM for the revision only (orchestration/build.ts, deploy.ts).
 */
/* 7: supersede: a build with a branch sends its environment and branch with every ask for the lease;
 *    a queued build a newer one of its branch superseded ends cancelled at that ask, naming the
 *    newer build (orchestration/lease.ts, core/lease.ts).
 */
export const ORCHESTRATOR_VERSION = 7;

export const buildInputSchema = z
  .object({
    buildId: buildIdSchema,
    environment: z.string().min(1).max(80),
    sourceDigest: sourceDigestSchema,
    commit: commitSchema.optional(),
    branch: branchSchema.optional(),
    /** Who started it (history only; absent in inputs written before the history existed). */
    dirty: z.boolean().optional(),
    author: authorSchema.optional(),
    baseKey: baseKeySchema,
    rebuildBase: z.boolean().default(false),
    deploy: z.boolean().default(true),
    /**
     * Random per-build secret the builder presents on its completion callback. Kept here (durable
     * state) and never logged; the durable system key is never used for this.
     */
    callbackToken: ruleSchema(CALLBACK_TOKEN),
    createdAt: z.iso.datetime(),
    /**
     * How the source travels: `archive` (one tar.gz blob, `sourceBlobName`; absent means this) or
     * `manifest` (content-addressed: the builder fetches `contentBlobNames.plan`, src/core/sourceManifest.ts).
     * The orchestration's steps are the same for both; only the start activity's parameters differ.
     */
    sourceFormat: z.enum(["archive", "manifest"]).optional(),
    /**
     * The orchestrator's shape this build began with, fixed in its history: a build replays on
     * newer code along the path it started on (absent: 1, before versions were written).
     */
    orchestratorVersion: z.number().int().min(1).max(ORCHESTRATOR_VERSION).optional(),
    /**
     * The project's build settings (fast-build.toml), checked by `POST /builds`; absent in builds
     * started before the project file, or by a CLI without one. Only the start activity reads them:
     * the orchestration's steps are the same with or without.
     */
    project: projectSettingsSchema.optional(),
  })
  .strict();
export type BuildInput = z.infer<typeof buildInputSchema>;

export const buildCompletedSchema = buildResultSchema;

export const sourceBlobName = (buildId: string): string => `${buildId}/source.tar.gz`;
export const logBlobName = (buildId: string): string => `${buildId}/build.log`;
export const errorLogBlobName = (buildId: string): string => `${buildId}/build.err.log`;
/** The route the builder posts its result to (served by the HTTP functions). */
export const callbackPath = (buildId: string): string => `/api/builds/${buildId}/callback`;
/** One managed run command per build, so a cancel deletes exactly this build's script. */
/** Every build command this product starts is named with this prefix (and nothing else is). */
export const RUN_COMMAND_PREFIX = "fb-";
export const runCommandName = (buildId: string): string => `${RUN_COMMAND_PREFIX}${buildId}`.slice(0, 64);

/**
 * Container Apps revision suffix: lower-case alphanumerics and dashes, starting with a letter;
 * `<app>--<suffix>` must stay short, so the build id is cut to 20 characters (ids are random
 * enough that the prefix is unique among one app's revisions).
 */
export function revisionSuffix(buildId: string): string {
  return `b${buildId.replace(/[^a-z0-9]/g, "").slice(0, 20)}`;
}

/** The builder VM an environment builds on. */
export function builderVm(env: { subscriptionId: string; resourceGroup: string; builderVm: string }): VmRef {
  return { subscriptionId: env.subscriptionId, resourceGroup: env.resourceGroup, vmName: env.builderVm };
}

/** Table row key of a builder: Azure Table keys may not contain / \ # ?. */
export function builderKey(vm: VmRef): string {
  return `${vm.subscriptionId}~${vm.resourceGroup}~${vm.vmName}`.toLowerCase().replace(/[/\\#?]/g, "_");
}
