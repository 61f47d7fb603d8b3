/**
 * Microsoft.App container apps as the emulator serves them: GET, PATCH (merge-patch, 202 +
 * `Location` to `containerappOperationResults`, final 200 with the full app), revisions that move
 * Provisioning → Provisioned / Healthy (or Failed / Unhealthy), and the bare-bodied 409
 * `ContainerAppOperationInProgress` while an operation runs (recording, observation 10).
 * A PATCH that makes a new revision ends with it: its operation fails when the revision fails to
 * provision. Single revision mode moves all traffic to the new revision once it is ready; Multiple
 * mode leaves traffic as `ingress.traffic` says (https://learn.microsoft.com/azure/container-apps/revisions).
 */
import { randomBytes } from "node:crypto";
import type {
  ContainerAppInit,
  ContainerAppRef,
  ContainerAppView,
  RevisionView,
  TrafficWeight,
} from "./types.js";
import {
  ArmHttpError,
  armTime,
  badRequest,
  isRecord,
  newId,
  normaliseLocation,
  missingResource,
  requireMethod,
  notFound,
  type ArmRequest,
  type Reply,
  type Timers,
} from "./http.js";

export interface ContainerAppsContext {
  endpoint(): string;
  timing: { provisioningMs: number; revisionReadyMs: number };
  failRevisionsWithImage: RegExp | undefined;
  timers: Timers;
}

interface RevisionState {
  name: string;
  createdTime: string;
  template: Record<string, unknown>;
  provisioningState: "Provisioning" | "Provisioned" | "Failed";
  healthState: "None" | "Healthy" | "Unhealthy";
  runningState: "Processing" | "Running" | "Failed" | "Stopped";
  active: boolean;
  replicas: number;
  trafficWeight: number;
}

/**
 * A revision becomes ready. In Single revision mode it takes all traffic and the others go
 * inactive; in Multiple mode the others stay active and traffic follows `ingress.traffic`.
 */
function markReady(app: AppState, revision: RevisionState): void {
  revision.provisioningState = "Provisioned";
  revision.healthState = "Healthy";
  revision.runningState = "Running";
  revision.replicas = 1;
  app.latestReadyRevisionName = revision.name;
  if (revisionsMode(app) === "Multiple") {
    applyTraffic(app);
    return;
  }
  revision.trafficWeight = 100;
  for (const other of app.revisions.values()) {
    if (other !== revision) {
      other.active = false;
      other.trafficWeight = 0;
      other.replicas = 0;
    }
  }
}

function revisionsMode(app: AppState): string {
  const configuration = app.properties.configuration;
  return isRecord(configuration) && configuration.activeRevisionsMode === "Multiple" ? "Multiple" : "Single";
}

/** Multiple mode: each revision's weight is what `ingress.traffic` gives it by name or as the latest. */
function applyTraffic(app: AppState): void {
  const configuration = app.properties.configuration;
  const ingress = isRecord(configuration) ? configuration.ingress : undefined;
  const traffic = isRecord(ingress) && Array.isArray(ingress.traffic) ? ingress.traffic : [];
  for (const revision of app.revisions.values()) revision.trafficWeight = 0;
  for (const entry of traffic) {
    if (!isRecord(entry) || typeof entry.weight !== "number") continue;
    const name = entry.latestRevision === true ? app.latestReadyRevisionName : entry.revisionName;
    const target = typeof name === "string" ? app.revisions.get(name.toLowerCase()) : undefined;
    if (target) target.trafficWeight += entry.weight;
  }
}

interface AppState {
  ref: ContainerAppRef;
  location: string;
  /** `properties` of the app as last written (merge-patched). */
  properties: Record<string, unknown>;
  tags: Record<string, unknown> | undefined;
  provisioningState: "Succeeded" | "InProgress" | "Failed";
  revisions: Map<string, RevisionState>;
  latestRevisionName: string | undefined;
  latestReadyRevisionName: string | undefined;
  operationId: string | undefined;
}

