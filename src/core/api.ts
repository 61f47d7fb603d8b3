/**
 * The HTTP API's request and response shapes, shared by the functions and the CLI.
 * Requests are validated with these schemas; responses are plain types.
 */
import { z } from "zod";
import { BASE_KEY, COMMIT, ruleSchema, SOURCE_DIGEST } from "./rules.js";
import { projectSettingsSchema } from "./projectSettings.js";
import { manifestDeltaSchema, manifestSchema } from "./sourceManifest.js";

/** Git refs and commits are displayed and passed on as parameters, so keep them boring. */
export const branchSchema = z
  .string()
  .max(200)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._/-]*$/,
    "letters, digits and . _ / - only (no spaces, quotes or shell characters)",
  );

export const commitSchema = ruleSchema(COMMIT);

/**
 * Who started a build, as the CLI read it from `git config` (each optional: a tree outside git, or
 * a git without user.name/email, sends none). Shown in the build history only.
 */
export const authorSchema = z
  .object({
    name: z.string().min(1).max(100).optional(),
    email: z
      .string()
      .min(3)
      .max(254)
      .regex(/^[^\s<>"]+@[^\s<>"]+$/, "an e-mail address")
      .optional(),
  })
  .strict();
export type Author = z.infer<typeof authorSchema>;

export const sourceDigestSchema = ruleSchema(SOURCE_DIGEST);

export const baseKeySchema = ruleSchema(BASE_KEY);

