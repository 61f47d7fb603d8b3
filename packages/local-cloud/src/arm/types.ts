/**
 * Public types of the local ARM emulator: what tests and the local simulation configure and read.
 */
/** A virtual machine, as its ARM id names it. */
export interface VmRef {
  subscriptionId: string;
  resourceGroup: string;
  vmName: string;
}

/** A container app, as its ARM id names it. */
export interface ContainerAppRef {
  subscriptionId: string;
  resourceGroup: string;
  appName: string;
}

/** A container registry, as its ARM id names it. */
export interface RegistryRef {
  subscriptionId: string;
  resourceGroup: string;
  registryName: string;
}

/** Where an emulated registry's images live (a local registry, packages/local-cloud/src/registry.ts). */
export interface RegistryInit {
  /** Its login server (`properties.loginServer`), e.g. the local registry's `host`. */
  loginServer: string;
  /** The store's Docker Registry v2 API, `http://127.0.0.1:PORT` (the local registry's `url`). */
  storeUrl: string;
  location?: string;
}

/** The `PowerState/<x>` code of a VM's instance view. */
export type PowerState =
  "starting" | "running" | "stopping" | "stopped" | "deallocating" | "deallocated" | "unknown";

/** One request as the emulator received it (after TLS), for assertions. */
export interface RecordedRequest {
  method: string;
  /** URL path, percent-decoded, without the query string. */
  path: string;
  /** Raw query string without the leading `?` (`$expand` may arrive as `%24expand`). */
  query: string;
  /** The `api-version` query value, when present. */
  apiVersion: string | undefined;
  /** Lower-case header names. */
  headers: Record<string, string>;
  /** Body text ('' when empty). */
  body: string;
  /** When the emulator received it (epoch ms): for timelines (the orchestration bench). */
  at: number;
}

/** What a run command does on the "VM". Resolve with the exit code; honour `signal` (cancel/timeout). */
export type RunCommandExecutor = (run: RunCommandRun) => Promise<{ exitCode: number }>;

export interface RunCommandRun {
  vm: VmRef;
  /** Managed run command name, or `runCommand` for the action Run Command. */
  name: string;
  /** Script text (`source.script`, or the action's `script` lines joined with newlines). */
  script: string;
  parameters: Record<string, string>;
  protectedParameters: Record<string, string>;
  /** 0 = no limit of our own. */
  timeoutInSeconds: number;
  /**
   * The shell Azure would run the script with: managed Run Commands use `/bin/bash`
   * (run-command-handler-linux `internal/exec/exec.go`), the action Run Command `/bin/sh`
   * (run-command-extension-linux `main/exec.go`), which is dash on Debian/Ubuntu.
   */
  shell: "/bin/bash" | "/bin/sh";
  signal: AbortSignal;
  stdout(text: string): void;
  stderr(text: string): void;
}

export interface ArmEmulatorOptions {
  /** Time a VM spends in `starting` (default 30 ms). */
  vmStartMs?: number;
  /** Time a VM spends in `deallocating` (default 30 ms). */
  vmDeallocateMs?: number;
  /**
   * Time a hibernated VM spends in `starting` before it runs again (default 15 ms): a resume reads
   * the memory back from the OS disk instead of booting, so it is shorter than `vmStartMs`.
   */
  vmResumeMs?: number;
  /** Time a VM spends in `deallocating` while it hibernates (default: `vmDeallocateMs`). */
  vmHibernateMs?: number;
  /** Time a VM spends in `stopping` (default 20 ms). */
  vmPowerOffMs?: number;
  /** Container-app provisioning after a PATCH; run-command `Pending` time (default 20 ms). */
  provisioningMs?: number;
  /** Time until a new revision is Provisioned/Healthy, or Failed (default 60 ms). */
  revisionReadyMs?: number;
  /** What run commands do (default: `scriptedExecutor()`: exit 0, no output). */
  executor?: RunCommandExecutor;
  /** New revisions whose containers use a matching image fail (Failed / Unhealthy). */
  failRevisionsWithImage?: RegExp;
  /**
   * The access token the identity endpoint hands out, whatever resource is asked for (default: an
   * unsigned JWT minted per request whose `aud` is the requested resource, as Azure's endpoint does).
   */
  accessToken?: string;
  /** Object id of the identity behind the identity endpoint (default `LOCAL_OBJECT_ID`). */
  identityObjectId?: string;
  /**
   * Token audiences this ARM endpoint accepts (default Azure public cloud's four:
   * `https://management.azure.com[/]`, `https://management.core.windows.net[/]`). An Azure Stack Hub
   * stamp has its own (`https://management.<domain>/<guid>`); `/metadata/endpoints` reports them.
   */
  audiences?: string[];
  /**
   * How often a managed Run Command's output reaches its blobs and instance view while it runs
   * (default 15 000 ms, the handler's `updateStatusInSeconds`; tests set it short).
   */
  runCommandFlushMs?: number;
  /** PEM the emulator trusts when it writes run-command output to an HTTPS blob endpoint (Azurite). */
  storageCa?: string;
  /** Who may do what (off when absent: every authenticated caller may do everything). */
  authorization?: AuthorizationModel;
}

