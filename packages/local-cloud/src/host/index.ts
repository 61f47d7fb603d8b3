/**
 * The local functions host: serves the app's own registrations (captured through our
 * `@azure/functions-core`, see `coreShim.ts`) over real HTTP, the way the Azure Functions host does.
 *
 * - `/api/<route>` goes to the HTTP trigger whose route and method match; `authLevel: "function"` and
 *   `"admin"` need the function key (`x-functions-key` header or `?code=`), else 401.
 * - Requests and contexts are `@azure/functions`' own `HttpRequest` / `InvocationContext`; the handler's
 *   `HttpResponseInit` goes back through its own `HttpResponse`.
 * - A `durableClient` input receives binding data whose `rpcBaseUrl` is this host's loopback durable
 *   endpoint, served over a {@link DurableEngine}; the real durable-functions client talks to it.
 * - Timer triggers fire on demand (`triggerTimer`) and, with `runTimers`, on their schedule; like
 *   Azure's singleton timers, one timer never runs twice at once.
 *
 * Importing this module installs the core shim, so import it before anything that calls `app.*`.
 */
import { randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";
import { isAbsolute, resolve } from "node:path";
// Default import: the package is a webpack bundle, so Node cannot see its classes as named exports.
import functions, { type Timer } from "@azure/functions";
import type { DurableEngine } from "../durable/engine.js";
import {
  capturedFunctions,
  installCoreShim,
  programmingModelSet,
  type CapturedBinding,
  type CapturedFunction,
  type CapturedHandler,
} from "./coreShim.js";
import { describeError } from "../errors.js";
import { BodyTooLargeError, close, flattenHeaders, listen, readBody, reply } from "../httpServer.js";
import { startDurableRpcServer } from "./durableRpc.js";
import { parseSchedule, type Schedule } from "./ncrontab.js";
import { byPrecedence, compileRoute, matchRoute } from "./routes.js";

installCoreShim();

const { HttpRequest, HttpResponse, InvocationContext } = functions;

/** The Functions host's default request size limit (`maxRequestBodySize`, 100 MB). */
const DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024;
const ROUTE_PREFIX = "api";

export type AuthLevel = "anonymous" | "function" | "admin";

/** A captured function with its bindings sorted into the roles the host needs. */
export interface Registration {
  name: string;
  trigger: CapturedBinding & { name: string };
  extraInputs: (CapturedBinding & { name: string })[];
  extraOutputs: (CapturedBinding & { name: string })[];
  returnBinding: (CapturedBinding & { name: string }) | undefined;
  handler: CapturedHandler;
  retryOptions: unknown;
}

export interface HttpRegistration extends Registration {
  route: string;
  methods: string[];
  authLevel: AuthLevel;
}

export interface TimerRegistration extends Registration {
  schedule: string;
  /** `schedule`, parsed once when the functions are loaded (a bad one fails at start). */
  parsed: Schedule;
  runOnStartup: boolean;
}

export interface Registrations {
  all: Registration[];
  http: HttpRegistration[];
  timers: TimerRegistration[];
  /** `orchestrationTrigger` functions (handlers are durable-functions' `createOrchestrator` wrappers). */
  orchestrations: Registration[];
  /** `activityTrigger` functions: `handler(input, context)`. */
  activities: Registration[];
  entities: Registration[];
  get(name: string): Registration | undefined;
}

export interface HostLogEntry {
  level: string;
  functionName: string;
  invocationId: string;
  message: string;
}

export interface LocalHostOptions {
  /** Module (path or file URL) whose import registers the functions, e.g. `src/functions/index.ts`. */
  entry?: string;
  /** Or: registers the functions itself (e.g. imports a few registration modules). */
  register?: () => Promise<void>;
  /**
   * The engine behind the durable client, or a factory given the registrations (so activities can be
   * resolved by name). An engine made by the factory is stopped with the host; one passed in is not.
   */
  engine: DurableEngine | ((registrations: Registrations) => DurableEngine | Promise<DurableEngine>);
  /** The key `authLevel: "function"` routes require. */
  functionKey: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Fire timer triggers on their schedules (default off: tests fire them with `triggerTimer`). */
  runTimers?: boolean;
  taskHubName?: string;
  maxRequestBytes?: number;
  /** Function log lines (default: printed to the console). */
  log?: (entry: HostLogEntry) => void;
  /**
   * Models App Service authentication ("Easy Auth") in front of the functions: every client-sent
   * `x-ms-client-principal*` header is removed, and a request with `Authorization: Bearer <JWT>`
   * gets the platform's headers from the token's claims (`preferred_username` or `name`, `oid`),
   * as App Service does for a signed-in user (MicrosoftDocs azure-docs
   * articles/app-service/configure-authentication-user-identities.md). Tokens are decoded, not
   * verified, as elsewhere in the local cloud. Off by default: then headers pass as sent.
   */
  easyAuth?: boolean;
}

export interface LocalHost {
  /** Origin of the public listener; the API is under `${url}/api/`. */
  url: string;
  /** The loopback durable endpoint the durable client is pointed at. */
  rpcBaseUrl: string;
  registrations: Registrations;
  engine: DurableEngine;
  /** Runs a timer trigger now and resolves when its handler has finished (rejects if it threw). */
  triggerTimer(name: string): Promise<void>;
  stop(): Promise<void>;
}

/** Loads the app's registrations and serves them; see the module comment. */
export async function startLocalHost(options: LocalHostOptions): Promise<LocalHost> {
  if (!options.functionKey) throw new Error("startLocalHost: functionKey is required");
  if (options.register) await options.register();
  if (options.entry) await import(toImportSpecifier(options.entry));
  const captured = capturedFunctions();
  if (!programmingModelSet() || captured.length === 0) {
    throw new Error(
      "no functions were registered through the local host. Either the entry registers none, or " +
        "@azure/functions was used before @fast-build/local-cloud/host was imported (it then stays in test mode " +
        "for the whole process): import @fast-build/local-cloud/host first.",
    );
  }
  const registrations = classify(captured);

  const ownsEngine = typeof options.engine === "function";
  const engine = typeof options.engine === "function" ? await options.engine(registrations) : options.engine;
  const rpc = await startDurableRpcServer(() => engine, { taskHubName: options.taskHubName ?? "fastbuild" });
  const log = options.log ?? printLog;
  const routes = registrations.http
    .map((registration) => ({ registration, compiled: compileRoute(registration.route) }))
    .sort((a, b) => byPrecedence(a.compiled, b.compiled));
  const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const key = Buffer.from(options.functionKey);

  const server = createServer((req, res) => {
    serve(req, res).catch((error: unknown) => {
      log({ level: "error", functionName: "(host)", invocationId: "-", message: describeError(error) });
      reply(res, 500, { error: { code: "HostError", message: "The local functions host failed." } });
    });
  });
  await listen(server, options.port ?? 0);
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const timers = new TimerRunner(registrations.timers, (registration) => invokeTimer(registration));
  if (options.runTimers) timers.start();

  function context(registration: Registration): InstanceType<typeof InvocationContext> {
    const invocationId = randomUUID();
    const ctx = new InvocationContext({
      invocationId,
      functionName: registration.name,
      logHandler: (level, ...args) =>
        log({ level, functionName: registration.name, invocationId, message: args.map(String).join(" ") }),
      options: {
        trigger: registration.trigger,
        ...(registration.returnBinding ? { return: registration.returnBinding } : {}),
        extraInputs: registration.extraInputs,
        extraOutputs: registration.extraOutputs,
      },
    });
    for (const input of registration.extraInputs) {
      if (isDurableClient(input)) ctx.extraInputs.set(input.name, rpc.clientBindingData());
    }
    return ctx;
  }

  async function invokeTimer(registration: TimerRegistration): Promise<void> {
    const now = new Date();
    const schedule = registration.parsed;
    const timer: Timer = {
      isPastDue: false,
      schedule: { adjustForDST: true },
      scheduleStatus: {
        last: now.toISOString(),
        next: schedule.next(now).toISOString(),
        lastUpdated: now.toISOString(),
      },
    };
    await registration.handler(timer, context(registration));
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestUrl = new URL(req.url ?? "/", url);
    const prefix = `/${ROUTE_PREFIX}/`;
    const method = (req.method ?? "GET").toUpperCase();
    if (!requestUrl.pathname.toLowerCase().startsWith(prefix)) {
      return reply(res, 404, notFound(`No function at ${requestUrl.pathname}; the API is under ${prefix}.`));
    }
    const path = requestUrl.pathname.slice(prefix.length);
    let params: Record<string, string> | undefined;
    let target: HttpRegistration | undefined;
    for (const { registration, compiled } of routes) {
      if (!registration.methods.includes(method)) continue;
      params = matchRoute(compiled, path);
      if (params) {
        target = registration;
        break;
      }
    }
    if (!target || !params) {
      return reply(res, 404, notFound(`No function answers ${method} ${requestUrl.pathname}.`));
    }
    if (target.authLevel !== "anonymous" && !keyMatches(req, requestUrl)) {
      return reply(res, 401, {
        error: {
          code: "Unauthorized",
          message: "This function needs the function key.",
          hint: "Send it in the x-functions-key header (or as ?code=).",
        },
      });
    }

    let body: Buffer;
    try {
      body = await readBody(req, maxRequestBytes);
    } catch (error) {
      if (!(error instanceof BodyTooLargeError)) throw error;
      res.setHeader("connection", "close");
      return reply(res, 413, {
        error: {
          code: "PayloadTooLarge",
          message: `Request bodies are limited to ${maxRequestBytes} bytes.`,
        },
      });
    }

    const request = new HttpRequest({
      method,
      url: requestUrl.href,
      headers: options.easyAuth ? easyAuthHeaders(flattenHeaders(req)) : flattenHeaders(req),
      query: Object.fromEntries(requestUrl.searchParams),
      params,
      ...(method !== "GET" && method !== "HEAD" && body.length > 0 ? { body: { bytes: body } } : {}),
    });
    const ctx = context(target);
    let result: unknown;
    try {
      result = await target.handler(request, ctx);
    } catch (error) {
      // What Azure does with an unhandled exception: 500, nothing of the error in the response.
      log({
        level: "error",
        functionName: target.name,
        invocationId: ctx.invocationId,
        message: describeError(error),
      });
      return reply(res, 500, { error: { code: "InternalError", message: "The function failed." } });
    }
    await sendResponse(res, result);
  }

  function keyMatches(req: IncomingMessage, requestUrl: URL): boolean {
    const header = req.headers["x-functions-key"];
    const given = (Array.isArray(header) ? header[0] : header) ?? requestUrl.searchParams.get("code") ?? "";
    const candidate = Buffer.from(given);
    return candidate.length === key.length && timingSafeEqual(candidate, key);
  }

  return {
    url,
    rpcBaseUrl: rpc.rpcBaseUrl,
    registrations,
    engine,
    async triggerTimer(name: string): Promise<void> {
      const registration = registrations.timers.find((timer) => timer.name === name);
      if (!registration) {
        const known = registrations.timers.map((timer) => timer.name).join(", ") || "none";
        throw new Error(`no timer trigger named "${name}" (timers: ${known})`);
      }
      await timers.runExclusive(registration);
    },
    async stop(): Promise<void> {
      timers.stop();
      await Promise.all([close(server), rpc.stop()]);
      await timers.idle();
      if (ownsEngine) await engine.stop();
    },
  };
}

/**
 * The registered activities by name, for a durable engine that resolves activities by name. (The
 * captured orchestrator handlers are durable-functions' replay wrappers, not the generator
 * functions an engine drives: pass those from their own modules.)
 */
export function activityHandlers(
  registrations: Registrations,
): Map<string, (input: unknown, context: InstanceType<typeof InvocationContext>) => unknown> {
  return new Map(registrations.activities.map((activity) => [activity.name, activity.handler]));
}

/** Sorts captured functions by trigger; rejects inputs the host could not provide. */
export function classify(functions: readonly CapturedFunction[]): Registrations {
  const all: Registration[] = [];
  const http: HttpRegistration[] = [];
  const timers: TimerRegistration[] = [];
  const orchestrations: Registration[] = [];
  const activities: Registration[] = [];
  const entities: Registration[] = [];
  for (const fn of functions) {
    let trigger: Registration["trigger"] | undefined;
    let returnBinding: Registration["returnBinding"];
    const extraInputs: Registration["extraInputs"] = [];
    const extraOutputs: Registration["extraOutputs"] = [];
    // The same split `@azure/functions` makes when the worker invokes a function (fromRpcBindings).
    for (const [bindingName, binding] of Object.entries(fn.bindings)) {
      const named = { ...binding, name: bindingName };
      if (/trigger$/i.test(binding.type)) trigger = named;
      else if (bindingName === "$return") returnBinding = named;
      else if (binding.direction === "in") extraInputs.push(named);
      else if (binding.direction === "out") extraOutputs.push(named);
    }
    if (!trigger) throw new Error(`function "${fn.name}" has no trigger binding`);
    const registration: Registration = {
      name: fn.name,
      trigger,
      extraInputs,
      extraOutputs,
      returnBinding,
      handler: fn.handler,
      retryOptions: fn.retryOptions,
    };
    const type = trigger.type.toLowerCase();
    if (
      (type === "httptrigger" || type === "timertrigger") &&
      extraInputs.some((input) => !isDurableClient(input))
    ) {
      const kinds = extraInputs.filter((input) => !isDurableClient(input)).map((input) => input.type);
      throw new Error(
        `function "${fn.name}": the local host cannot provide input bindings of type ${kinds.join(", ")}`,
      );
    }
    all.push(registration);
    if (type === "httptrigger") {
      http.push({
        ...registration,
        route: typeof trigger.route === "string" && trigger.route ? trigger.route : fn.name,
        methods: (Array.isArray(trigger.methods) ? (trigger.methods as string[]) : ["GET", "POST"]).map((m) =>
          m.toUpperCase(),
        ),
        authLevel: parseAuthLevel(trigger.authLevel, fn.name),
      });
    } else if (type === "timertrigger") {
      const schedule = typeof trigger.schedule === "string" ? trigger.schedule : "";
      timers.push({
        ...registration,
        schedule,
        parsed: parseSchedule(schedule),
        runOnStartup: trigger.runOnStartup === true,
      });
    } else if (type === "orchestrationtrigger") orchestrations.push(registration);
    else if (type === "activitytrigger") activities.push(registration);
    else if (type === "entitytrigger") entities.push(registration);
  }
  return {
    all,
    http,
    timers,
    orchestrations,
    activities,
    entities,
    get: (name) => all.find((registration) => registration.name === name),
  };
}

function parseAuthLevel(value: unknown, functionName: string): AuthLevel {
  const level = typeof value === "string" ? value.toLowerCase() : "anonymous";
  if (level === "anonymous" || level === "function" || level === "admin") return level;
  throw new Error(`function "${functionName}": unknown authLevel "${String(value)}"`);
}

function isDurableClient(binding: CapturedBinding): boolean {
  return binding.type === "durableClient" || binding.type === "orchestrationClient";
}

/** Runs each timer on its schedule, never two runs of one timer at once. */
class TimerRunner {
  private readonly running = new Map<string, Promise<void>>();
  private readonly handles = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly timers: readonly TimerRegistration[],
    private readonly invoke: (registration: TimerRegistration) => Promise<void>,
  ) {}

  start(): void {
    for (const timer of this.timers) {
      if (timer.runOnStartup) this.fire(timer);
      this.scheduleNext(timer, timer.parsed);
    }
  }

  /** Starts a run unless one is in progress, in which case the caller shares it. */
  runExclusive(timer: TimerRegistration): Promise<void> {
    const current = this.running.get(timer.name);
    if (current) return current;
    const run = this.invoke(timer).finally(() => this.running.delete(timer.name));
    this.running.set(timer.name, run);
    return run;
  }

  stop(): void {
    this.stopped = true;
    for (const handle of this.handles) clearTimeout(handle);
    this.handles.clear();
  }

  async idle(): Promise<void> {
    await Promise.allSettled([...this.running.values()]);
  }

  private fire(timer: TimerRegistration): void {
    // A scheduled run that fails is logged by the handler's context; the schedule goes on.
    this.runExclusive(timer).catch((error: unknown) => {
      console.error(`[${timer.name}] timer run failed: ${describeError(error)}`);
    });
  }

  private scheduleNext(timer: TimerRegistration, schedule: Schedule): void {
    if (this.stopped) return;
    const now = new Date();
    // setTimeout caps at ~24.8 days; a longer wait just re-checks then.
    const delay = Math.min(schedule.next(now).getTime() - now.getTime(), 2 ** 31 - 1);
    const handle = setTimeout(() => {
      this.handles.delete(handle);
      if (this.stopped) return;
      if (Date.now() >= schedule.next(now).getTime()) this.fire(timer);
      this.scheduleNext(timer, schedule);
    }, delay);
    handle.unref();
    this.handles.add(handle);
  }
}

