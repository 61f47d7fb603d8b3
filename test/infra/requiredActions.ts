/**
 * Every Azure call the deployed identities make, as the RBAC operation Azure checks, the resource
 * it is checked on, and the code that makes it. `test/infra/permissions.test.ts` checks each one
 * against the role assignments in the compiled template and the built-in role definitions.
 *
 * Operation names: https://learn.microsoft.com/azure/role-based-access-control/permissions/compute,
 * …/permissions/storage, …/permissions/containers, …/permissions/monitor; the storage data-plane
 * mapping: https://learn.microsoft.com/rest/api/storageservices/authorize-with-azure-active-directory
 * ("Permissions for calling data operations").
 *
 * Not listed because no identity is involved: the builder downloads the source archive through a
 * SAS URL the function app signs (user-delegation SAS, src/activities/index.ts startBuild), and a
 * manifest build's plan and packs the same way; the CLI uploads through a SAS (src/azure/storageUpload.ts).
 */
import type { Plane } from "./rbac.js";

/** Whose system-assigned identity makes the call: the resource type that carries it. */
export const IDENTITIES = {
  functionApp: "Microsoft.Web/sites",
  builder: "Microsoft.Compute/virtualMachines",
  containerApp: "Microsoft.App/containerApps",
} as const;

export type Identity = keyof typeof IDENTITIES;

export interface Requirement {
  identity: Identity;
  /** The resource type the call acts on; the template must deploy exactly one (of that name). */
  on: string;
  /** The resource's name, where the template deploys several of its type. */
  named?: string;
  plane: Plane;
  operation: string;
  /** The code that makes the call. */
  by: string;
}

const VM = "Microsoft.Compute/virtualMachines";
const APP = "Microsoft.App/containerApps";
const STORAGE = "Microsoft.Storage/storageAccounts";
const REGISTRY = "Microsoft.ContainerRegistry/registries";
const INSIGHTS = "Microsoft.Insights/components";
const BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers";
const QUEUES = "Microsoft.Storage/storageAccounts/queueServices/queues";
const TABLES = "Microsoft.Storage/storageAccounts/tableServices/tables";

const by =
  (identity: Identity) =>
  (on: string, plane: Plane, operation: string, code: string): Requirement => ({
    identity,
    on,
    plane,
    operation,
    by: code,
  });
const fn = by("functionApp");
const builder = by("builder");
const containerApp = by("containerApp");

