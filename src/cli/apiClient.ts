/**
 * The CLI's side of the HTTP API (global fetch). Failures become the shared typed errors, keeping
 * the server's `{error:{code,message,hint}}` so the user sees the hint.
 */
import type { CostsResponse, HistoryPage } from "../core/history.js";
import { z } from "zod";
import type {
  BuilderInfo,
  BuildStatus,
  ImagesResponse,
  LogsResponse,
  StartBuildRequest,
  StartBuildResponse,
  WarmResponse,
} from "../core/api.js";
import { BUILD_PHASES, STATUS_WAIT_QUERY } from "../core/api.js";
import type { DeployStatus } from "../core/promotion.js";
import {
  ConflictError,
  type FastBuildError,
  InvalidInputError,
  NotFoundError,
  PayloadTooLargeError,
  PermanentError,
  TransientError,
  UnauthorizedError,
} from "../core/errors.js";

/** One slow answer should not hang the command (a long poll adds its wait); polls are retried by the caller. */
const REQUEST_TIMEOUT_MS = 30_000;

const relativeUrl = z.string().regex(/^\/[^/\\]/, "a path under the API base");

const startBuildResponseSchema = z.object({
  buildId: z.string().min(1),
  upload: z.object({ url: z.url(), expiresOn: z.string(), maxBytes: z.number().int().positive() }).optional(),
  contents: z
    .object({
      packs: z.array(z.object({ url: z.url(), contents: z.array(z.string()) })),
      expiresOn: z.string(),
      maxBytes: z.number().int().positive(),
      stored: z.number().int().nonnegative(),
      missing: z.number().int().nonnegative(),
      missingBytes: z.number().int().nonnegative(),
    })
    .optional(),
  statusUrl: relativeUrl,
  logsUrl: relativeUrl,
  sourceCompleteUrl: relativeUrl,
  cancelUrl: relativeUrl,
});

// Loose: newer servers may add fields; the CLI checks only what it relies on.
const buildStatusSchema = z.looseObject({
  buildId: z.string(),
  phase: z.enum(BUILD_PHASES),
  terminal: z.boolean(),
  steps: z.array(z.looseObject({ name: z.string(), state: z.string() })),
  timings: z.looseObject({ createdAt: z.string() }),
});

const promotionStartedSchema = z.looseObject({
  promotionId: z.string(),
  from: z.string(),
  to: z.string(),
  image: z.string(),
  source: z.string(),
  approvalRequired: z.boolean(),
  statusUrl: relativeUrl,
});
export type PromotionStarted = z.infer<typeof promotionStartedSchema>;

const rollbackStartedSchema = z.looseObject({
  rollbackId: z.string(),
  environment: z.string(),
  image: z.string(),
  revision: z.string(),
  statusUrl: relativeUrl,
});
export type RollbackStarted = z.infer<typeof rollbackStartedSchema>;

const deployStatusSchema = buildStatusSchema.extend({
  deploy: z.looseObject({ kind: z.enum(["promote", "rollback"]), to: z.string() }),
});

const logsResponseSchema = z.object({
  text: z.string(),
  nextOffset: z.number().int().nonnegative(),
  size: z.number().int().nonnegative(),
  complete: z.boolean(),
});

const buildersSchema = z.array(
  z.looseObject({
    name: z.string(),
    environment: z.string(),
    powerState: z.string(),
    leaseHolder: z.string().optional(),
    leaseExpiresAt: z.string().optional(),
    queue: z.array(z.string()),
    lastActivityAt: z.string().optional(),
    idleShutdownAt: z.string().optional(),
    hibernated: z.literal(true).optional(),
    idleShutdown: z.literal("hibernate").optional(),
  }),
);

const imageStateSchema = z.looseObject({
  reference: z.string(),
  state: z.enum(["present", "absent"]),
  digest: z.string().optional(),
});
const estimateSchema = z.looseObject({
  medianMs: z.number().optional(),
  builds: z.number(),
  text: z.string(),
});
const imagesSchema = z.looseObject({
  environment: z.string(),
  sourceImage: imageStateSchema,
  baseImage: imageStateSchema,
  expected: z.looseObject({ hit: estimateSchema, miss: estimateSchema }).optional(),
});

