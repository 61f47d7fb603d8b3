/** The real activities over real gateways: the ARM emulator and Azurite, as tests wire them. */
import { makeActivities, type ActivityDeps, type ActivityFunction } from "../../src/activities/index.js";
import { createBlobStores } from "../../src/azure/blobs.js";
import { createComputeGateway } from "../../src/azure/compute.js";
import { createContainerAppsGateway } from "../../src/azure/containerApps.js";
import type { ComputeProfile, Config } from "../../src/config/index.js";
import type { LeaseStore } from "../../src/core/lease.js";
import type { ArmEmulator } from "@fast-build/local-cloud/arm";
import type { Azurite } from "@fast-build/local-cloud/azurite";
import { gatewayOptions } from "../azure/armHelpers.js";

/** Build settings the tests start from (a test overrides what it is about). */
export const TEST_BUILD_SETTINGS: Config["builds"] = {
  maxUploadBytes: 1024 * 1024,
  uploadSasMinutes: 15,
  sourceTimeoutMinutes: 20,
  buildTimeoutMinutes: 60,
  deployTimeoutMinutes: 15,
  leaseMinutes: 10,
  idleShutdownMinutes: 30,
};

export interface EmulatedActivities {
  azurite: Azurite;
  arm: ArmEmulator;
  config: ActivityDeps["config"];
  leases: LeaseStore;
  /** Compute API profile of the gateway (default `latest`). */
  profile?: ComputeProfile;
  vmReadyTimeoutMs?: number;
  buildScriptPath?: string;
}

/** `makeActivities` over gateways pointed at the emulators, as the function app builds it. */
export function emulatedActivities(options: EmulatedActivities): ReadonlyMap<string, ActivityFunction> {
  const blobs = createBlobStores({
    connectionString: options.azurite.connectionString,
    blobEndpoint: undefined,
    sourceContainer: "build-sources",
    logContainer: "build-logs",
  });
  return makeActivities({
    config: options.config,
    compute: createComputeGateway(
      gatewayOptions(options.arm, options.profile ? { profile: options.profile } : {}),
    ),
    apps: createContainerAppsGateway(gatewayOptions(options.arm)),
    sources: blobs.sources,
    logs: blobs.logs,
    leases: options.leases,
    ...(options.vmReadyTimeoutMs !== undefined ? { vmReadyTimeoutMs: options.vmReadyTimeoutMs } : {}),
    ...(options.buildScriptPath !== undefined ? { buildScriptPath: options.buildScriptPath } : {}),
  });
}
