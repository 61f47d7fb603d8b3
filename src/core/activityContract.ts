/**
 * The contract between the build orchestrator and its activities: registered names and the
 * JSON shapes that cross the durable host. Both sides import this; neither imports the other.
 * {@link ActivityContract} types each name's input and output once: the orchestrator's call and
 * the activity's handler are both checked against it, so a changed input cannot compile on one
 * side only.
 */
import type { BuildResult } from "./buildResult.js";
import type { BuildActivityRecord, QueueScope } from "./lease.js";
import type { BuildHistoryRecord } from "./history.js";
import type {
  BuildCommandHandle,
  ContainerAppRef,
  ContainerAppStatus,
  ExecutionState,
  ImageRepositoryRef,
  ImageUpdateStarted,
  RegistryResourceRef,
  RevisionStatus,
  VmRef,
  VmStatus,
} from "./ports.js";
import type { ExtractLimits } from "./extractLimits.js";
import type { ProjectSettings } from "./projectSettings.js";
import type { DurationEstimate } from "./expectedDuration.js";

/** The build orchestrator's registered name. */
export const BUILD_ORCHESTRATOR = "fb_BuildOrchestrator";

/**
 * The deploy orchestration's registered name (promotions and rollbacks, src/orchestration/promote.ts).
 * Here, not in core/promotion.ts, so that registering it at start loads no schema library.
 */
export const DEPLOY_ORCHESTRATOR = "fb_DeployOrchestrator";

export const ACTIVITIES = {
  resolveEnvironment: "fb_ResolveEnvironment",
  acquireLease: "fb_AcquireLease",
  renewLease: "fb_RenewLease",
  releaseLease: "fb_ReleaseLease",
  recordBuild: "fb_RecordBuild",
  startVm: "fb_StartVm",
  getVmStatus: "fb_GetVmStatus",
  startBuild: "fb_StartBuild",
  readBuild: "fb_ReadBuild",
  cancelBuild: "fb_CancelBuild",
  /** Deallocates the builder VM: the only way to stop a build script that cannot be cancelled. */
  stopBuilder: "fb_StopBuilder",
  /** Reads the Container App (its containers' images, latest and latest ready revision). */
  readApp: "fb_ReadApp",
  /** Starts the image update; returns the new revision's name and the app's revision mode. */
  deployImage: "fb_DeployImage",
  getRevision: "fb_GetRevision",
  /** The deploy's revision (undefined while Azure has not made it yet) and the app's operation state. */
  readDeployment: "fb_ReadDeployment",
  /** Multiple revision mode: sends all ingress traffic to the deployed revision. */
  routeTraffic: "fb_RouteTraffic",
  /** Asks the environment's registry which manifest digest a tag names (before any deploy). */
  readImageDigest: "fb_ReadImageDigest",
  /**
   * Before the builder is touched (version 5 on): the digests of the app image for the source
   * digest (`src-<hex>`) and of the base image for the base key, in one call.
   */
  lookUpImages: "fb_LookUpImages",
  /** Promotions (the deploy orchestration): ACR's import of an image by digest into the target registry. */
  importImage: "fb_ImportImage",
} as const;

/** A registered activity name. */
export type ActivityName = (typeof ACTIVITIES)[keyof typeof ACTIVITIES];

/** Everything the orchestrator needs from configuration, fixed in history at the start of a build. */
export interface ResolvedEnvironment {
  vm: VmRef;
  builderKey: string;
  app: ContainerAppRef;
  containerName: string;
  registry: string;
  imageRepository: string;
  /** The environment's cargo binary, for builds whose project names none (optional since the project file). */
  binaryName?: string;
  limits: {
    sourceTimeoutMs: number;
    buildTimeoutMs: number;
    deployTimeoutMs: number;
    leaseMs: number;
    /** How long the builder may take to start and report its agent ready. */
    vmReadyTimeoutMs: number;
  };
  /** The archive size limit the builder enforces again after download (the API's own limit). */
  sourceMaxBytes: number;
  /**
   * The extractor's limits, fixed when the build starts. Optional: an orchestration that began
   * before they were sent has none in its history, and `startBuild` then uses the app's current ones.
   */
  extractLimits?: ExtractLimits;
  /** Where the builder posts its completion callback; without it the orchestrator polls only. */
  /**
   * Whether a build joining the builder's queue supersedes older queued builds of its branch
   * (src/core/supersede.ts); absent in histories written before version 7.
   */
  supersede?: boolean;
  callbackBaseUrl:
    | string
    | undefined; /** The registry's ARM resource (promotions import into it); absent when not configured. */
  registryResource?: RegistryResourceRef;
  /** `false`: the builder builds without the shared registry cache. Absent: on. */
  registryCache?: false;
}