const warmSchema = z.looseObject({
  environment: z.string(),
  builder: z.string(),
  action: z.enum(["started", "none"]),
  powerStateBefore: z.string(),
  powerState: z.string(),
  reason: z.string().optional(),
  leaseHolder: z.string().optional(),
  lastActivityAt: z.string().optional(),
  idleShutdownAt: z.string().optional(),
  hibernated: z.literal(true).optional(),
});

/** What the history and costs commands print from (the rest of each record passes through to --json). */
const historyPageSchema = z.object({
  builds: z.array(
    z
      .object({
        buildId: z.string(),
        environment: z.string(),
        createdAt: z.string(),
        outcome: z.string(),
        durationMs: z.number(),
        phasesMs: z.record(z.string(), z.number()),
        vmMinutes: z.number(),
      })
      .passthrough(),
  ),
  next: z.string().optional(),
});

const usageSchema = z
  .object({ runningMinutes: z.number(), stoppedMinutes: z.number(), cost: z.number().optional() })
  .passthrough();
const costsSchema = z
  .object({
    from: z.string(),
    to: z.string(),
    days: z.number(),
    currency: z.string(),
    perDay: z.array(usageSchema.extend({ day: z.string() })),
    builders: z.array(usageSchema.extend({ builder: z.string(), vmSizes: z.array(z.string()) })),
    total: usageSchema,
    builds: z.object({ count: z.number(), vmMinutes: z.number() }).passthrough(),
    notes: z.array(z.string()),
  })
  .passthrough();

const errorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), hint: z.string().optional() }),
});

export interface ApiClientOptions {
  /** API base without trailing slash (`https://app.azurewebsites.net`); routes start with `/api`. */
  baseUrl: string;
  /** Functions key, sent as `x-functions-key`. */
  apiKey: string | undefined;
  /** A user's Entra access token, sent as `Authorization: Bearer` (App Service authentication). */
  apiToken?: string | undefined;
}

/** The API's URLs of a build known only by its id (`fast-build follow <id>` and the like). */
export function buildUrls(buildId: string): Pick<StartBuildResponse, "statusUrl" | "logsUrl" | "cancelUrl"> {
  // The id was checked against `buildIdSchema` (letters, digits, -): nothing to escape, but the
  // encoding keeps that a property of this function rather than of its callers.
  const base = `/api/builds/${encodeURIComponent(buildId)}`;
  return { statusUrl: base, logsUrl: `${base}/logs`, cancelUrl: `${base}/cancel` };
}

export class ApiClient {
  constructor(private readonly options: ApiClientOptions) {}

  /** `POST /api/builds`: starts the build; the server answers with where the source goes and the URLs. */
  async startBuild(request: StartBuildRequest): Promise<StartBuildResponse> {
    const body = await this.call("POST", "/api/builds", request);
    return parse(startBuildResponseSchema, body, "POST /api/builds");
  }

  /** Tells the server the archive is uploaded; it checks the blob and lets the build go on. */
  async sourceComplete(path: string): Promise<void> {
    await this.call("POST", path, {});
  }

  async status(path: string): Promise<BuildStatus> {
    const body = await this.call("GET", path);
    return parse(buildStatusSchema, body, "build status") as unknown as BuildStatus;
  }

  /**
   * The status, long-polled: with the ETag of the status the caller has, the server answers once
   * it changes (or after `waitMs`: `changed` false). `etag` is undefined when the server gives
   * none (an older one, which does not wait either). `signal` ends the wait early (Ctrl-C).
   */
  async watchStatus(
    path: string,
    since?: { etag: string; waitMs: number },
    signal?: AbortSignal,
  ): Promise<{ changed: false } | { changed: true; status: BuildStatus; etag: string | undefined }> {
    const query = since
      ? `${path.includes("?") ? "&" : "?"}${STATUS_WAIT_QUERY.waitMs}=${since.waitMs}&${STATUS_WAIT_QUERY.etag}=${encodeURIComponent(since.etag)}`
      : "";
    const { response, body } = await this.send(
      "GET",
      `${path}${query}`,
      undefined,
      since?.waitMs ?? 0,
      signal,
    );
    if (response.status === 304) return { changed: false };
    const status = parse(buildStatusSchema, body, "build status") as unknown as BuildStatus;
    return { changed: true, status, etag: response.headers.get("etag") ?? undefined };
  }

