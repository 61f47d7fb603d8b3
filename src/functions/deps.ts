/**
 * The one composition root of the function app: configuration, gateways and stores, built once,
 * lazily, on the first invocation that needs them. Heavy SDK modules are imported here with
 * `import()`, never at the top of a trigger file, so loading the app (cold start) stays small.
 *
 * Tests and the local host replace the whole set with {@link setDeps}: real gateways pointed at
 * emulators (Azurite, the ARM emulator), not stubs.
 */
import { loadConfig, type Config } from "../config/index.js";
import type { LeaseStore } from "../core/lease.js";
import type { ComputeGateway, ContainerAppsGateway, LogStore, SourceStore } from "../core/ports.js";

export interface Deps {
  config: Config;
  sources: SourceStore;
  logs: LogStore;
  compute: ComputeGateway;
  /** Container Apps (deploy); only the build activities need it, so tests of the API may leave it out. */
  apps?: ContainerAppsGateway;
  /** Builder records (lease, queue, activity) in Table Storage. */
  leases: LeaseStore;
  /** The clock every handler reads (tests pass their own). */
  now(): Date;
}

type DepsSource = Deps | (() => Deps | Promise<Deps>);

let override: DepsSource | undefined;
let cached: Promise<Deps> | undefined;

/** Uses these dependencies from now on (tests, local host); `undefined` goes back to the default. */
export function setDeps(deps: DepsSource | undefined): void {
  override = deps;
  cached = undefined;
}

/** The dependencies, built on first use. A failed build is not cached: the next call tries again. */
export function getDeps(): Promise<Deps> {
  if (!cached) {
    const source = override ?? createDefaultDeps;
    const pending = Promise.resolve(typeof source === "function" ? source() : source);
    pending.catch(() => {
      if (cached === pending) cached = undefined;
    });
    cached = pending;
  }
  return cached;
}

/** Production wiring from the app settings (managed identity in Azure, connection string for Azurite). */
export async function createDefaultDeps(): Promise<Deps> {
  const config = loadConfig();
  const [
    { createCredential },
    { createBlobStores },
    { createComputeGateway },
    { createContainerAppsGateway },
    { TableLeaseStore },
  ] = await Promise.all([
    import("../azure/credentials.js"),
    import("../azure/blobs.js"),
    import("../azure/compute.js"),
    import("../azure/containerApps.js"),
    import("../azure/tables.js"),
  ]);
  const credential = createCredential({
    managedIdentityClientId: config.credentials.managedIdentityClientId,
  });
  const blobs = createBlobStores(config.storage, credential);
  const arm = { endpoint: config.arm.endpoint, credential, profile: config.arm.computeProfile };
  return {
    config,
    sources: blobs.sources,
    logs: blobs.logs,
    compute: createComputeGateway(arm),
    apps: createContainerAppsGateway(arm),
    leases: new TableLeaseStore({
      tableName: config.storage.activityTable,
      connectionString: config.storage.connectionString,
      endpoint: config.storage.tableEndpoint,
      credential,
    }),
    now: () => new Date(),
  };
}