export interface ImportImageInput {
  target: RegistryResourceRef;
  sourceResourceId: string;
  /** `repository@sha256:…`. */
  sourceImage: string;
  targetTags: string[];
}

export type AcquireLeaseResult =
  | { acquired: true; generation: number; expiresAt: string }
  | { acquired: false; position: number; holder: string | undefined; supersededBy?: undefined }
  /** Version 7 on: a newer build of the same environment and branch superseded this queued one. */
  | { acquired: false; supersededBy: string };

export interface LeaseRef {
  builderKey: string;
  buildId: string;
  generation: number;
}

export interface AcquireLeaseInput {
  builderKey: string;
  buildId: string;
  leaseMs: number;
  /** Version 7 on, builds with a branch: the queue entry's environment and branch, and whether it supersedes. */
  scope?: QueueScope;
}

export interface RenewLeaseInput extends LeaseRef {
  leaseMs: number;
}

export interface ReleaseLeaseInput {
  builderKey: string;
  buildId: string;
  /** The generation this build held; undefined when it only queued. */
  generation?: number | undefined;
}

export interface VmInput {
  vm: VmRef;
}

/** Stops the builder; with `lease`, only while that lease is still this build's (confirmed by renewing it). */
export interface StopBuilderInput extends VmInput {
  lease?: RenewLeaseInput;
}

export interface StartBuildInput {
  buildId: string;
  environment: ResolvedEnvironment;
  sourceDigest: string;
  commit?: string;
  /** The build's git branch: the app stage's registry cache tag. Absent from older starts and builds outside git. */
  branch?: string;
  baseKey: string;
  rebuildBase: boolean;
  callbackToken: string;
  /**
   * The project's build settings (fast-build.toml): binary, cargo options, port, own Dockerfiles.
   * Absent from starts scheduled before the project file, which build as before.
   */
  project?: ProjectSettings;
  timeoutSeconds: number;
  /**
   * `manifest`: the builder fetches the plan (FASTBUILD_SOURCE_PLAN_URL) instead of one archive
   * (FASTBUILD_SOURCE_URL). Absent for archive builds, so their inputs are as before.
   */
  sourceFormat?: "manifest";
  /**
   * The lease this build holds: confirmed (renewed, with its generation) right before the command
   * starts, so a build that lost its builder never starts a script beside another build's.
   * Optional: a start scheduled by an orchestrator before this field existed has none.
   */
  lease?: RenewLeaseInput;
}

/** Run Command's execution states once its script has exited. */
export const TERMINAL_EXECUTION_STATES: ReadonlySet<ExecutionState> = new Set([
  "Succeeded",
  "Failed",
  "TimedOut",
  "Canceled",
]);

export interface BuildCommandInput {
  vm: VmRef;
  handle: BuildCommandHandle;
}

export interface CancelBuildInput extends BuildCommandInput {
  /**
   * Absent or true: done once the run command is gone (its script stopped), which a stop needs
   * before the lease goes back. False (version 6 on, retiring a command whose script has exited):
   * done once Azure accepted the DELETE; the resource goes by itself.
   */
  untilGone?: boolean;
}

export interface ReadBuildInput extends BuildCommandInput {
  /** A result line from another build (a stale script) is not this build's result. */
  buildId: string;
  /** `logTailDigest` of the tail the orchestrator has: the same tail is not sent again. */
  logTailDigest?: string;
}

/**
 * One read of the build command. Every poll's result stays in history (and is replayed at every
 * later episode), so it is small: the log tail comes only when it changed, within a byte budget.
 */
export interface BuildProgress {
  executionState: ExecutionState;
  exitCode: number | undefined;
  /** The script's result line, once it printed one. */
  result: BuildResult | undefined;
  /**
   * Last lines of output (secrets redacted), for the status and failures; absent when their
   * digest is the input's. (Results in histories written before the digest always have it.)
   */
  logTail?: string[];
  /** Names the current tail; absent only in results written before it existed. */
  logTailDigest?: string;
  message: string | undefined;
}

/** The record activity's input is the row the lease store keeps per build. */
export type RecordBuildInput = BuildActivityRecord & {
  /** The build's history record (src/core/history.ts); absent from builds started before it existed. */
  history?: BuildHistoryRecord;
};

export interface DeployInput {
  app: ContainerAppRef;
  containerName: string;
  /** Digest-pinned (`<registry>/<repo>@sha256:…`) unless the builder reported no digest. */
  image: string;
  revisionSuffix: string;
}

export interface ReadAppInput {
  app: ContainerAppRef;
}

