/**
 * The narrow operations the product needs from Azure, as plain types. Gateways in `src/azure/`
 * implement them over the SDK clients; activities and the local runtime use only these. Core code
 * imports no SDK.
 */

export interface VmRef {
  subscriptionId: string;
  resourceGroup: string;
  vmName: string;
}

export interface ContainerAppRef {
  subscriptionId: string;
  resourceGroup: string;
  appName: string;
}

/** `PowerState/<x>` from the VM instance view, lower-cased. */
export type PowerState =
  "starting" | "running" | "stopping" | "stopped" | "deallocating" | "deallocated" | "unknown";

export interface VmStatus {
  powerState: PowerState;
  /** The VM agent reports Ready: Run Command can be accepted. */
  agentReady: boolean;
  /**
   * Deallocated by a hibernate (`HibernationState/Hibernated` next to `PowerState/deallocated`):
   * the ordinary start resumes it. Set only when true, so other states read as before.
   */
  hibernated?: true;
}

/** How a build command was started: a managed Run Command, or the action Run Command (hybrid). */
export interface BuildCommandHandle {
  kind: "managed" | "action";
  /** Managed run command resource name. */
  name: string;
  /** For the action Run Command: the serialized LRO poller state, to resume polling later. */
  resumeState?: string;
  /** Set by the start only: older build commands it removed from the VM first (for the build's log). */
  staleCommands?: RemovedCommands;
}

export interface BuildCommandSpec {
  /** Managed run command resource name (one per build, e.g. `fb-<buildId>`). */
  name: string;
  /** The script text: fixed, from `dockerfiles/`; never contains client values. */
  script: string;
  /**
   * The action Run Command's (hybrid profile) script, `dockerfiles/launcher.sh`: it decodes the
   * values and runs `script` with bash. Unused by the managed Run Command.
   */
  launcher?: string;
  /** Values handed to the script as environment/parameters (never substituted into its text). */
  parameters: Readonly<Record<string, string>>;
  /** Like `parameters`, but hidden from GETs (tokens, SAS URLs). */
  protectedParameters: Readonly<Record<string, string>>;
  timeoutInSeconds: number;
  /** Append blobs the VM streams stdout/stderr into (the live log): SAS URLs (racw), or plain ones … */
  outputBlobUri: string;
  errorBlobUri: string;
  /** … that the VM's own identity writes (`{}`: system-assigned). No SAS then in public properties. */
  blobManagedIdentity?: { clientId?: string };
}

export type ExecutionState =
  "Unknown" | "Pending" | "Running" | "Failed" | "Succeeded" | "TimedOut" | "Canceled";

export interface BuildCommandView {
  executionState: ExecutionState;
  exitCode: number | undefined;
  /** Last 4 KB of stdout / stderr, as the instance view keeps them. */
  output: string;
  error: string;
  executionMessage: string | undefined;
  startTime: string | undefined;
  endTime: string | undefined;
}

export interface ComputeGateway {
  getVmStatus(vm: VmRef): Promise<VmStatus>;
  /** Starts the VM and waits for the operation to finish. */
  start(vm: VmRef): Promise<void>;
  /**
   * Asks Azure to start the VM and returns once Azure accepted it (Start is a long-running
   * operation: 202 with Azure-AsyncOperation); the start goes on without us (`fast-build warm`).
   */
  beginStart(vm: VmRef): Promise<void>;
  deallocate(vm: VmRef): Promise<void>;
  /**
   * Hibernates the VM (a deallocate with `hibernate=true`) and waits for the operation. Azure
   * refuses it (409 `OperationNotAllowed`, or the operation fails `VMHibernateNotSupported`) for a
   * VM without `additionalCapabilities.hibernationEnabled`, one not running, or a guest not ready;
   * the hybrid profile has no such parameter (`HibernationUnsupportedProfile`, nothing sent).
   */
  hibernate(vm: VmRef): Promise<void>;
  startBuildCommand(vm: VmRef, spec: BuildCommandSpec): Promise<BuildCommandHandle>;
  /**
   * The handle of build command `name` when a start of it already took: its script is starting,
   * runs or ran (a retried or re-delivered start must not start it again). Undefined when there is
   * none, or its start failed before the script ran; always undefined for the action Run Command,
   * which leaves no resource to find.
   */
  findBuildCommand(vm: VmRef, name: string): Promise<BuildCommandHandle | undefined>;
  readBuildCommand(vm: VmRef, handle: BuildCommandHandle): Promise<BuildCommandView>;
  /**
   * Deletes the managed run command (stops the script); the action Run Command cannot be cancelled.
   * Resolves once the command is gone, or with `untilGone: false` once Azure accepted the delete.
   */
  cancelBuildCommand(vm: VmRef, handle: BuildCommandHandle, options?: { untilGone?: boolean }): Promise<void>;
  /**
   * Best effort: deletes the VM's managed run commands whose name starts with `prefix`, except
   * `keep` (if given), and waits until they are gone. Never throws; says what it removed and what it could not.
   */
  removeBuildCommands(vm: VmRef, selection: { prefix: string; keep?: string }): Promise<RemovedCommands>;
  /** `hardwareProfile.vmSize` of the VM (e.g. `Standard_D4s_v5`): what its minutes cost. */
  getVmSize(vm: VmRef): Promise<string>;
  /**
   * The VM's own word on whether a build runs on it (the idle shutdown's second signal besides the
   * lease): its managed run commands whose name starts with `prefix` and that are busy
   * (src/core/idle.ts `isBuildCommandBusy`). Undefined where the VM cannot say: the hybrid
   * profile's action Run Command leaves no resource to list. Throws when Azure cannot be read.
   */
  listBusyBuildCommands(vm: VmRef, prefix: string): Promise<BusyCommand[] | undefined>;
}