interface AppOperation {
  id: string;
  app: AppState;
  location: string;
  startTime: string;
  status: "InProgress" | "Succeeded" | "Failed";
  error?: { code: string; message: string };
}

const ID = "([^/]+)";
const APP = `^/subscriptions/${ID}/resourceGroups/${ID}/providers/Microsoft\\.App/containerApps/${ID}`;
const routes = {
  app: new RegExp(`${APP}$`, "i"),
  revisions: new RegExp(`${APP}/revisions$`, "i"),
  revision: new RegExp(`${APP}/revisions/${ID}$`, "i"),
  operation: new RegExp(
    `^/subscriptions/${ID}/providers/Microsoft\\.App/locations/${ID}/containerapp(?:OperationResults|OperationStatuses)/${ID}$`,
    "i",
  ),
};

const ENV_DOMAIN = "localpebble-00000000.westus.azurecontainerapps.io";

export class ContainerAppsProvider {
  private readonly apps = new Map<string, AppState>();
  private readonly operations = new Map<string, AppOperation>();

  constructor(private readonly ctx: ContainerAppsContext) {}

  hasResourceGroup(subscriptionId: string, resourceGroup: string): boolean {
    const prefix = `${subscriptionId}/${resourceGroup}/`.toLowerCase();
    return [...this.apps.keys()].some((k) => k.startsWith(prefix));
  }

  addContainerApp(ref: ContainerAppRef, init: ContainerAppInit): void {
    const template = {
      revisionSuffix: init.revisionSuffix ?? "",
      terminationGracePeriodSeconds: null,
      containers: init.containers.map((c) => ({
        image: c.image,
        name: c.name,
        resources: { cpu: 0.5, memory: "1Gi" },
        probes: [],
      })),
      initContainers: null,
      scale: { minReplicas: null, maxReplicas: 10, rules: null },
      volumes: null,
      serviceBinds: null,
    };
    const { subscriptionId, resourceGroup } = ref;
    const envId = `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.App/managedEnvironments/env`;
    const app: AppState = {
      ref,
      location: init.location ?? "West US",
      properties: {
        managedEnvironmentId: envId,
        environmentId: envId,
        workloadProfileName: null,
        outboundIpAddresses: ["20.0.0.1"],
        customDomainVerificationId: "0000000000000000000000000000000000000000000000000000000000000000",
        configuration: {
          secrets: null,
          activeRevisionsMode: init.activeRevisionsMode ?? "Single",
          ingress: {
            fqdn: `${ref.appName}.${ENV_DOMAIN}`,
            external: true,
            // `properties.configuration.ingress.targetPort`, as Container Apps - Get returns it
            // (../shared/azure-rest-examples/containerapps/examples/ContainerApps_Get.json).
            targetPort: init.targetPort ?? 8080,
            exposedPort: 0,
            transport: "Auto",
            traffic: init.traffic ?? ([{ weight: 100, latestRevision: true }] satisfies TrafficWeight[]),
            customDomains: null,
            allowInsecure: false,
            ipSecurityRestrictions: null,
            corsPolicy: null,
            clientCertificateMode: null,
            stickySessions: null,
          },
          registries: null,
          dapr: null,
          maxInactiveRevisions: null,
          service: null,
        },
        template,
        eventStreamEndpoint: `https://${normaliseLocation(init.location ?? "westus")}.azurecontainerapps.dev/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/containerApps/${ref.appName}/eventstream`,
      },
      tags: undefined,
      provisioningState: "Succeeded",
      revisions: new Map(),
      latestRevisionName: undefined,
      latestReadyRevisionName: undefined,
      operationId: undefined,
    };
    const first = this.newRevision(app, template);
    first.trafficWeight = 100;
    markReady(app, first);
    this.apps.set(appKey(ref), app);
  }

