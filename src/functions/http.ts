/**
 * What every HTTP trigger shares: reading a bounded JSON body, validating with a schema, answering
 * `{error:{code,message,hint}}`, and turning an unexpected failure into a generic 500 that carries
 * only a correlation id (the invocation id, which Application Insights indexes). Log lines carry
 * the build id and go through `redact`, so a SAS signature or key never reaches the logs.
 */
import type { HttpHandler, HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import type { z } from "zod";
import { logLine, type EnvironmentConfig } from "../config/index.js";
import { quoted } from "../core/logText.js";
import type { ErrorResponse } from "../core/api.js";
import { buildIdSchema } from "../core/buildInput.js";
import {
  type ErrorKind,
  InvalidInputError,
  isFastBuildError,
  NotFoundError,
  PayloadTooLargeError,
  TransientError,
  describeError,
} from "../core/errors.js";

/**
 * The one place a typed error becomes an HTTP status. Below 500 the caller can act on the error,
 * so it gets the code, message and hint; a failure of ours or of a service we depend on gets only
 * a generic answer and a correlation id (503 with Retry-After when it is worth trying again).
 */
export const HTTP_STATUS: Readonly<Record<ErrorKind, number>> = {
  "invalid-input": 400,
  unauthorized: 401,
  "not-found": 404,
  conflict: 409,
  "too-large": 413,
  transient: 503,
  permanent: 500,
  config: 500,
  forbidden: 403,
};

/** Requests to the API are small JSON documents. */
export const MAX_JSON_BODY_BYTES = 16 * 1024;
/**
 * … except a build request that carries its tree's manifest (about 150 bytes an entry: 64 MiB
 * holds some 400,000, twice the default FASTBUILD_EXTRACT_MAX_FILES), below the Functions host's
 * own 100 MB request limit.
 */
export const MAX_MANIFEST_BODY_BYTES = 64 * 1024 * 1024;

export interface BuildLog {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Log lines for one build: prefixed with its id, secrets redacted. */
export function buildLog(context: InvocationContext, buildId: string | undefined): BuildLog {
  const prefix = `[build ${buildId ?? "-"}]`;
  return {
    info: (message) => context.info(logLine(`${prefix} ${message}`)),
    warn: (message) => context.warn(logLine(`${prefix} ${message}`)),
    error: (message) => context.error(logLine(`${prefix} ${message}`)),
  };
}

/** A JSON response. */
export function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponseInit {
  return { status, jsonBody: body, headers: { "cache-control": "no-store", ...headers } };
}

/**
 * Reads and parses the JSON body, refusing more than `maxBytes` (413) before parsing and malformed
 * JSON (400). An empty body reads as `undefined`.
 */
export async function readJson(request: HttpRequest, maxBytes = MAX_JSON_BODY_BYTES): Promise<unknown> {
  return (await readJsonBody(request, maxBytes)).value;
}

/** {@link readJson}, with the body's size in bytes (for a limit that depends on what the body is). */
export async function readJsonBody(
  request: HttpRequest,
  maxBytes: number,
): Promise<{ value: unknown; bytes: number }> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const bytes = Buffer.from(await request.arrayBuffer());
  if (bytes.length > maxBytes) throw tooLarge(maxBytes);
  const text = bytes.toString("utf8").trim();
  if (text === "") return { value: undefined, bytes: 0 };
  try {
    return { value: JSON.parse(text) as unknown, bytes: bytes.length };
  } catch {
    throw new InvalidInputError("The request body is not valid JSON.", {
      code: "MalformedJson",
      hint: "Send a JSON object with Content-Type: application/json.",
    });
  }
}

export function tooLarge(maxBytes: number): PayloadTooLargeError {
  return new PayloadTooLargeError(`The request body is larger than ${maxBytes} bytes.`, {
    code: "RequestTooLarge",
    hint: "Send only the fields the API documents; the source archive goes to the upload URL, not here.",
  });
}

/** Validates with a zod schema; every problem is named in one 400. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const path = issue.path.map(String).join(".");
    // Unknown keys are named by zod in `keys`, not in the path.
    const keys = "keys" in issue && Array.isArray(issue.keys) ? ` (${issue.keys.join(", ")})` : "";
    return `${path || what}: ${issue.message}${keys}`;
  });
  throw new InvalidInputError(`Invalid ${what}: ${problems.join("; ")}.`, {
    code: "InvalidRequest",
    hint: `Fix the ${what} and send it again; nothing was started.`,
  });
}

/** The `{id}` route parameter, checked against the build id format (400 otherwise). */
export function routeBuildId(request: HttpRequest): string {
  const id = request.params.id ?? "";
  const parsed = buildIdSchema.safeParse(id);
  if (!parsed.success) {
    throw new InvalidInputError(`${quoted(id, 80)} is not a build id.`, {
      code: "InvalidBuildId",
      hint: "Use the buildId returned by POST /api/builds.",
    });
  }
  return parsed.data;
}

/** The `{env}` route parameter: a configured environment, else 404 `UnknownEnvironment` listing them. */
export function routeEnvironment(
  request: HttpRequest,
  environments: Readonly<Record<string, EnvironmentConfig>>,
): EnvironmentConfig {
  return knownEnvironment(environments, request.params.env ?? "");
}

/** The configured environment `name` (a route, query or body value), else 404 `UnknownEnvironment` listing them. */
export function knownEnvironment(
  environments: Readonly<Record<string, EnvironmentConfig>>,
  name: string,
): EnvironmentConfig {
  const env = Object.hasOwn(environments, name) ? environments[name] : undefined;
  if (env) return env;
  throw new NotFoundError(`unknown environment ${quoted(name, 80)}`, {
    code: "UnknownEnvironment",
    hint: `Use one of: ${Object.keys(environments).join(", ") || "(none configured)"}.`,
  });
}

/**
 * An optional whole-number query parameter from `min` to `max` (`fallback` when absent); anything
 * else is a 400 that names the range.
 */
export function queryInteger(
  request: HttpRequest,
  name: string,
  min: number,
  max: number,
  fallback: number,
  hint?: string,
): number {
  const raw = request.query.get(name);
  if (raw === null || raw === "") return fallback;
  const value = /^\d{1,16}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidInputError(
      `${name} must be a whole number from ${min} to ${max}, got "${raw.slice(0, 40)}".`,
      {
        code: "InvalidQuery",
        hint,
      },
    );
  }
  return value;
}