/** A run command the VM reports as not finished. */
export interface BusyCommand {
  name: string;
  executionState: ExecutionState | undefined;
  provisioningState: string | undefined;
}

export interface RemovedCommands {
  removed: string[];
  /** `name: reason` for each command (or the listing) that could not be removed. */
  failed: string[];
}

export interface ContainerAppStatus {
  latestRevisionName: string | undefined;
  latestReadyRevisionName: string | undefined;
  provisioningState: string | undefined;
  /** Image of each container, by container name. */
  images: Readonly<Record<string, string>>;
  /**
   * Single (Azure moves all traffic to a new revision once it is ready) | Multiple (traffic stays
   * where `ingress.traffic` puts it) | Labels; kept as a string: newer API versions may add values.
   */
  activeRevisionsMode: string;
  /** Whether the app has ingress at all (without it there is no traffic to move). */
  ingress: boolean;
  /** The port the ingress sends traffic to (`ingress.targetPort`), when the app has ingress. */
  targetPort?: number | undefined;
}

export interface ImageUpdate {
  containerName: string;
  image: string;
  /** Becomes the revision name `<app>--<suffix>`. */
  revisionSuffix: string;
}

export interface RevisionStatus {
  name: string;
  /** Healthy | Unhealthy | None (kept as a string: newer API versions may add values). */
  healthState: string;
  provisioningState: string;
  runningState: string | undefined;
  active: boolean;
}

/** What a started image update created, and how the app routes traffic to it. */
export interface ImageUpdateStarted {
  revisionName: string;
  activeRevisionsMode: string;
  ingress: boolean;
}

export interface ContainerAppsGateway {
  getApp(app: ContainerAppRef): Promise<ContainerAppStatus>;
  /**
   * Starts setting the image of one container (sending the full container spec) and returns the
   * revision it creates once Azure accepted the update, without waiting for it to be provisioned.
   */
  updateImage(app: ContainerAppRef, update: ImageUpdate): Promise<ImageUpdateStarted>;
  getRevision(app: ContainerAppRef, revisionName: string): Promise<RevisionStatus>;
  /** Sends 100% of the app's ingress traffic to one revision (and waits until Azure applied it). */
  sendAllTraffic(app: ContainerAppRef, revisionName: string): Promise<void>;
}

/** One revision of an app as the revisions list shows it (rollback picks from these). */
export interface RevisionSummary extends RevisionStatus {
  /** ISO time Azure created it; revisions are ordered by it. */
  createdTime: string | undefined;
  /** Image of each container, by container name. */
  images: Readonly<Record<string, string>>;
}

/** The app's revisions (rollback); a separate port so the build's gateway stays as it was. */
export interface RevisionHistoryGateway {
  listRevisions(app: ContainerAppRef): Promise<RevisionSummary[]>;
}

/** A container registry as Resource Manager names it (the target of an image import). */
export interface RegistryResourceRef {
  subscriptionId: string;
  resourceGroup: string;
  registryName: string;
}

export interface ImageImport {
  /** The source registry's ARM resource id. */
  sourceResourceId: string;
  /** `repository@sha256:…`: always a digest, so the bytes tested are the bytes imported. */
  sourceImage: string;
  /** `repository:tag` in the target registry. */
  targetTags: string[];
}