  async logs(path: string, offset: number): Promise<LogsResponse> {
    const body = await this.call("GET", `${path}${path.includes("?") ? "&" : "?"}offset=${offset}`);
    return parse(logsResponseSchema, body, "build log");
  }

  /** Asks the orchestration to stop; a build that has already ended answers 409 (`ConflictError`). */
  async cancel(path: string, reason?: string): Promise<void> {
    await this.call("POST", path, reason !== undefined ? { reason } : {});
  }

  /** `GET /api/builders`: every environment's builder VM. */
  async builders(): Promise<BuilderInfo[]> {
    const body = await this.call("GET", "/api/builders");
    return parse(buildersSchema, body, "GET /api/builders");
  }

  /** `GET /api/environments/{env}/images`: what the registry has for this source and base key (read-only). */
  async images(environment: string, sourceDigest: string, baseKey: string): Promise<ImagesResponse> {
    const query = new URLSearchParams({ sourceDigest, baseKey });
    const path = `/api/environments/${encodeURIComponent(environment)}/images?${query.toString()}`;
    return parse(imagesSchema, await this.call("GET", path), "GET /api/environments/{env}/images");
  }

  /** `GET /api/builds`: one page of the build history, newest first. */
  async history(query: { environment?: string; limit: number; cursor?: string }): Promise<HistoryPage> {
    const params = new URLSearchParams({ limit: String(query.limit) });
    if (query.environment !== undefined) params.set("env", query.environment);
    if (query.cursor !== undefined) params.set("cursor", query.cursor);
    const body = await this.call("GET", `/api/builds?${params.toString()}`);
    // Checked, then kept as sent: --json prints the API's JSON with its fields in their order.
    parse(historyPageSchema, body, "GET /api/builds");
    return body as HistoryPage;
  }

  /** `GET /api/costs`: builder minutes and their cost per day, builder and build. */
  async costs(query: { environment: string | undefined; days: number }): Promise<CostsResponse> {
    const params = new URLSearchParams({ days: String(query.days) });
    if (query.environment !== undefined) params.set("env", query.environment);
    const body = await this.call("GET", `/api/costs?${params.toString()}`);
    parse(costsSchema, body, "GET /api/costs");
    return body as CostsResponse;
  }

  /** `POST /api/environments/{env}/warm`: starts the environment's builder if it is off. */
  async warm(environment: string): Promise<WarmResponse> {
    const path = `/api/environments/${encodeURIComponent(environment)}/warm`;
    return parse(warmSchema, await this.call("POST", path), "POST /api/environments/{env}/warm");
  }

  /** `POST /api/promotions`: starts a promotion (202), or refuses it with the reason. */
  async promote(request: { from: string; to: string; buildId?: string }): Promise<PromotionStarted> {
    return parse(
      promotionStartedSchema,
      await this.call("POST", "/api/promotions", request),
      "POST /api/promotions",
    );
  }

  /** `POST /api/environments/{env}/rollback`. */
  async rollback(environment: string, to: string | undefined): Promise<RollbackStarted> {
    const path = `/api/environments/${encodeURIComponent(environment)}/rollback`;
    return parse(rollbackStartedSchema, await this.call("POST", path, to ? { to } : {}), `POST ${path}`);
  }

  /** `GET /api/promotions/{id}` (promotions and rollbacks). */
  async promotion(id: string): Promise<DeployStatus> {
    const body = await this.call("GET", `/api/promotions/${encodeURIComponent(id)}`);
    return parse(deployStatusSchema, body, "promotion status") as unknown as DeployStatus;
  }

