/**
 * The one factory that wires the product: settings, a credential and transport options in; every
 * gateway and store, and the build activities over them, out. The function app in Azure
 * (src/functions/deps.ts), the local simulation (sim/) and the tests all call it, each with its own
 * endpoints (in the `Config`) and, locally, the emulators' certificate and a credential of their own.
 *
 * It sits at the top of src/ rather than in src/functions/ because it joins config/, azure/ and
 * activities/ and is no trigger; src/functions/deps.ts only decides when it runs (once, on first use)
 * and imports this module with `import()`, so the SDK modules it pulls in never load at cold start.
 */
import type { StoragePipelineOptions } from "@azure/storage-blob";
import { makeActivities, type ActivityDeps, type ActivityFunction } from "./activities/index.js";
import { createBlobStores } from "./azure/blobs.js";
import type { ArmGatewayOptions } from "./azure/clientOptions.js";
import { createComputeGateway } from "./azure/compute.js";
import { createContentStore } from "./azure/contentStore.js";
import { createContainerAppsGateway, createRevisionHistoryGateway } from "./azure/containerApps.js";
import { createRegistryImportGateway } from "./azure/registryImport.js";
import { createCredential, type TokenCredential } from "./azure/credentials.js";
import { createRegistryGateway, type RegistryGatewayOptions } from "./azure/registry.js";
import { TableLeaseStore } from "./azure/tables.js";
import { TableHistoryStore, type HistoryStore } from "./azure/history.js";
import type { ArmEndpointConfig, Config } from "./config/index.js";
import { ConfigError } from "./core/errors.js";
import type { LeaseStore } from "./core/lease.js";
import type {
  ComputeGateway,
  ContainerAppsGateway,
  ContentStore,
  LogStore,
  RegistryGateway,
  RegistryImportGateway,
  RevisionHistoryGateway,
  SourceStore,
} from "./core/ports.js";

/** What the function app's handlers run on. */
export interface Deps {
  config: Config;
  sources: SourceStore;
  logs: LogStore;
  /** Content-addressed source: packs, indexes, pending requests and plans. */
  contents: ContentStore;
  compute: ComputeGateway;
  /** Container Apps (deploy); only the build activities need it, so tests of the API may leave it out. */
  apps?: ContainerAppsGateway;
  /** The environments' container registries (the deploy's digest check); as for `apps`. */
  registry?: RegistryGateway;
  /** ACR's import between the environments' registries (promotions); as for `apps`. */
  registryImport?: RegistryImportGateway;
  /** The apps' revisions (rollback's choice); as for `apps`. */
  revisions?: RevisionHistoryGateway;
  /** Builder records (lease, queue, activity) in Table Storage. */
  leases: LeaseStore;
  /** Build history and builder power transitions (FASTBUILD_HISTORY_TABLE). */
  history: HistoryStore;
  /** The clock every handler reads (tests pass their own). */
  now(): Date;
}

export interface WiringOptions {
  /** Endpoints (ARM, storage) and every other setting; tests and the sim point it at emulators. */
  config: Config;
  /** Default: the app's managed identity or developer login (`createCredential` with the config's client id). */
  credential?: TokenCredential;
  /**
   * Extra CA (PEM; may hold several certificates) that the ARM and Table clients trust: the local
   * emulators' self-signed certificates. Unset in Azure. (The blob SDK's pipeline options take no
   * TLS settings; Azurite's blob endpoint is reached over plain http, or with NODE_EXTRA_CA_CERTS.)
   */
  tlsCa?: string;
  /** ARM pipeline retries and long-running-operation polling (SDK defaults when unset). */
  arm?: Pick<ArmGatewayOptions, "retry" | "pollIntervalMs">;
  /** Registry data-plane endpoints and retries (local cloud: its login server; unset in Azure). */
  registryOptions?: Pick<RegistryGatewayOptions, "endpoints" | "maxRetries">;
  /** Blob pipeline options, e.g. `{ retryOptions: { maxTries: 1 } }` where retries are not the subject. */
  blobPipeline?: StoragePipelineOptions;
  /** Wall clock of the handlers and the lease activities (default: the system clock). */
  now?: () => Date;
}

/** Every gateway and store, over one credential and one set of transport options. */
export function createDeps(options: WiringOptions): Deps & {
  apps: ContainerAppsGateway;
  registry: RegistryGateway;
  registryImport: RegistryImportGateway;
  revisions: RevisionHistoryGateway;
} {
  const { config } = options;
  const credential =
    options.credential ??
    createCredential({ managedIdentityClientId: config.credentials.managedIdentityClientId });
  const blobs = createBlobStores(
    config.storage,
    credential,
    options.blobPipeline ? { pipeline: options.blobPipeline } : {},
  );
  // Two Resource Managers: Azure Stack Hub (compute) has no Container Apps, which stay in public Azure.
  const arm = (endpoint: ArmEndpointConfig): ArmGatewayOptions => ({
    endpoint: endpoint.endpoint,
    ...(endpoint.audience ? { audience: endpoint.audience } : {}),
    credential,
    ...(options.tlsCa ? { tlsCa: options.tlsCa } : {}),
    ...options.arm,
  });
  return {
    config,
    sources: blobs.sources,
    logs: blobs.logs,
    contents: createContentStore(blobs.account, config.storage.contentContainer),
    compute: createComputeGateway({ ...arm(config.arm.compute), profile: config.arm.computeProfile }),
    apps: createContainerAppsGateway(arm(config.arm.containerApps)),
    // ACR is a public-Azure resource, like Container Apps: the same Resource Manager.
    registryImport: createRegistryImportGateway(arm(config.arm.containerApps)),
    revisions: createRevisionHistoryGateway(arm(config.arm.containerApps)),
    registry: createRegistryGateway({
      credential,
      ...(options.tlsCa ? { tlsCa: options.tlsCa } : {}),
      ...options.registryOptions,
    }),
    leases: new TableLeaseStore({
      tableName: config.storage.activityTable,
      connectionString: config.storage.connectionString,
      endpoint: config.storage.tableEndpoint,
      credential,
      ...(options.tlsCa ? { clientOptions: { tlsOptions: { ca: options.tlsCa } } } : {}),
    }),
    history: new TableHistoryStore({
      tableName: config.history.table,
      connectionString: config.storage.connectionString,
      endpoint: config.storage.tableEndpoint,
      credential,
      ...(options.tlsCa ? { clientOptions: { tlsOptions: { ca: options.tlsCa } } } : {}),
    }),
    now: options.now ?? (() => new Date()),
  };
}

/** Knobs of the activities that are not settings (tests shorten waits). */
export type ActivityOptions = Pick<ActivityDeps, "vmReadyTimeoutMs" | "buildScriptPath">;

/** The build activities (name → handler, what orchestration.ts registers) over these dependencies. */
export function createActivities(
  deps: Deps,
  options: ActivityOptions = {},
): ReadonlyMap<string, ActivityFunction> {
  if (!deps.apps || !deps.registry) {
    throw new ConfigError(["the Container Apps or registry gateway is missing from the app's dependencies"]);
  }
  return makeActivities({ ...deps, apps: deps.apps, registry: deps.registry, ...options });
}
