/**
 * The contract between the build orchestrator and its activities: registered names and the
 * JSON shapes that cross the durable host. Both sides import this; neither imports the other.
 */
import type { BuildResult } from "./buildResult.js";
import type { BuildActivityRecord } from "./lease.js";
import type {
  BuildCommandHandle,
  ContainerAppRef,
  ContainerAppStatus,
  ExecutionState,
  RevisionStatus,
  VmRef,
  VmStatus,
} from "./ports.js";

/** The build orchestrator's registered name. */
export const BUILD_ORCHESTRATOR = "fb_BuildOrchestrator";

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
  deployImage: "fb_DeployImage",
  getRevision: "fb_GetRevision",
} as const;

/** Everything the orchestrator needs from configuration, fixed in history at the start of a build. */
export interface ResolvedEnvironment {
  vm: VmRef;
  builderKey: string;
  app: ContainerAppRef;
  containerName: string;
  registry: string;
  imageRepository: string;
  /** Cargo binary the builder packages. */
  binaryName: string;
  limits: {
    sourceTimeoutMs: number;
    buildTimeoutMs: number;
    deployTimeoutMs: number;
    leaseMs: number;
    /** How long the builder may take to start and report its agent ready. */
    vmReadyTimeoutMs: number;
  };
}

export type AcquireLeaseResult =
  | { acquired: true; generation: number; expiresAt: string }
  | { acquired: false; position: number; holder: string | undefined };

export interface LeaseRef {
  builderKey: string;
  buildId: string;
  generation: number;
}

export interface StartBuildInput {
  buildId: string;
  environment: ResolvedEnvironment;
  sourceDigest: string;
  commit?: string;
  baseKey: string;
  rebuildBase: boolean;
  callbackToken: string;
  timeoutSeconds: number;
}

export interface BuildProgress {
  executionState: ExecutionState;
  exitCode: number | undefined;
  /** The script's result line, once it printed one. */
  result: BuildResult | undefined;
  /** Last lines of output (secrets redacted), for the status and failures. */
  logTail: string[];
  message: string | undefined;
}

/** The record activity's input is the row the lease store keeps per build. */
export type RecordBuildInput = BuildActivityRecord;

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

export type { BuildCommandHandle, ContainerAppStatus, RevisionStatus, VmStatus };