/** ACR's import (a control-plane copy between registries, no pull or push by us). */
export interface RegistryImportGateway {
  /** Imports and waits until the copy is done; overwrites a target tag (the tags name the digest). */
  importImage(target: RegistryResourceRef, image: ImageImport): Promise<void>;
}

export interface SignedUrl {
  url: string;
  expiresOn: string;
}

export interface BlobStat {
  exists: boolean;
  size: number;
  /** Base64 Content-MD5 as stored, when the uploader set one. */
  contentMd5: string | undefined;
}

export interface SourceStore {
  /** A SAS for exactly this blob, create/write only, expiring in ≤ 30 minutes. */
  createUploadUrl(blobName: string, minutes: number): Promise<SignedUrl>;
  /** A read-only SAS for the builder to download the archive. */
  createReadUrl(blobName: string, minutes: number): Promise<SignedUrl>;
  stat(blobName: string): Promise<BlobStat>;
  /** Streams the blob through SHA-256; returns the hex digest. */
  sha256(blobName: string): Promise<string>;
}

export interface LogChunk {
  /** UTF-8 text from `offset`; may end inside a line. */
  text: string;
  /** Byte offset to ask for next. */
  nextOffset: number;
  /** Total size of the log now. */
  size: number;
}

export interface LogStore {
  /** Creates the append blob (idempotent) and returns a racw SAS URL the VM appends to. */
  createAppendLog(blobName: string, minutes: number): Promise<SignedUrl>;
  /**
   * Where a managed Run Command writes a log. The handler creates or replaces the blob itself, so
   * the app creates nothing (the logs API reads a missing log as empty). On an identity-only
   * account the VM's managed identity writes (a plain URL); with an account key (local emulators,
   * which take no VM token) a racw SAS.
   */
  runCommandLog(blobName: string, minutes: number): Promise<{ url: string; managedIdentity: boolean }>;
  append(blobName: string, text: string): Promise<void>;
  read(blobName: string, offset: number, maxBytes: number): Promise<LogChunk>;
}

/** A repository in a container registry: `<registry>/<repository>`, as an environment names it. */
export interface ImageRepositoryRef {
  /** Login server, e.g. `myreg.azurecr.io` (or `127.0.0.1:5000` locally). */
  registry: string;
  repository: string;
}

export interface RegistryGateway {
  /**
   * The digest of the manifest the registry has for `tag` (its `Docker-Content-Digest`, checked
   * against the manifest's bytes), or undefined when the repository has no such tag.
   */
  manifestDigest(repository: ImageRepositoryRef, tag: string): Promise<string | undefined>;
}

/** A JSON blob as read, with the ETag a conditional write names. */
export interface JsonBlob {
  value: unknown;
  etag: string;
}

/**
 * A write's condition: only over this ETag (`ifMatch`), only if the blob does not exist
 * (`ifNoneMatch: "*"`), or none. A condition not met throws `ConflictError`.
 */
export type WriteCondition = { ifMatch: string } | { ifNoneMatch: "*" } | undefined;

/** The outcome of checking a pack against the contents it was planned with. */
export type PackCheck = { ok: true } | { ok: false; problem: string };

/**
 * The content-addressed source store (src/core/sourceManifest.ts): packs the CLI uploads, the
 * environments' indexes, and each build's pending request and plan, in one container.
 */
export interface ContentStore {
  /** The blob parsed as JSON with its ETag; undefined when it does not exist. */
  readJson(blobName: string): Promise<JsonBlob | undefined>;
  /** Writes `value` as JSON under `condition`; returns the new ETag. */
  writeJson(blobName: string, value: unknown, condition: WriteCondition): Promise<string>;
  /** A create/write SAS for exactly this blob (a pack), ≤ 30 minutes. */
  createUploadUrl(blobName: string, minutes: number): Promise<SignedUrl>;
  /** A read-only SAS for exactly this blob (a pack or a plan, for the builder), ≤ `maxReadMinutes`. */
  createReadUrl(blobName: string, minutes: number): Promise<SignedUrl>;
  /** The longest read grant the store signs: as long as a build may run. */
  readonly maxReadMinutes: number;
  stat(blobName: string): Promise<BlobStat>;
  /**
   * Streams the pack through gunzip and checks that its output is exactly these contents in order
   * (sha256 and size of each, nothing after the last); never holds the pack or a content whole.
   */
  verifyPack(blobName: string, contents: readonly { sha256: string; size: number }[]): Promise<PackCheck>;
}