export const startBuildRequestSchema = z
  .object({
    environment: z.string().min(1).max(80),
    commit: commitSchema.optional(),
    branch: branchSchema.optional(),
    /** The working tree had changes not in `commit` (history only). */
    dirty: z.boolean().optional(),
    author: authorSchema.optional(),
    sourceDigest: sourceDigestSchema,
    /** Archive size in bytes, when the client knows it up front (checked against the limit early). */
    sourceBytes: z.number().int().positive().optional(),
    /** Computed by the upload command from the dependency recipe (src/core/baseKey.ts). */
    baseKey: baseKeySchema,
    /**
     * Content-addressed source (src/core/sourceManifest.ts): the tree's manifest, whose digest is
     * `sourceDigest`. The answer's `contents` says which contents to upload, in which packs; without
     * a manifest the client uploads one archive to `upload.url` (clients before item 4 of issue 10).
     */
    manifest: manifestSchema.optional(),
    /**
     * Or, instead of `manifest`, its change from a manifest an earlier build sent (the store keeps
     * each by digest): answered 409 `BaseManifestUnknown` when the store no longer has that base.
     */
    manifestDelta: manifestDeltaSchema.optional(),
    /**
     * The project file's build settings (fast-build.toml, src/core/projectSettings.ts): binary,
     * features, profile, target, port and the project's own Dockerfiles. Absent (CLIs before the
     * project file): the environment's `binaryName` and the built-in Dockerfiles.
     */
    project: projectSettingsSchema.optional(),
    options: z
      .object({
        rebuildBase: z.boolean().optional(),
        deploy: z.boolean().optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((request) => !(request.manifest && request.manifestDelta), {
    message: "send either manifest or manifestDelta, not both",
    path: ["manifestDelta"],
  });
export type StartBuildRequest = z.infer<typeof startBuildRequestSchema>;

export interface StartBuildResponse {
  buildId: string;
  /** Archive builds (no manifest): where to PUT the one archive. */
  upload?: { url: string; expiresOn: string; maxBytes: number };
  /** Manifest builds: the contents the store lacks, packed as `planPacks` packs them. */
  contents?: ContentUploads;
  /** Relative URLs under the API base. */
  statusUrl: string;
  logsUrl: string;
  sourceCompleteUrl: string;
  cancelUrl: string;
}

/**
 * The packs a manifest build uploads: for each, a create/write SAS for its blob and the sha256 of
 * each content, in order; the pack's bytes are the gzip of those contents concatenated. `maxBytes`
 * bounds the packs' bytes together. With no packs, the client only posts `sourceCompleteUrl`.
 */
export interface ContentUploads {
  packs: { url: string; contents: string[] }[];
  expiresOn: string;
  maxBytes: number;
  /** Distinct contents of the manifest the store already holds, and the ones to upload. */
  stored: number;
  missing: number;
  missingBytes: number;
}

export const BUILD_PHASES = [
  "queued",
  "starting-builder",
  "waiting-for-source",
  "building",
  "deploying",
  "succeeded",
  "failed",
  "cancelled",
  "timed-out",
] as const;
export type BuildPhase = (typeof BUILD_PHASES)[number];
/**
 * The durable runtime statuses of an orchestration that has ended: it will run no more code (no
 * cleanup either). `Canceled` is an older runtime's spelling of `Terminated`.
 */
export const ENDED_RUNTIME_STATUSES: ReadonlySet<string> = new Set([
  "Completed",
  "Failed",
  "Terminated",
  "Canceled",
]);

export const TERMINAL_PHASES: ReadonlySet<BuildPhase> = new Set([
  "succeeded",
  "failed",
  "cancelled",
  "timed-out",
]);

export type StepState = "pending" | "running" | "succeeded" | "failed" | "skipped";
export interface BuildStep {
  name: string;
  state: StepState;
  startedAt?: string;
  endedAt?: string;
  /** Why a step was skipped, when it was not simply never reached. */
  reason?: string;
}

export interface ApiError {
  code: string;
  message: string;
  hint?: string;
}

export interface BuildStatus {
  buildId: string;
  environment: string;
  phase: BuildPhase;
  terminal: boolean;
  steps: BuildStep[];
  queuePosition?: number;
  /**
   * The newer build of the same environment and branch that superseded this one while it was
   * queued (orchestrator version 7 on); the build then ended `cancelled` with code `Superseded`.
   */
  supersededBy?: string;
  builder: { name: string; powerState?: string };
  cache?: { base: "hit" | "miss"; skipped: boolean; baseKey?: string };
  /**
   * What the registry said before the builder was touched (orchestrator version 5 on): whether it
   * has the image for this source digest (then the builder is not leased, started or touched),
   * whether it has the base image for the base key, and what the build is expected to take.
   */
  registryCheck?: {
    sourceImage: "present" | "absent";
    base: "hit" | "miss";
    /** e.g. "unknown", or "about 2 min (base hit)". */
    expectedDuration: string;
    /** The same, in ms, when earlier builds gave one. */
    expectedMs?: number;
    message: string;
  };
  image?: { reference: string; digest?: string };
  revision?: { name: string; healthState?: string; provisioningState?: string };
  /**
   * What the deploy step did: the image reference it points the app at (digest-pinned when the
   * builder reported a digest) and whether the app already ran exactly that image, in which case
   * no revision was created and `revision` is the app's current ready revision.
   */
  deployment?: { reference: string; unchanged: boolean; message: string };
  error?: ApiError;
  /** Last lines of the build log (the full log is at `logsUrl`). */
  logTail?: string[];
  timings: { createdAt: string; startedAt?: string; endedAt?: string; stepsMs?: Record<string, number> };
}

export interface LogsResponse {
  text: string;
  nextOffset: number;
  size: number;
  /** The build has ended: no more bytes will be appended. */
  complete: boolean;
}

export interface BuilderInfo {
  name: string;
  environment: string;
  powerState: string;
  leaseHolder?: string;
  leaseExpiresAt?: string;
  queue: string[];
  lastActivityAt?: string;
  /** When the idle timer will deallocate it, if nothing else happens. */
  idleShutdownAt?: string;
  /** Deallocated by a hibernate: its next start resumes it (`powerState` reads `deallocated`). */
  hibernated?: true;
  /** What the idle shutdown does to it, when that is `hibernate` (else it deallocates). */
  idleShutdown?: "hibernate";
}

/**
 * `POST /api/environments/{env}/warm`: 202 `started` (the VM was off and Azure accepted its start,
 * which goes on after the answer), 200 `none` (already running or starting, or a build holds it).
 */
export interface WarmResponse {
  environment: string;
  /** The builder VM's name. */
  builder: string;
  action: "started" | "none";
  /** The power state the warm found. */
  powerStateBefore: string;
  /** The power state now (`starting` after a start). */
  powerState: string;
  /** Why nothing was done, when nothing was. */
  reason?: string;
  /** The build that holds the builder, when one does (no idle shutdown is due then). */
  leaseHolder?: string;
  /** The activity this warm recorded (or a later one already there). */
  lastActivityAt?: string;
  /** When the idle timer deallocates it unless it is used before. */
  idleShutdownAt?: string;
  /** The builder was hibernated: this start resumes it. */
  hibernated?: true;
}

export interface ErrorResponse {
  error: ApiError & { correlationId?: string };
}

/**
 * The long poll of `GET /api/builds/{id}?waitForChangeMs=N&etag=E` (or `If-None-Match: E`): while
 * the status's ETag is still E the function re-reads the durable status every `recheckMs` until it
 * changes (200 with the new status) or N ms pass (304). N is capped at `maxMs`: under the CLI's
 * 30 s request timeout, and far under the 230 s after which Azure's load balancer cuts an HTTP
 * trigger's request whatever the function timeout (learn.microsoft.com, "Function app timeout
 * duration"), and the 30-60 s idle limits of common proxies. The CLI waits `maxMs` where no log
 * grows, and its log interval while one does.
 */
export const STATUS_WAIT = { maxMs: 25_000, recheckMs: 150 } as const;

/** The query parameters of the long poll. */
export const STATUS_WAIT_QUERY = { waitMs: "waitForChangeMs", etag: "etag" } as const;

/**
 * `GET /api/environments/{env}/images?sourceDigest=…&baseKey=…` (read-only; `fast-build plan
 * --api`): what the registry has for a build of this source with this base key, asked as the
 * orchestrator asks it before it touches the builder.
 */
export interface ImagesResponse {
  environment: string;
  /** `<registry>/<repository>:src-<hex>`: the image a build of this source pushes. */
  sourceImage: { reference: string; state: "present" | "absent"; digest?: string };
  /** `<registry>/<repository>-base:<base key>`. */
  baseImage: { reference: string; state: "present" | "absent"; digest?: string };
  /** What the environment's recent builds took, with a base hit and with a miss. */
  expected?: Record<"hit" | "miss", { medianMs?: number; builds: number; text: string }>;
}