/** One role assignment, flattened to the permissions of its role definition. */
export interface RoleGrant {
  /** ARM scope: `/subscriptions/…`, `…/resourceGroups/…` or a resource id. Applies to everything below it. */
  scope: string;
  /** Allowed actions; `*` wildcards as in role definitions (`Microsoft.Compute/*`, `*\/read`). */
  actions?: string[];
  notActions?: string[];
  /** Data-plane actions: kept for completeness; no emulated ARM operation is a data action. */
  dataActions?: string[];
  notDataActions?: string[];
}

/** The caller identities' role assignments, by principal object id (the token's `oid`). */
export interface AuthorizationModel {
  roleAssignments: Record<string, RoleGrant[]>;
}

/** A VM's managed identities (what IMDS hands tokens for inside it). */
export interface VmIdentity {
  /** The system-assigned identity's principal (object) id, when the VM has one. */
  systemAssigned?: { principalId: string };
  userAssigned?: { clientId: string; principalId: string }[];
  /** Default `LOCAL_TENANT_ID`. */
  tenantId?: string;
}

/**
 * A canned HTTP answer, a dropped connection, a delay before the normal answer, one of the kinds
 * random faults use, or a lost reply: the request is carried out, then the client gets `replyLost`
 * instead of the real answer.
 */
export type FaultResponse =
  | { status: number; headers?: Record<string, string>; body?: unknown }
  | { reset: true }
  | { delayMs: number }
  | { kind: HttpFaultKind; retryAfterSeconds?: number }
  | { replyLost: LostReply };

/**
 * How ARM fails a request, as a client sees it: `throttled` 429 with `Retry-After`,
 * `internalError` 500, `unavailable` 503, `connectionReset` (the socket is destroyed before an
 * answer), `replyLost` (the request is carried out, then its answer is lost: see {@link LostReply}).
 */
export type HttpFaultKind = "throttled" | "internalError" | "unavailable" | "connectionReset" | "replyLost";

/** What replaces a carried-out request's answer: a reset connection, a 500, or ARM's 504 GatewayTimeout. */
export type LostReply = "reset" | "internalError" | "gatewayTimeout";

/** Faults at random, reproducible from a seed: each matching request draws once. */
export interface RandomFaults {
  /** Per kind, the share (0-1) of matching requests that get it; the shares add up to at most 1. */
  rates: Partial<Record<HttpFaultKind, number>>;
  /** The same seed makes the same decisions over the same sequence of matching requests. */
  seed: number;
  /** Only these methods (default: all). */
  methods?: string[];
  /** Only paths (no query) this matches (default: all). */
  path?: RegExp;
  /** `Retry-After` of a `throttled` reply, in seconds (default 1). */
  retryAfterSeconds?: number;
  /** How a `replyLost` fault reaches the client (default `reset`). */
  lostReply?: LostReply;
  /** Long-running VM operations that end `Failed` at random (e.g. half the starts `AllocationFailed`). */
  operations?: (Omit<OperationFault, "times" | "vmName"> & { rate: number })[];
}

/** Requests received and the faults they got, by kind (injected and random alike). */
export interface FaultStats {
  requests: number;
  /** By {@link HttpFaultKind}; an injected canned answer counts as `status <n>`, a delay not at all. */
  httpFaults: Record<string, number>;
  /** Long-running operations failed on purpose, by error code. */
  operationFaults: Record<string, number>;
}