export const REQUIRED: readonly Requirement[] = [
  // ---- function app → the builder VM (src/azure/compute.ts, called by src/activities/index.ts)
  fn(VM, "action", `${VM}/read`, "compute.ts locationOf: virtualMachines.get (location for the run command)"),
  fn(VM, "action", `${VM}/instanceView/read`, "compute.ts getVmStatus: virtualMachines.instanceView"),
  fn(VM, "action", `${VM}/start/action`, "compute.ts start: virtualMachines.start (activity startVm)"),
  fn(
    VM,
    "action",
    `${VM}/deallocate/action`,
    "compute.ts deallocate: virtualMachines.deallocate (stopBuilder)",
  ),
  fn(
    VM,
    "action",
    `${VM}/runCommands/write`,
    "compute.ts startBuildCommand: virtualMachineRunCommands.createOrUpdate",
  ),
  fn(
    VM,
    "action",
    `${VM}/runCommands/read`,
    "compute.ts readBuildCommand: virtualMachineRunCommands.getByVirtualMachine",
  ),
  fn(
    VM,
    "action",
    `${VM}/runCommands/delete`,
    "compute.ts cancelBuildCommand: virtualMachineRunCommands.delete",
  ),
  fn(
    VM,
    "action",
    `${VM}/runCommand/action`,
    "compute.ts startBuildCommand (hybrid profile): virtualMachines.runCommand",
  ),

  // ---- function app → the Container App (src/azure/containerApps.ts)
  fn(APP, "action", `${APP}/read`, "containerApps.ts getApp / updateImage: containerApps.get"),
  fn(APP, "action", `${APP}/write`, "containerApps.ts updateImage: containerApps.update (PATCH)"),
  fn(
    APP,
    "action",
    `${APP}/revisions/read`,
    "containerApps.ts getRevision: containerAppsRevisions.getRevision",
  ),

  // ---- function app → blobs (src/azure/blobs.ts; the Functions host; Flex deployment package)
  fn(
    STORAGE,
    "action",
    `${BLOBS}/write`,
    "blobs.ts BlobAccount.container: createIfNotExists (Create Container)",
  ),
  fn(
    STORAGE,
    "action",
    "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
    "blobs.ts userDelegationKey: getUserDelegationKey (signs every SAS)",
  ),
  fn(
    STORAGE,
    "dataAction",
    `${BLOBS}/blobs/read`,
    "blobs.ts stat / sha256 / BlobLogStore.read; contentStore.ts readJson / stat / verifyPack; Flex reads its package",
  ),
  fn(
    STORAGE,
    "dataAction",
    `${BLOBS}/blobs/write`,
    "blobs.ts createAppendLog: appendBlob createIfNotExists; contentStore.ts writeJson (index, pending, plan)",
  ),
  fn(STORAGE, "dataAction", `${BLOBS}/blobs/add/action`, "blobs.ts BlobLogStore.append: appendBlock"),
  fn(
    STORAGE,
    "dataAction",
    `${BLOBS}/blobs/delete`,
    "Durable Task (Azure Storage) task hub leases and large messages",
  ),

  // ---- function app → queues: Durable's task hub (host.json durableTask.hubName = TASK_HUB_NAME)
  fn(STORAGE, "action", `${QUEUES}/write`, "Durable Task: creates the control and work-item queues"),
  fn(STORAGE, "action", `${QUEUES}/read`, "Durable Task: queue metadata (scale, partition count)"),
  fn(
    STORAGE,
    "dataAction",
    `${QUEUES}/messages/write`,
    "Durable Task: schedules activities and orchestrations",
  ),
  fn(STORAGE, "dataAction", `${QUEUES}/messages/read`, "Durable Task: peeks and dequeues"),
  fn(STORAGE, "dataAction", `${QUEUES}/messages/process/action`, "Durable Task: dequeue-and-delete"),
  fn(STORAGE, "dataAction", `${QUEUES}/messages/delete`, "Durable Task: completes a message"),

  // ---- function app → tables (src/azure/tables.ts; Durable's History and Instances tables)
  fn(
    STORAGE,
    "action",
    `${TABLES}/write`,
    "tables.ts ensureTable: createTable; Durable Task creates its tables",
  ),
  fn(STORAGE, "dataAction", `${TABLES}/entities/read`, "tables.ts read / list: getEntity, listEntities"),
  fn(STORAGE, "dataAction", `${TABLES}/entities/add/action`, "tables.ts write (no ETag): createEntity"),
  fn(
    STORAGE,
    "dataAction",
    `${TABLES}/entities/update/action`,
    "tables.ts write (If-Match): updateEntity Replace",
  ),
  fn(STORAGE, "dataAction", `${TABLES}/entities/write`, "tables.ts recordBuild: upsertEntity"),
  fn(STORAGE, "dataAction", `${TABLES}/entities/delete`, "Durable Task: purges instance history"),

  // ---- function app → Application Insights with local auth disabled (infra/app/monitoring.bicep)
  fn(
    INSIGHTS,
    "dataAction",
    "Microsoft.Insights/Telemetry/Write",
    "Functions host telemetry, APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD (infra/app/functions.bicep)",
  ),

  // ---- function app → the registry (src/azure/registry.ts, activity readImageDigest)
  fn(
    REGISTRY,
    "action",
    `${REGISTRY}/pull/read`,
    "registry.ts manifestDigest: ContainerRegistryContentClient.getManifest (the deploy's digest check; version 5: fb_LookUpImages before the lease)",
  ),

  // ---- builder VM → the registry (dockerfiles/build.sh)
  builder(
    REGISTRY,
    "action",
    `${REGISTRY}/pull/read`,
    "build.sh 2. skip if unchanged (manifest HEAD) and 5. base image (FROM the cached base)",
  ),
  builder(
    REGISTRY,
    "action",
    `${REGISTRY}/push/write`,
    "build.sh 7. push (after 1. login: az acr login --expose-token with the VM's identity)",
  ),

  // ---- builder VM → the build logs: the managed Run Command handler, with the VM's identity
  // (compute.ts startBuildCommand outputBlobManagedIdentity; blobs.ts runCommandLog)
  {
    ...builder(
      BLOBS,
      "dataAction",
      `${BLOBS}/blobs/write`,
      "Run Command handler: creates or replaces the log blobs",
    ),
    named: "build-logs",
  },
  {
    ...builder(
      BLOBS,
      "dataAction",
      `${BLOBS}/blobs/add/action`,
      "Run Command handler: appends the script's output",
    ),
    named: "build-logs",
  },

  // ---- Container App → the registry (infra/app/containerapp.bicep registries: identity 'system')
  containerApp(
    REGISTRY,
    "action",
    `${REGISTRY}/pull/read`,
    "Container Apps pulls each revision's image with the app's identity",
  ),
];