  getContainerApp(ref: ContainerAppRef): ContainerAppView | undefined {
    const app = this.apps.get(appKey(ref));
    if (!app) return undefined;
    return {
      provisioningState: app.provisioningState,
      latestRevisionName: app.latestRevisionName,
      latestReadyRevisionName: app.latestReadyRevisionName,
      images: imagesOf(templateOf(app)),
      revisions: [...app.revisions.values()].map((r) => revisionView(r)),
    };
  }

  handle(req: ArmRequest, rgExists: (sub: string, rg: string) => boolean): Reply | undefined {
    let m: RegExpExecArray | null;
    if ((m = routes.operation.exec(req.path))) return this.operationResult(req, m[3]!);
    const appOf = (mm: RegExpExecArray): AppState => {
      const ref = { subscriptionId: mm[1]!, resourceGroup: mm[2]!, appName: mm[3]! };
      const app = this.apps.get(appKey(ref));
      if (app) return app;
      throw missingResource(
        rgExists(ref.subscriptionId, ref.resourceGroup),
        "Microsoft.App/containerApps",
        ref.appName,
        ref.resourceGroup,
      );
    };
    if ((m = routes.app.exec(req.path))) {
      const app = appOf(m);
      if (req.method === "GET") return { status: 200, body: this.appJson(app) };
      requireMethod(req, ["PATCH"]);
      return this.patch(req, app);
    }
    if ((m = routes.revisions.exec(req.path))) {
      requireMethod(req, ["GET"]);
      const app = appOf(m);
      return {
        status: 200,
        body: { value: [...app.revisions.values()].map((r) => this.revisionJson(app, r)) },
      };
    }
    if ((m = routes.revision.exec(req.path))) {
      requireMethod(req, ["GET"]);
      const app = appOf(m);
      const revision = app.revisions.get(m[4]!.toLowerCase());
      if (!revision)
        throw notFound(
          `Microsoft.App/containerApps/${app.ref.appName}/revisions`,
          m[4]!,
          app.ref.resourceGroup,
        );
      return { status: 200, body: this.revisionJson(app, revision) };
    }
    return undefined;
  }