export interface GetRevisionInput {
  app: ContainerAppRef;
  revisionName: string;
}

export interface ReadDeploymentInput extends GetRevisionInput {
  /**
   * Absent or `always`: the app is read with every revision read. `when-needed` (version 6 on): only
   * when the revision is missing (did the update fail before Azure made it?) or provisioned and
   * healthy (which revision is the latest, for the deploy's message): one ARM read per poll.
   */
  appRead?: "always" | "when-needed";
}

export interface DeploymentView {
  /** Undefined while the revision does not exist (yet, or because the update failed before it). */
  revision: RevisionStatus | undefined;
  /** Always with `appRead: "always"`; with `when-needed`, only when it was read. */
  app: ContainerAppStatus | undefined;
}

export interface ReadImageDigestInput extends ImageRepositoryRef {
  tag: string;
}

export interface LookUpImagesInput {
  registry: string;
  repository: string;
  /** `src-<hex of the source digest>`: the tag build.sh pushes last, so only a complete image has it. */
  sourceTag: string;
  /** build.sh's base repository (`<repository>-base`) and tag (the base key). */
  baseRepository: string;
  baseTag: string;
  /** Whose recent builds the expected duration comes from (absent in builds started before it was sent). */
  environment?: string;
}

export interface ImageLookup {
  /** The app image's digest for the source tag; undefined when the registry has none. */
  source: string | undefined;
  /** The base image's digest for the base key; undefined when the registry has none. */
  base: string | undefined;
  /** What the environment's recent builds took, for either base outcome (src/core/expectedDuration.ts). */
  expected?: Record<"hit" | "miss", DurationEstimate>;
}

export interface ImageDigest {
  /** What the registry's manifest for the tag hashes to; undefined when it has no such tag. */
  digest: string | undefined;
}

/**
 * Each activity's input and output, by registered name: the one type both sides use. The
 * orchestrator's `call` takes `ActivityInput<K>` and yields `ActivityOutput<K>`; the activities
 * are an {@link ActivityHandlers} object. (Precedent: temporal's
 * `proxyActivities<ReturnType<typeof createActivities>>()`.)
 */
export interface ActivityContract {
  [ACTIVITIES.resolveEnvironment]: { input: { environment: string }; output: ResolvedEnvironment };
  [ACTIVITIES.acquireLease]: { input: AcquireLeaseInput; output: AcquireLeaseResult };
  [ACTIVITIES.renewLease]: { input: RenewLeaseInput; output: { expiresAt: string } };
  [ACTIVITIES.releaseLease]: { input: ReleaseLeaseInput; output: { vmMinutes: number } };
  [ACTIVITIES.recordBuild]: { input: RecordBuildInput; output: void };
  [ACTIVITIES.startVm]: { input: VmInput; output: VmStatus };
  [ACTIVITIES.getVmStatus]: { input: VmInput; output: VmStatus };
  [ACTIVITIES.startBuild]: { input: StartBuildInput; output: BuildCommandHandle };
  [ACTIVITIES.readBuild]: { input: ReadBuildInput; output: BuildProgress };
  [ACTIVITIES.cancelBuild]: { input: CancelBuildInput; output: void };
  [ACTIVITIES.stopBuilder]: { input: StopBuilderInput; output: VmStatus };
  [ACTIVITIES.readApp]: { input: ReadAppInput; output: ContainerAppStatus };
  [ACTIVITIES.deployImage]: { input: DeployInput; output: ImageUpdateStarted };
  [ACTIVITIES.getRevision]: { input: GetRevisionInput; output: RevisionStatus };
  [ACTIVITIES.readDeployment]: { input: ReadDeploymentInput; output: DeploymentView };
  [ACTIVITIES.routeTraffic]: { input: GetRevisionInput; output: void };
  [ACTIVITIES.readImageDigest]: { input: ReadImageDigestInput; output: ImageDigest };
  [ACTIVITIES.lookUpImages]: { input: LookUpImagesInput; output: ImageLookup };
  [ACTIVITIES.importImage]: { input: ImportImageInput; output: void };
}

/** What activity `K` takes (fails to compile for a name the contract lacks). */
export type ActivityInput<K extends ActivityName> = ActivityContract[K]["input"];
/** What activity `K` returns. */
export type ActivityOutput<K extends ActivityName> = ActivityContract[K]["output"];

/** The activities' implementation: one handler per registered name, typed by the contract. */
export type ActivityHandlers = {
  [K in ActivityName]: (input: ActivityInput<K>) => Promise<ActivityOutput<K>>;
};

export type { BuildCommandHandle, ContainerAppStatus, RevisionStatus, VmStatus };
