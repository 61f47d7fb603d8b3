/**
 * Request/reply plumbing shared by the emulator's resource providers: ARM error bodies, timestamps,
 * operation ids and a timer registry so `stop()` leaves nothing running.
 */
import { randomUUID } from "node:crypto";

/** An ARM error reply. `bare` answers `{code, message}` without the `error` wrapper (Microsoft.App 409s do). */
export class ArmHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly bare = false,
  ) {
    super(message);
  }

  toReply(): Reply {
    const payload = { code: this.code, message: this.message };
    return { status: this.status, body: this.bare ? payload : { error: payload } };
  }
}

/** What a handler answers. An object body is sent as JSON; a string as is; undefined as an empty body. */
export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
}

export interface ArmRequest {
  method: string;
  /** Decoded path without query. */
  path: string;
  query: URLSearchParams;
  apiVersion: string;
  /** Parsed JSON body (undefined when empty). */
  body: unknown;
  headers: Record<string, string>;
}

/** ARM's timestamp style: `2022-03-17T06:24:54.620+00:00`. */
export function armTime(date = new Date()): string {
  return date.toISOString().replace("Z", "+00:00");
}

export function newId(): string {
  return randomUUID();
}

/** `West US` → `westus`, as ARM normalises locations in operation URLs. */
export function normaliseLocation(location: string): string {
  return location.replace(/\s+/g, "").toLowerCase();
}

export function notFound(type: string, name: string, resourceGroup: string): ArmHttpError {
  return new ArmHttpError(
    404,
    "ResourceNotFound",
    `The Resource '${type}/${name}' under resource group '${resourceGroup}' was not found. ` +
      "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
  );
}

/** The 404 ARM gives for a missing resource: its group is missing, or only the resource is. */
export function missingResource(
  rgExists: boolean,
  type: string,
  name: string,
  resourceGroup: string,
): ArmHttpError {
  if (!rgExists) {
    return new ArmHttpError(
      404,
      "ResourceGroupNotFound",
      `Resource group '${resourceGroup}' could not be found.`,
    );
  }
  return notFound(type, name, resourceGroup);
}

export function methodNotAllowed(req: ArmRequest): ArmHttpError {
  return new ArmHttpError(
    405,
    "MethodNotAllowed",
    `The method '${req.method}' is not allowed on '${req.path}'.`,
  );
}

export function requireMethod(req: ArmRequest, methods: string[]): void {
  if (!methods.includes(req.method)) throw methodNotAllowed(req);
}

export function badRequest(code: string, message: string): ArmHttpError {
  return new ArmHttpError(400, code, message);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Timers that `stop()` clears, so a stopped emulator keeps no process alive. */
export class Timers {
  private readonly pending = new Set<NodeJS.Timeout>();

  after(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.pending.delete(timer);
      fn();
    }, ms);
    this.pending.add(timer);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.after(ms, resolve));
  }

  clear(): void {
    for (const timer of this.pending) clearTimeout(timer);
    this.pending.clear();
  }
}

/** Keeps only the last `maxBytes` of UTF-8 text, as the run-command instance view does (4 KB). */
export function tail(text: string, maxBytes = 4096): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  // Cutting inside a multi-byte character leaves a replacement char at the start: drop it.
  return bytes
    .subarray(bytes.length - maxBytes)
    .toString("utf8")
    .replace(/^\uFFFD+/, "");
}
