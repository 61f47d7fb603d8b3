/**
 * A local Azure Resource Manager for tests and the local simulation: HTTPS on 127.0.0.1 (a
 * certificate made at start), Bearer auth, api-version checks, Microsoft.Compute VMs and run
 * commands, Microsoft.App container apps, a managed-identity token endpoint, request recording
 * and fault injection. The real SDK clients talk to it unmodified.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { ComputeProvider } from "./compute.js";
import { ContainerAppsProvider } from "./containerApps.js";
import { ContainerRegistryProvider } from "./containerRegistry.js";
import { scriptedExecutor } from "./executors.js";
import { ArmHttpError, Timers, newId, type ArmRequest, type Reply } from "./http.js";
import { AZURE_PUBLIC_AUDIENCES, authenticate, authorize, metadataEndpoints } from "./auth.js";
import { FaultCounter, RandomFaultPicker, faultAction, lostReply, type FaultAction } from "./faults.js";
import type {
  ArmEmulator,
  ArmEmulatorOptions,
  Fault,
  HttpFault,
  OperationFault,
  RecordedRequest,
  RunCommandExecutor,
} from "./types.js";
import { createLoopbackCertificate } from "../tls.js";
import { LOCAL_OBJECT_ID, LOCAL_TENANT_ID, unsignedStorageToken } from "../oauthToken.js";
import { flattenHeaders, listen, readBody } from "../httpServer.js";

export type * from "./types.js";
export { ARM_OPERATIONS, AZURE_PUBLIC_AUDIENCES, requiredPermission } from "./auth.js";
export type { ArmOperation } from "./auth.js";
export { localShellExecutor, scriptedExecutor } from "./executors.js";
export { FAULT_CODES, HTTP_FAULT_KINDS } from "./faults.js";
export type { LocalShellOptions, ScriptedResult } from "./executors.js";

/** Oldest api-version each provider accepts here (2020-06-01 is the Azure Stack hybrid one). */
const MIN_API_VERSION: Record<string, string> = {
  compute: "2015-06-15",
  app: "2022-01-01-preview",
  containerRegistry: "2019-05-01",
};
const API_VERSION = /^\d{4}-\d{2}-\d{2}(-preview)?$/;