  private patch(req: ArmRequest, app: AppState): Reply {
    if (app.operationId) {
      throw new ArmHttpError(
        409,
        "ContainerAppOperationInProgress",
        `Cannot modify a container app '${app.ref.appName}' because there is an active provisioning operation in progress. OperationId: '${app.operationId}'.`,
        true,
      );
    }
    if (!isRecord(req.body))
      throw badRequest("InvalidRequestContent", "The request content was invalid: expected a JSON object.");
    if (req.body.properties !== undefined && !isRecord(req.body.properties)) {
      throw badRequest("InvalidRequestContent", "'properties' must be an object.");
    }
    const before = JSON.stringify(stripSuffix(templateOf(app)));
    const merged = mergePatch(app.properties, req.body.properties ?? {});
    if (!isRecord(merged)) throw badRequest("InvalidRequestContent", "'properties' must be an object.");
    const template = merged.template;
    if (!isRecord(template) || !Array.isArray(template.containers) || template.containers.length === 0) {
      throw badRequest(
        "ContainerAppInvalidTemplate",
        "'properties.template.containers' must list at least one container.",
      );
    }
    for (const [index, container] of template.containers.entries()) {
      if (!isRecord(container) || typeof container.name !== "string" || typeof container.image !== "string") {
        throw badRequest(
          "ContainerAppInvalidTemplate",
          `'properties.template.containers[${index}]' needs a string 'name' and 'image'.`,
        );
      }
    }
    const suffixChanged = (template.revisionSuffix ?? "") !== (templateOf(app).revisionSuffix ?? "");
    const templateChanged = before !== JSON.stringify(stripSuffix(template)) || suffixChanged;
    if (templateChanged && typeof template.revisionSuffix === "string" && template.revisionSuffix !== "") {
      const name = `${app.ref.appName}--${template.revisionSuffix}`;
      if (!/^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$/.test(template.revisionSuffix)) {
        throw badRequest(
          "ContainerAppInvalidRevisionSuffix",
          `Revision suffix '${template.revisionSuffix}' is invalid: use lower-case letters, digits and '-'.`,
        );
      }
      if (app.revisions.has(name.toLowerCase())) {
        throw badRequest(
          "ContainerAppRevisionSuffixConflict",
          `A revision named '${name}' already exists: use a new revision suffix.`,
        );
      }
    }
    app.properties = merged;
    if (isRecord(req.body.tags)) app.tags = req.body.tags;
    const op: AppOperation = {
      id: newId(),
      app,
      location: normaliseLocation(app.location),
      startTime: armTime(),
      status: "InProgress",
    };
    this.operations.set(op.id, op);
    app.operationId = op.id;
    app.provisioningState = "InProgress";
    const end = (error?: { code: string; message: string }) => {
      op.status = error ? "Failed" : "Succeeded";
      if (error) op.error = error;
      app.operationId = undefined;
      app.provisioningState = error ? "Failed" : "Succeeded";
      if (!error && revisionsMode(app) === "Multiple") applyTraffic(app);
    };
    if (!templateChanged) {
      this.ctx.timers.after(this.ctx.timing.provisioningMs, () => end());
    } else {
      // The update lasts until its revision is provisioned, and fails with it.
      const revision = this.newRevision(app, template);
      const fails = this.ctx.failRevisionsWithImage;
      const bad = Object.values(imagesOf(template)).find((image) => fails?.test(image));
      this.ctx.timers.after(Math.max(this.ctx.timing.revisionReadyMs, this.ctx.timing.provisioningMs), () => {
        if (bad === undefined) {
          markReady(app, revision);
          end();
          return;
        }
        revision.provisioningState = "Failed";
        revision.healthState = "Unhealthy";
        revision.runningState = "Failed";
        revision.active = false;
        // Not recorded: the code and wording follow what the Container Apps service reports for a
        // revision that does not start (`ContainerAppOperationError`, "Failed to provision revision…").
        end({
          code: "ContainerAppOperationError",
          message: `Failed to provision revision for container app '${app.ref.appName}'. Error details: The revision '${revision.name}' failed to start: image '${bad}' did not become healthy.`,
        });
      });
    }
    return { status: 202, headers: { Location: this.operationUrl(op, req.apiVersion) } };
  }

  private operationUrl(op: AppOperation, apiVersion: string): string {
    return (
      `${this.ctx.endpoint()}/subscriptions/${op.app.ref.subscriptionId}/providers/Microsoft.App/locations/` +
      `${op.location}/containerappOperationResults/${op.id}?api-version=${apiVersion}`
    );
  }

  private operationResult(req: ArmRequest, id: string): Reply {
    requireMethod(req, ["GET"]);
    const op = this.operations.get(id.toLowerCase());
    if (!op) throw new ArmHttpError(404, "NotFound", `Operation '${id}' was not found.`);
    if (/containerappOperationStatuses/i.test(req.path)) {
      // The Azure-AsyncOperation form (2022 recording): always 200, the status in the body.
      const body: Record<string, unknown> = {
        id: req.path,
        name: op.id,
        status: op.status,
        startTime: op.startTime,
      };
      if (op.error) body.error = op.error;
      return { status: 200, body };
    }
    if (op.status === "InProgress")
      return { status: 202, headers: { Location: this.operationUrl(op, req.apiVersion) } };
    // The Location form: a failed operation answers its error (the SDK throws it as a RestError);
    // 400 is an assumption, no failed update was recorded.
    if (op.error) return new ArmHttpError(400, op.error.code, op.error.message).toReply();
    // Never an empty final body: the SDK uses it as the update's result.
    return { status: 200, body: this.appJson(op.app) };
  }