export interface HttpFault {
  /** Matches any method when absent. */
  method?: string;
  /** Tested against the request path (no query). Matches any path when absent. */
  path?: RegExp;
  /** How many matching requests it applies to (default 1). */
  times?: number;
  response: FaultResponse;
}

/** Makes a long-running VM operation end `Failed` with this Azure error (e.g. `AllocationFailed`). */
export interface OperationFault {
  /** `hibernate`: a deallocate with `hibernate=true` (e.g. `VMHibernateNotSupported` right after boot). */
  operation: "start" | "deallocate" | "powerOff" | "hibernate";
  /** Only this VM (default: any). */
  vmName?: string;
  times?: number;
  error: { code: string; message: string };
}

export type Fault = HttpFault | OperationFault;

export interface VmInit {
  powerState?: PowerState;
  location?: string;
  identity?: VmIdentity;
  /** `additionalCapabilities.hibernationEnabled` (default false): without it Azure refuses to hibernate. */
  hibernationEnabled?: boolean;
  /** Starts hibernated (`PowerState/deallocated` + `HibernationState/Hibernated`); needs `hibernationEnabled`. */
  hibernated?: boolean;
  /** `properties.hardwareProfile.vmSize` of Virtual Machines - Get (default `Standard_D4s_v5`). */
  vmSize?: string;
}

export interface VmView {
  powerState: PowerState;
  location: string;
  agentReady: boolean;
  /** Deallocated by a hibernate: the next start resumes it. */
  hibernated: boolean;
}

export interface ContainerAppInit {
  containers: { name: string; image: string }[];
  location?: string;
  /** Suffix of the initial revision (default random). */
  revisionSuffix?: string;
  /** Default `Single`. */
  activeRevisionsMode?: "Single" | "Multiple";
  /** `ingress.traffic` (default `[{ weight: 100, latestRevision: true }]`). */
  traffic?: TrafficWeight[];
  /** `ingress.targetPort`, the port traffic goes to in the container (default 8080). */
  targetPort?: number;
}

export interface TrafficWeight {
  weight: number;
  latestRevision?: boolean;
  revisionName?: string;
  label?: string;
}

export interface RevisionView {
  name: string;
  images: Record<string, string>;
  provisioningState: string;
  healthState: string;
  runningState: string;
  active: boolean;
  trafficWeight: number;
}

export interface ContainerAppView {
  provisioningState: string;
  latestRevisionName: string | undefined;
  latestReadyRevisionName: string | undefined;
  images: Record<string, string>;
  revisions: RevisionView[];
}

export interface ArmEmulator {
  /** `https://127.0.0.1:PORT` */
  endpoint: string;
  /** PEM of the self-signed certificate, for `tlsOptions.ca` / `NODE_EXTRA_CA_CERTS`. */
  ca: string;
  /** The same PEM in a temporary file. */
  caFile: string;
  /** Managed-identity token endpoint, App Service style (`IDENTITY_ENDPOINT`). */
  identityEndpoint: string;
  /** `IDENTITY_HEADER` value. */
  identityHeader: string;
  /** Every ARM request received, in order (identity-endpoint calls are not included). */
  requests: RecordedRequest[];
  addVm(ref: VmRef, init?: VmInit): void;
  getVm(ref: VmRef): VmView | undefined;
  addContainerApp(ref: ContainerAppRef, init: ContainerAppInit): void;
  getContainerApp(ref: ContainerAppRef): ContainerAppView | undefined;
  /** A Microsoft.ContainerRegistry registry over a local registry's store (the import's source or target). */
  addRegistry(ref: RegistryRef, init: RegistryInit): void;
  setRunCommandExecutor(fn: RunCommandExecutor): void;
  inject(fault: Fault): void;
  /** Starts random faults (replacing earlier ones), or stops them (`undefined`). Throws on bad rates. */
  setRandomFaults(faults: RandomFaults | undefined): void;
  /** Drops all pending faults, random ones included. */
  clearFaults(): void;
  /** Requests and faults so far. */
  faultStats(): FaultStats;
  stop(): Promise<void>;
}