/** Starts the emulator on free loopback ports. Call `stop()` when done. */
export async function startArmEmulator(options: ArmEmulatorOptions = {}): Promise<ArmEmulator> {
  const { key, cert } = await createLoopbackCertificate();
  const dir = await mkdtemp(join(tmpdir(), "arm-emulator-"));
  const caFile = join(dir, "ca.pem");
  await writeFile(caFile, cert);

  const timers = new Timers();
  const requests: RecordedRequest[] = [];
  const faults: (HttpFault & { left: number })[] = [];
  const operationFaults: (OperationFault & { left: number })[] = [];
  let randomFaults: RandomFaultPicker | undefined;
  const counter = new FaultCounter();
  let executor: RunCommandExecutor = options.executor ?? scriptedExecutor();
  let endpoint = "";
  const audiences = options.audiences ?? AZURE_PUBLIC_AUDIENCES;
  const identityHeader = randomBytes(16).toString("hex");

  const compute = new ComputeProvider({
    endpoint: () => endpoint,
    timing: {
      vmStartMs: options.vmStartMs ?? 30,
      vmDeallocateMs: options.vmDeallocateMs ?? 30,
      vmResumeMs: options.vmResumeMs ?? 15,
      vmHibernateMs: options.vmHibernateMs ?? options.vmDeallocateMs ?? 30,
      vmPowerOffMs: options.vmPowerOffMs ?? 20,
      provisioningMs: options.provisioningMs ?? 20,
      flushMs: options.runCommandFlushMs ?? 15_000,
    },
    storageCa: options.storageCa,
    executor: () => executor,
    takeOperationFault: (operation, vmName) => {
      const fault = operationFaults.find(
        (f) =>
          f.left > 0 &&
          f.operation === operation &&
          (!f.vmName || f.vmName.toLowerCase() === vmName.toLowerCase()),
      );
      const error = fault ? fault.error : randomFaults?.pickOperation(operation);
      if (fault) fault.left--;
      if (error) counter.operationFault(error.code);
      return error;
    },
    timers,
  });
  const apps = new ContainerAppsProvider({
    endpoint: () => endpoint,
    timing: { provisioningMs: options.provisioningMs ?? 20, revisionReadyMs: options.revisionReadyMs ?? 60 },
    failRevisionsWithImage: options.failRevisionsWithImage,
    timers,
  });
  const registries = new ContainerRegistryProvider({
    endpoint: () => endpoint,
    timers,
    importDelayMs: options.provisioningMs ?? 20,
  });
  const rgExists = (sub: string, rg: string) =>
    compute.hasResourceGroup(sub, rg) ||
    apps.hasResourceGroup(sub, rg) ||
    registries.hasResourceGroup(sub, rg);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const raw = (await readBody(req)).toString("utf8");
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const path = safeDecode(url.pathname);
    const headers = flattenHeaders(req);
    const method = req.method ?? "GET";
    const apiVersion = url.searchParams.get("api-version") ?? undefined;
    requests.push({
      method,
      path,
      query: url.search.replace(/^\?/, ""),
      apiVersion,
      headers,
      body: raw,
      at: Date.now(),
    });

    counter.request();
    let action = takeFault(method, path);
    if (action && "delayMs" in action) {
      await timers.sleep(action.delayMs);
      action = undefined;
    }
    if (action && "before" in action) {
      if (action.before === "reset") req.socket.destroy();
      else send(res, action.before);
      return;
    }
    const reply = route(method, path, url.searchParams, apiVersion, headers, raw);
    if (!action) send(res, reply);
    // Carried out, then its answer lost on the way back.
    else if (action.after === "reset") req.socket.destroy();
    else send(res, lostReply(action.after, path));
  };

  /** The injected fault that matches first, else a random one; counts what it picks. */
  const takeFault = (method: string, path: string): FaultAction | undefined => {
    const fault = faults.find(
      (f) => f.left > 0 && (!f.method || f.method.toUpperCase() === method) && (!f.path || f.path.test(path)),
    );
    if (fault) {
      fault.left--;
      const response = fault.response;
      if ("delayMs" in response) return response;
      if ("kind" in response) {
        counter.httpFault(response.kind);
        return faultAction(response.kind, { retryAfterSeconds: response.retryAfterSeconds });
      }
      if ("replyLost" in response) {
        counter.httpFault("replyLost");
        return { after: response.replyLost };
      }
      if ("reset" in response) {
        counter.httpFault("connectionReset");
        return { before: "reset" };
      }
      counter.httpFault(`status ${response.status}`);
      return { before: response };
    }
    const kind = randomFaults?.pick(method, path);
    if (!kind || !randomFaults) return undefined;
    counter.httpFault(kind);
    return faultAction(kind, randomFaults.config);
  };

  const route = (
    method: string,
    path: string,
    query: URLSearchParams,
    apiVersion: string | undefined,
    headers: Record<string, string>,
    raw: string,
  ): Reply => {
    try {
      // Public and unauthenticated, as on Azure Stack Hub: how clients learn the token audience.
      if (method === "GET" && /^\/metadata\/endpoints$/i.test(path))
        return metadataEndpoints(endpoint, audiences);
      const caller = authenticate(headers.authorization, audiences);
      if ("status" in caller) return caller;
      // ARM authorizes before it routes: a caller without the action gets 403 even for a missing resource.
      const denied = authorize(options.authorization, caller, method, path);
      if (denied) return denied;
      if (!apiVersion) {
        throw new ArmHttpError(
          400,
          "MissingApiVersionParameter",
          "The api-version query parameter (?api-version=) is required for all requests.",
        );
      }
      const provider = /\/providers\/Microsoft\.App\//i.test(path)
        ? "app"
        : /\/providers\/Microsoft\.ContainerRegistry\//i.test(path)
          ? "containerRegistry"
          : "compute";
      if (!API_VERSION.test(apiVersion)) {
        throw new ArmHttpError(
          400,
          "InvalidApiVersionParameter",
          `The api-version '${apiVersion}' is invalid. The supported versions look like 'yyyy-mm-dd' or 'yyyy-mm-dd-preview'.`,
        );
      }
      if (apiVersion < MIN_API_VERSION[provider]!) {
        throw new ArmHttpError(
          400,
          "NoRegisteredProviderFound",
          `No registered resource provider found for api-version '${apiVersion}'. The oldest supported version here is '${MIN_API_VERSION[provider]}'.`,
        );
      }
      let body: unknown;
      if (raw.length > 0) {
        try {
          body = JSON.parse(raw);
        } catch {
          throw new ArmHttpError(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: not JSON.",
          );
        }
      }
      const request: ArmRequest = { method, path, query, apiVersion, body, headers };
      const reply =
        compute.handle(request, rgExists) ??
        apps.handle(request, rgExists) ??
        registries.handle(request, rgExists);
      if (reply) return reply;
      throw new ArmHttpError(404, "NotFound", `The emulator serves no route for ${method} ${path}.`);
    } catch (error) {
      if (error instanceof ArmHttpError) return error.toReply();
      const message = error instanceof Error ? error.message : String(error);
      return { status: 500, body: { error: { code: "InternalServerError", message } } };
    }
  };

  const server = createHttpsServer({ key, cert }, (req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent)
        send(res, { status: 500, body: { error: { code: "InternalServerError", message: String(error) } } });
    });
  });
  // Track raw sockets: clients poll with keep-alive, and a socket still in its TLS handshake is
  // not one `closeAllConnections()` knows about, so `stop()` destroys them all itself.
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await listen(server);
  endpoint = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // App Service style managed identity (what ManagedIdentityCredential calls with IDENTITY_ENDPOINT/HEADER).
  const identity = createHttpServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (req.headers["x-identity-header"] !== identityHeader) {
      send(res, {
        status: 401,
        body: { error: "invalid_request", error_description: "The x-identity-header is missing or wrong." },
      });
      return;
    }
    const resource = url.searchParams.get("resource");
    if (!url.searchParams.get("api-version") || !resource) {
      send(res, {
        status: 400,
        body: { error: "invalid_request", error_description: "api-version and resource are required." },
      });
      return;
    }
    // Like Azure's endpoint, the token is for the resource asked for (`aud` = resource).
    const accessToken =
      options.accessToken ??
      unsignedStorageToken({
        audience: resource,
        tenantId: LOCAL_TENANT_ID,
        objectId: options.identityObjectId ?? LOCAL_OBJECT_ID,
        lifetimeSeconds: 3600,
      });
    send(res, {
      status: 200,
      body: {
        access_token: accessToken,
        expires_on: String(Math.floor(Date.now() / 1000) + 3600),
        resource,
        token_type: "Bearer",
        client_id: url.searchParams.get("client_id") ?? "00000000-0000-0000-0000-000000000000",
      },
    });
  });
  await listen(identity);
  const identityEndpoint = `http://127.0.0.1:${(identity.address() as AddressInfo).port}/msi/token`;

  return {
    endpoint,
    ca: cert,
    caFile,
    identityEndpoint,
    identityHeader,
    requests,
    addVm: (ref, init) => compute.addVm(ref, init),
    getVm: (ref) => compute.getVm(ref),
    addContainerApp: (ref, init) => apps.addContainerApp(ref, init),
    getContainerApp: (ref) => apps.getContainerApp(ref),
    addRegistry: (ref, init) => registries.addRegistry(ref, init),
    setRunCommandExecutor: (fn) => {
      executor = fn;
    },
    inject: (fault: Fault) => {
      if ("operation" in fault) operationFaults.push({ ...fault, left: fault.times ?? 1 });
      else faults.push({ ...fault, left: fault.times ?? 1 });
    },
    setRandomFaults: (config) => {
      randomFaults = config && new RandomFaultPicker(config);
    },
    clearFaults: () => {
      faults.length = 0;
      operationFaults.length = 0;
      randomFaults = undefined;
    },
    faultStats: () => counter.stats(),
    stop: async () => {
      timers.clear();
      // Stop accepting first, then drop what is open, so no new keep-alive connection slips in.
      const closed = Promise.all([
        new Promise<void>((resolve) => server.close(() => resolve())),
        new Promise<void>((resolve) => identity.close(() => resolve())),
      ]);
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      identity.closeAllConnections();
      await closed;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function send(res: ServerResponse, reply: Reply): void {
  const headers: Record<string, string> = {
    "x-ms-request-id": newId(),
    "x-ms-correlation-request-id": newId(),
    "cache-control": "no-cache",
    ...reply.headers,
  };
  let payload = "";
  if (typeof reply.body === "string") payload = reply.body;
  else if (reply.body !== undefined) {
    payload = JSON.stringify(reply.body);
    headers["content-type"] = "application/json; charset=utf-8";
  }
  headers["content-length"] = String(Buffer.byteLength(payload));
  res.writeHead(reply.status, headers);
  res.end(payload);
}

function safeDecode(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}