  private newRevision(app: AppState, template: Record<string, unknown>): RevisionState {
    const suffix =
      typeof template.revisionSuffix === "string" && template.revisionSuffix !== ""
        ? template.revisionSuffix
        : randomSuffix();
    const revision: RevisionState = {
      name: `${app.ref.appName}--${suffix}`,
      createdTime: new Date().toISOString().replace(/\.\d+Z$/, "+00:00"),
      template: structuredClone(template),
      provisioningState: "Provisioning",
      healthState: "None",
      runningState: "Processing",
      active: true,
      replicas: 0,
      trafficWeight: 0,
    };
    app.revisions.set(revision.name.toLowerCase(), revision);
    app.latestRevisionName = revision.name;
    return revision;
  }

  private appJson(app: AppState): Record<string, unknown> {
    const { subscriptionId, resourceGroup, appName } = app.ref;
    const latest = app.latestRevisionName;
    const body: Record<string, unknown> = {
      id: `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.App/containerApps/${appName}`,
      name: appName,
      type: "Microsoft.App/containerApps",
      location: app.location,
    };
    if (app.tags) body.tags = app.tags;
    body.identity = { type: "None" };
    body.properties = {
      provisioningState: app.provisioningState,
      runningStatus: "Running",
      ...app.properties,
      latestRevisionName: latest,
      latestReadyRevisionName: app.latestReadyRevisionName,
      latestRevisionFqdn: latest ? `${latest}.${ENV_DOMAIN}` : undefined,
    };
    return body;
  }

  private revisionJson(app: AppState, r: RevisionState): Record<string, unknown> {
    const { subscriptionId, resourceGroup, appName } = app.ref;
    return {
      id: `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.App/containerApps/${appName}/revisions/${r.name}`,
      name: r.name,
      type: "Microsoft.App/containerapps/revisions",
      properties: {
        createdTime: r.createdTime,
        lastActiveTime: r.createdTime,
        fqdn: `${r.name}.${ENV_DOMAIN}`,
        template: r.template,
        active: r.active,
        replicas: r.replicas,
        trafficWeight: r.trafficWeight,
        provisioningError: null,
        healthState: r.healthState,
        provisioningState: r.provisioningState,
        runningState: r.runningState,
      },
    };
  }
}

function appKey(ref: ContainerAppRef): string {
  return `${ref.subscriptionId}/${ref.resourceGroup}/${ref.appName}`.toLowerCase();
}

function templateOf(app: AppState): Record<string, unknown> {
  const template = app.properties.template;
  return isRecord(template) ? template : {};
}

function stripSuffix(template: Record<string, unknown>): Record<string, unknown> {
  const { revisionSuffix: _ignored, ...rest } = template;
  return rest;
}

function imagesOf(template: Record<string, unknown>): Record<string, string> {
  const containers = Array.isArray(template.containers) ? template.containers : [];
  const images: Record<string, string> = {};
  for (const c of containers) {
    if (isRecord(c) && typeof c.name === "string" && typeof c.image === "string") images[c.name] = c.image;
  }
  return images;
}

function revisionView(r: RevisionState): RevisionView {
  return {
    name: r.name,
    images: imagesOf(r.template),
    provisioningState: r.provisioningState,
    healthState: r.healthState,
    runningState: r.runningState,
    active: r.active,
    trafficWeight: r.trafficWeight,
  };
}

/** RFC 7396 JSON merge patch: objects merge, arrays and scalars replace, null deletes. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) return structuredClone(patch);
  const result: Record<string, unknown> = isRecord(target) ? { ...target } : {};
  for (const [name, value] of Object.entries(patch)) {
    if (value === null) delete result[name];
    else result[name] = mergePatch(result[name], value);
  }
  return result;
}

function randomSuffix(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return [...randomBytes(7)].map((b) => alphabet[b % alphabet.length]).join("");
}