  /** `POST /api/promotions/{id}/approve|reject`. */
  async decide(
    id: string,
    decision: "approve" | "reject",
    reason?: string,
  ): Promise<Record<string, unknown>> {
    const path = `/api/promotions/${encodeURIComponent(id)}/${decision}`;
    return parse(
      z.looseObject({ promotionId: z.string() }),
      await this.call("POST", path, reason ? { reason } : {}),
      `POST ${path}`,
    );
  }

  private async call(method: "GET" | "POST", path: string, body?: unknown): Promise<unknown> {
    return (await this.send(method, path, body)).body;
  }

  /** One request; `waitMs` is how long the server may hold it (a long poll), on top of the timeout. */
  private async send(
    method: "GET" | "POST",
    path: string,
    body?: unknown,
    waitMs = 0,
    signal?: AbortSignal,
  ): Promise<{ response: Response; body: unknown }> {
    // Server-given paths are joined to our base only: the functions key never goes elsewhere.
    if (!relativeUrl.safeParse(path).success) {
      throw new PermanentError(`the API answered with an unexpected URL ${JSON.stringify(path)}`, {
        code: "UnexpectedApiUrl",
      });
    }
    const headers: Record<string, string> = { accept: "application/json", "user-agent": "fast-build-cli" };
    if (this.options.apiKey) headers["x-functions-key"] = this.options.apiKey;
    if (this.options.apiToken) headers.authorization = `Bearer ${this.options.apiToken}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await fetch(`${this.options.baseUrl}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: signal
          ? AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS + waitMs)])
          : AbortSignal.timeout(REQUEST_TIMEOUT_MS + waitMs),
      });
    } catch (error) {
      throw new TransientError(`cannot reach the API at ${this.options.baseUrl}`, {
        code: "ApiUnreachable",
        hint: "Check --api / FASTBUILD_API_URL and your network; is the function app running?",
        cause: error,
      });
    }
    const text = await response.text();
    // 304: the status the caller has is still current (only a long poll asks for it).
    if (response.status === 304) return { response, body: undefined };
    if (response.ok) {
      if (text === "") return { response, body: {} };
      try {
        return { response, body: JSON.parse(text) as unknown };
      } catch {
        throw new PermanentError(`${method} ${path}: the API answered ${response.status} with no JSON`, {
          code: "InvalidApiResponse",
          hint: "Is --api pointing at the fast-build function app?",
        });
      }
    }
    throw apiError(response, text, `${method} ${path}`);
  }
}

function apiError(response: Response, text: string, what: string): FastBuildError {
  let code = `Http${response.status}`;
  let message = `${what} failed with HTTP ${response.status}`;
  let hint: string | undefined;
  try {
    const parsed = errorBodySchema.safeParse(JSON.parse(text));
    if (parsed.success) ({ code, message, hint } = parsed.data.error);
  } catch {
    // Not our JSON (a gateway's HTML page): keep the generic message.
  }
  const details = { code, ...(hint !== undefined ? { hint } : {}) };
  switch (response.status) {
    case 400:
    case 422:
      return new InvalidInputError(message, details);
    case 413:
      return new PayloadTooLargeError(message, details);
    case 401:
    case 403:
      return new UnauthorizedError(message, {
        ...details,
        hint:
          hint ?? "Set FASTBUILD_API_KEY to the function app's key (Azure portal → Function App → App keys).",
      });
    case 404:
      return new NotFoundError(message, details);
    case 409:
      return new ConflictError(message, details);
    default: {
      if (response.status === 429 || response.status >= 500) {
        const retryAfter = Number(response.headers.get("retry-after"));
        return new TransientError(message, {
          ...details,
          ...(retryAfter > 0 ? { retryAfterMs: retryAfter * 1000 } : {}),
        });
      }
      return new PermanentError(message, details);
    }
  }
}

function parse<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new PermanentError(
      `${what}: unexpected answer from the API (${parsed.error.issues[0]?.message ?? "invalid"})`,
      {
        code: "InvalidApiResponse",
        hint: "The CLI and the function app may be different versions; update the CLI.",
      },
    );
  }
  return parsed.data;
}