async function sendResponse(res: ServerResponse, result: unknown): Promise<void> {
  if (result === undefined || result === null) {
    res.writeHead(204).end();
    return;
  }
  const response = result instanceof HttpResponse ? result : new HttpResponse(result);
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  const cookies = response.cookies.map((cookie) => `${cookie.name}=${cookie.value}`);
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  const body = Buffer.from(await response.arrayBuffer());
  headers["content-length"] = String(body.length);
  res.writeHead(response.status, headers).end(body);
}

function notFound(message: string): unknown {
  return { error: { code: "NotFound", message } };
}

function printLog(entry: HostLogEntry): void {
  const line = `[${entry.functionName}] ${entry.message}`;
  if (entry.level === "error" || entry.level === "critical") console.error(line);
  else if (entry.level === "warning") console.warn(line);
  else console.log(line);
}

function toImportSpecifier(entry: string): string {
  if (/^(file|data|node):/.test(entry)) return entry;
  return pathToFileURL(isAbsolute(entry) ? entry : resolve(entry)).href;
}

export { installCoreShim } from "./coreShim.js";

/** The headers App Service authentication hands the app: client copies gone, the token's user in. */
export function easyAuthHeaders(headers: Record<string, string>): Record<string, string> {
  const kept = Object.fromEntries(
    Object.entries(headers).filter(([name]) => !name.toLowerCase().startsWith("x-ms-client-principal")),
  );
  const bearer = /^Bearer\s+([^.\s]+)\.([^.\s]+)\.[^\s]*$/i.exec(headers.authorization ?? "");
  if (!bearer) return kept;
  let claims: Record<string, unknown>;
  try {
    claims = JSON.parse(Buffer.from(bearer[2]!, "base64url").toString("utf8")) as Record<string, unknown>;
  } catch {
    return kept;
  }
  const name = typeof claims.preferred_username === "string" ? claims.preferred_username : claims.name;
  const oid = claims.oid;
  if (typeof name !== "string" || name === "") return kept;
  const principal = {
    auth_typ: "aad",
    name_typ: "name",
    role_typ: "roles",
    claims: [
      { typ: "name", val: name },
      ...(typeof oid === "string"
        ? [{ typ: "http://schemas.microsoft.com/identity/claims/objectidentifier", val: oid }]
        : []),
    ],
  };
  return {
    ...kept,
    "x-ms-client-principal-name": name,
    ...(typeof oid === "string" ? { "x-ms-client-principal-id": oid } : {}),
    "x-ms-client-principal-idp": "aad",
    "x-ms-client-principal": Buffer.from(JSON.stringify(principal)).toString("base64"),
  };
}