/**
 * Wraps a handler: typed errors become their status with code, message and hint; anything else a
 * generic 500 (503 for transient backend trouble) with a correlation id. The full error goes to
 * the log only, redacted.
 */
export function apiHandler(
  run: (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>,
): HttpHandler {
  return async (request, context) => {
    try {
      return await run(request, context);
    } catch (error) {
      // Only a well-formed id goes into the log line: the raw parameter is client text.
      const id = buildIdSchema.safeParse(request.params.id);
      return errorResponse(error, context, id.success ? id.data : undefined);
    }
  };
}

export function errorResponse(
  error: unknown,
  context: InvocationContext,
  buildId?: string,
): HttpResponseInit {
  const log = buildLog(context, buildId);
  const status = isFastBuildError(error) ? HTTP_STATUS[error.kind] : 500;
  if (isFastBuildError(error) && status < 500) {
    log.warn(`${status} ${error.code}: ${error.message}`);
    const body: ErrorResponse = {
      error: { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) },
    };
    return json(status, body);
  }
  const correlationId = context.invocationId;
  log.error(`unexpected failure (correlation id ${correlationId}): ${describeError(error)}${causeOf(error)}`);
  if (error instanceof TransientError) {
    const body: ErrorResponse = {
      error: {
        code: "ServiceUnavailable",
        message: "A service the build system depends on is unavailable right now.",
        hint: "Try again in a minute.",
        correlationId,
      },
    };
    const seconds = Math.max(1, Math.ceil((error.retryAfterMs ?? 10_000) / 1000));
    return json(503, body, { "retry-after": String(seconds) });
  }
  const body: ErrorResponse = {
    error: {
      code: "InternalError",
      message: "Something went wrong on our side.",
      hint: `If it keeps happening, report the correlation id ${correlationId}.`,
      correlationId,
    },
  };
  return json(500, body);
}

function causeOf(error: unknown): string {
  return error instanceof Error && error.cause !== undefined ? ` (cause: ${describeError(error.cause)})` : "";
}
