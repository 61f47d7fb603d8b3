/**
 * The one module that reads settings. Everything is read once, validated together, and every
 * problem is reported in one error, so a misconfigured app fails at start with a full list
 * instead of one surprise per request. Functions take a `Config` as a parameter, so tests pass
 * their own.
 */
import { warmSchema } from "../core/warmHours.js";
import { z } from "zod";
import { oneLine } from "../core/logText.js";
import { ConfigError } from "../core/errors.js";
import { builderKey, builderVm } from "../core/buildInput.js";
import {
  DEFAULT_MAX_UPLOAD_BYTES,
  EXTRACT_BYTES_FACTOR,
  EXTRACT_LIMITS,
  type ExtractLimits,
} from "../core/extractLimits.js";
import { BINARY_NAME, CALLBACK_BASE_URL, IMAGE_REPOSITORY, REGISTRY, ruleSchema } from "../core/rules.js";
import { vmRatesSchema, type VmRates } from "../core/history.js";
import { DEFAULT_APPROVAL_HOURS, MAX_APPROVAL_HOURS } from "../core/promotion.js";

function intSettingShape(min: number, max: number) {
  return z.number().int("a whole number").min(min).max(max);
}

/** Names of environments and Azure resources in settings (also what the CLI accepts for --env). */
/** What the idle shutdown may do to a builder; `deallocate` when an environment does not say. */
export const IDLE_SHUTDOWN_ACTIONS = ["deallocate", "hibernate"] as const;
export type IdleShutdownAction = (typeof IDLE_SHUTDOWN_ACTIONS)[number];

export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;
const name = z.string().regex(NAME_PATTERN, "letters, digits, . _ - only");

export const environmentSchema = z.object({
  subscriptionId: z.string().regex(/^[0-9a-fA-F-]{36}$/, "a subscription GUID"),
  resourceGroup: name,
  builderVm: name,
  /** ACR login server, e.g. `myregistry.azurecr.io` (or `127.0.0.1:5000` locally), lower-case. */
  registry: ruleSchema(REGISTRY),
  imageRepository: ruleSchema(IMAGE_REPOSITORY),
  containerApp: name,
  containerName: name,
  /** Resource group of the container app when it differs from the builder's. */
  containerAppResourceGroup: name.optional(),
  /**
   * The cargo binary the image packages, for builds whose request names none (CLIs before the
   * project file, or a fast-build.toml without `[build] binary`); the project file's wins.
   */
  binaryName: ruleSchema(BINARY_NAME).optional(),
  /**
   * The registry as Resource Manager names it (ACR's import, `fast-build promote`): needed by an
   * environment promoted from or to. `subscriptionId` defaults to the environment's.
   */
  registryResource: z
    .object({
      subscriptionId: z
        .string()
        .regex(/^[0-9a-fA-F-]{36}$/, "a subscription GUID")
        .optional(),
      resourceGroup: name,
      name: z
        .string()
        .regex(/^[A-Za-z0-9]{5,50}$/, "5-50 letters and digits (ACR's rule for registry names)"),
    })
    .strict()
    .optional(),
  /**
   * Promotions into this environment wait for one of `approvers` (user names or object ids, as App
   * Service authentication reports them; FASTBUILD_AUTH=appservice) to approve, at most `timeoutHours`.
   */
  approval: z
    .object({
      required: z.boolean(),
      approvers: z.array(z.string().min(1).max(200)).max(100).default([]),
      timeoutHours: intSettingShape(1, MAX_APPROVAL_HOURS).default(DEFAULT_APPROVAL_HOURS),
    })
    .strict()
    .refine((a) => !a.required || a.approvers.length > 0, {
      message: "a required approval needs at least one approver",
      path: ["approvers"],
    })
    .optional(),
  /**
   * What the idle shutdown does to the builder (default `deallocate`): `hibernate` keeps its memory
   * on the OS disk so the next start resumes instead of booting (the VM needs
   * `additionalCapabilities.hibernationEnabled`; Azure's refusal falls back to a deallocate).
   */
  idleShutdown: z.enum(IDLE_SHUTDOWN_ACTIONS).optional(),
  /**
   * Whether a new build of a branch cancels the older builds of the same branch still queued for
   * this builder (src/core/supersede.ts). Unset: on, except for an environment whose name reads as
   * production (`prod`, `production`, `prd` or `live` as a word of the name), where it is off.
   */
  supersede: z
    .boolean({ error: "true or false: whether a new build of a branch cancels its older queued builds" })
    .optional(),
  /**
   * The registry cache every builder shares (`<imageRepository>-cache` in `registry`, see
   * src/core/rules.ts registryCacheRefs): on unless `false`.
   */
  registryCache: z
    .boolean({ error: "true or false (false: the builder builds without the shared registry cache)" })
    .optional(),
  /**
   * Keep `builders` builders up during working hours, e.g. `{ "builders": 1, "hours": { "timeZone":
   * "Europe/Berlin", "days": "Mon-Fri", "from": "08:00", "to": "18:00" } }`: the idle shutdown
   * leaves them running then (src/core/warmHours.ts). One builder per environment today: 0 or 1.
   */
  warm: warmSchema.optional(),
});
export type EnvironmentConfig = z.infer<typeof environmentSchema> & { name: string };

export type ComputeProfile = "latest" | "2020-09-01-hybrid";

/** One Resource Manager endpoint and, when set, the token audience it accepts. */
export interface ArmEndpointConfig {
  endpoint: string;
  /** Unset: Azure public cloud's for its endpoint, else read from the endpoint's `/metadata/endpoints`. */
  audience: string | undefined;
}

/** Azure public cloud's Resource Manager (its tokens' audience too). */
export const PUBLIC_ARM_ENDPOINT = "https://management.azure.com";

export interface Config {
  environments: Readonly<Record<string, EnvironmentConfig>>;
  storage: {
    /** Connection string (Azurite, or a key-based account) … */
    connectionString: string | undefined;
    /** … or the account's blob/table endpoints, used with a managed identity. */
    blobEndpoint: string | undefined;
    tableEndpoint: string | undefined;
    sourceContainer: string;
    logContainer: string;
    /** Content-addressed source: packs, indexes, pending requests and plans (src/core/sourceManifest.ts). */
    contentContainer: string;
    activityTable: string;
  };
  arm: {
    /** The builder VMs' Resource Manager (Azure Stack Hub's with the hybrid profile). */
    compute: ArmEndpointConfig;
    /** Container Apps' Resource Manager: public Azure by default (Azure Stack Hub has no Container Apps). */
    containerApps: ArmEndpointConfig;
    computeProfile: ComputeProfile;
  };
  credentials: {
    /** Client id of a user-assigned managed identity; unset = system-assigned / developer login. */
    managedIdentityClientId: string | undefined;
  };
  builds: {
    maxUploadBytes: number;
    uploadSasMinutes: number;
    sourceTimeoutMinutes: number;
    buildTimeoutMinutes: number;
    deployTimeoutMinutes: number;
    leaseMinutes: number;
    idleShutdownMinutes: number;
    /** What the builder's extractor allows (src/core/extractLimits.ts); sent with every build. */
    extractLimits: ExtractLimits;
  };
  /** Base URL the builder VM calls back (e.g. `https://myapp.azurewebsites.net`). */
  publicBaseUrl: string | undefined;
  taskHubName: string;
  /**
   * `appservice`: App Service authentication (Easy Auth) is on, so the `x-ms-client-principal*`
   * headers are the platform's (it strips client-sent ones) and name the caller; `none`: no caller
   * identity is known, and approvals are refused.
   */
  auth: { mode: "none" | "appservice" };
  /** Build history and builder costs (`GET /api/builds`, `GET /api/costs`; src/core/history.ts). */
  history: {
    table: string;
    /** Per VM size: running and disk (deallocated, hibernated) price per hour. */
    vmRates: VmRates;
    currency: string;
  };
}

type Env = Readonly<Record<string, string | undefined>>;

const intSetting = (min: number, max: number) => z.coerce.number().int(`a whole number`).min(min).max(max);

// The resource, not the scope: the app appends `/.default` itself.
const audienceSetting = z
  .string()
  .min(1)
  .refine((value) => !value.endsWith("/.default"), "the audience without '/.default'");

const settingsSchema = z.object({
  FASTBUILD_ENVIRONMENTS: z.string().min(1, "required: a JSON object of environments"),
  AzureWebJobsStorage: z.string().optional(),
  FASTBUILD_BLOB_ENDPOINT: z.url().optional(),
  FASTBUILD_TABLE_ENDPOINT: z.url().optional(),
  FASTBUILD_SOURCE_CONTAINER: z
    .string()
    .regex(/^[a-z0-9](-?[a-z0-9]){2,62}$/)
    .default("build-sources"),
  FASTBUILD_LOG_CONTAINER: z
    .string()
    .regex(/^[a-z0-9](-?[a-z0-9]){2,62}$/)
    .default("build-logs"),
  FASTBUILD_CONTENT_CONTAINER: z
    .string()
    .regex(/^[a-z0-9](-?[a-z0-9]){2,62}$/)
    .default("source-content"),
  FASTBUILD_ACTIVITY_TABLE: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9]{2,62}$/)
    .default("builders"),
  FASTBUILD_COMPUTE_ENDPOINT: z.url().optional(),
  /** The old name of FASTBUILD_COMPUTE_ENDPOINT (it no longer sets the Container Apps endpoint). */
  FASTBUILD_ARM_ENDPOINT: z.url().optional(),
  FASTBUILD_COMPUTE_AUDIENCE: audienceSetting.optional(),
  FASTBUILD_CONTAINERAPPS_ENDPOINT: z.url().default(PUBLIC_ARM_ENDPOINT),
  FASTBUILD_CONTAINERAPPS_AUDIENCE: audienceSetting.optional(),
  FASTBUILD_COMPUTE_PROFILE: z.enum(["latest", "2020-09-01-hybrid"]).default("latest"),
  AZURE_CLIENT_ID: z.string().optional(),
  FASTBUILD_MAX_UPLOAD_BYTES: intSetting(1, 10 * 1024 ** 3).default(DEFAULT_MAX_UPLOAD_BYTES),
  [EXTRACT_BYTES_FACTOR.setting]: intSetting(EXTRACT_BYTES_FACTOR.min, EXTRACT_BYTES_FACTOR.max).default(
    EXTRACT_BYTES_FACTOR.default,
  ),
  ...Object.fromEntries(
    EXTRACT_LIMITS.filter((limit) => limit.key !== "maxBytes").map((limit) => [
      limit.setting,
      intSetting(limit.min, limit.max).default(limit.default),
    ]),
  ),
  // A SAS that outlives the upload is a standing write grant: keep it short (≤ 30 min).
  FASTBUILD_UPLOAD_SAS_MINUTES: intSetting(1, 30).default(15),
  FASTBUILD_SOURCE_TIMEOUT_MINUTES: intSetting(1, 120).default(20),
  FASTBUILD_BUILD_TIMEOUT_MINUTES: intSetting(1, 240).default(60),
  FASTBUILD_DEPLOY_TIMEOUT_MINUTES: intSetting(1, 120).default(15),
  FASTBUILD_LEASE_MINUTES: intSetting(1, 240).default(10),
  FASTBUILD_IDLE_SHUTDOWN_MINUTES: intSetting(1, 24 * 60).default(30),
  // build.sh refuses a plain-http callback to anything but loopback: refuse it here, at start.
  FASTBUILD_PUBLIC_BASE_URL: z.url().pipe(ruleSchema(CALLBACK_BASE_URL)).optional(),
  /** Set by App Service / Functions: the app's own host name, the default callback base. */
  WEBSITE_HOSTNAME: z.string().optional(),
  TASK_HUB_NAME: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9]{2,44}$/)
    .default("fastbuild"),
  FASTBUILD_AUTH: z.enum(["none", "appservice"]).default("none"),
  FASTBUILD_HISTORY_TABLE: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9]{2,62}$/)
    .default("buildhistory"),
  FASTBUILD_VM_RATES: z.string().default("{}"),
  FASTBUILD_COST_CURRENCY: z
    .string()
    .regex(/^[A-Z]{3}$/, "a three-letter currency code such as USD")
    .default("USD"),
});

/** Reads and validates every setting; throws one `ConfigError` listing all problems. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const parsed = settingsSchema.safeParse(env);
  const rawEnvironments = env.FASTBUILD_ENVIRONMENTS;
  const environments = rawEnvironments ? parseEnvironments(rawEnvironments, problems) : {};
  // Checked on the raw values, so it is reported together with any other problem.
  const { FASTBUILD_ARM_ENDPOINT: oldName, FASTBUILD_COMPUTE_ENDPOINT: newName } = env;
  if (oldName && newName && !sameUrl(oldName, newName)) {
    problems.push(
      "FASTBUILD_ARM_ENDPOINT: the old name of FASTBUILD_COMPUTE_ENDPOINT, set to a different URL: keep only FASTBUILD_COMPUTE_ENDPOINT",
    );
  }
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(`${issue.path.join(".")}: ${issue.message}`);
    throw new ConfigError(problems);
  }
  const s = parsed.data;
  if (!s.AzureWebJobsStorage && !s.FASTBUILD_BLOB_ENDPOINT) {
    problems.push("AzureWebJobsStorage or FASTBUILD_BLOB_ENDPOINT: one is required");
  }
  if (s.FASTBUILD_BLOB_ENDPOINT && !s.FASTBUILD_TABLE_ENDPOINT) {
    problems.push("FASTBUILD_TABLE_ENDPOINT: required with FASTBUILD_BLOB_ENDPOINT");
  }
  const computeEndpoint = s.FASTBUILD_COMPUTE_ENDPOINT ?? s.FASTBUILD_ARM_ENDPOINT ?? PUBLIC_ARM_ENDPOINT;
  checkIdleShutdown(environments, s.FASTBUILD_COMPUTE_PROFILE, problems);
  const vmRates = parseVmRates(s.FASTBUILD_VM_RATES, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    environments,
    storage: {
      connectionString: s.AzureWebJobsStorage,
      blobEndpoint: s.FASTBUILD_BLOB_ENDPOINT,
      tableEndpoint: s.FASTBUILD_TABLE_ENDPOINT,
      sourceContainer: s.FASTBUILD_SOURCE_CONTAINER,
      logContainer: s.FASTBUILD_LOG_CONTAINER,
      contentContainer: s.FASTBUILD_CONTENT_CONTAINER,
      activityTable: s.FASTBUILD_ACTIVITY_TABLE,
    },
    arm: {
      compute: { endpoint: trimUrl(computeEndpoint), audience: s.FASTBUILD_COMPUTE_AUDIENCE },
      containerApps: {
        endpoint: trimUrl(s.FASTBUILD_CONTAINERAPPS_ENDPOINT),
        audience: s.FASTBUILD_CONTAINERAPPS_AUDIENCE,
      },
      computeProfile: s.FASTBUILD_COMPUTE_PROFILE,
    },
    credentials: { managedIdentityClientId: s.AZURE_CLIENT_ID },
    builds: {
      maxUploadBytes: s.FASTBUILD_MAX_UPLOAD_BYTES,
      uploadSasMinutes: s.FASTBUILD_UPLOAD_SAS_MINUTES,
      sourceTimeoutMinutes: s.FASTBUILD_SOURCE_TIMEOUT_MINUTES,
      buildTimeoutMinutes: s.FASTBUILD_BUILD_TIMEOUT_MINUTES,
      deployTimeoutMinutes: s.FASTBUILD_DEPLOY_TIMEOUT_MINUTES,
      leaseMinutes: s.FASTBUILD_LEASE_MINUTES,
      idleShutdownMinutes: s.FASTBUILD_IDLE_SHUTDOWN_MINUTES,
      extractLimits: extractLimits(s),
    },
    publicBaseUrl:
      (s.FASTBUILD_PUBLIC_BASE_URL && trimUrl(s.FASTBUILD_PUBLIC_BASE_URL)) ??
      (s.WEBSITE_HOSTNAME ? `https://${s.WEBSITE_HOSTNAME}` : undefined),
    taskHubName: s.TASK_HUB_NAME,
    auth: { mode: s.FASTBUILD_AUTH },
    history: { table: s.FASTBUILD_HISTORY_TABLE, vmRates, currency: s.FASTBUILD_COST_CURRENCY },
  };
}

/**
 * `idleShutdown: "hibernate"` needs the deallocate's `hibernate` parameter (Compute api-version
 * 2021-03-01 and later), which the Azure Stack Hub profile (2020-06-01) lacks; and environments
 * sharing one builder must agree on what its idle shutdown does.
 */
function checkIdleShutdown(
  environments: Readonly<Record<string, EnvironmentConfig>>,
  profile: ComputeProfile,
  problems: string[],
): void {
  const byBuilder = new Map<string, { env: string; action: IdleShutdownAction }>();
  for (const env of Object.values(environments)) {
    const action = env.idleShutdown ?? "deallocate";
    if (action === "hibernate" && profile !== "latest") {
      problems.push(
        `FASTBUILD_ENVIRONMENTS.${env.name}.idleShutdown: "hibernate" needs Compute api-version 2021-03-01 or later; the ${profile} profile (FASTBUILD_COMPUTE_PROFILE, Azure Stack Hub, api-version 2020-06-01) cannot hibernate: set "deallocate" or remove the setting`,
      );
    }
    const builder = builderKey(builderVm(env));
    const other = byBuilder.get(builder);
    if (other && other.action !== action) {
      problems.push(
        `FASTBUILD_ENVIRONMENTS.${env.name}.idleShutdown: "${action}", but environment ${other.env} shares builder ${env.builderVm} with "${other.action}": set the same idleShutdown on both`,
      );
    }
    if (!other) byBuilder.set(builder, { env: env.name, action });
  }
}

/** `FASTBUILD_VM_RATES`: `{"Standard_D4s_v5": {"perHour": 0.192, "diskPerHour": 0.0065}}`. */
function parseVmRates(text: string, problems: string[]): VmRates {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    problems.push(
      'FASTBUILD_VM_RATES: not valid JSON (e.g. {"Standard_D4s_v5":{"perHour":0.192,"diskPerHour":0.0065}})',
    );
    return {};
  }
  const parsed = vmRatesSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) {
    const path = issue.path.map((p) => `.${String(p)}`).join("");
    // zod names a bad record key only as "Invalid key in record".
    const message =
      issue.code === "invalid_key"
        ? "not a VM size: use Azure's name, a VM size such as Standard_D4s_v5"
        : issue.message;
    problems.push(`FASTBUILD_VM_RATES${path}: ${message}`);
  }
  return {};
}

function extractLimits(settings: Readonly<Record<string, unknown>>): ExtractLimits {
  const value = (setting: string) => settings[setting] as number;
  const factor = value(EXTRACT_BYTES_FACTOR.setting);
  return Object.fromEntries(
    EXTRACT_LIMITS.map((limit) => [
      limit.key,
      limit.key === "maxBytes" ? factor * value("FASTBUILD_MAX_UPLOAD_BYTES") : value(limit.setting),
    ]),
  ) as Record<keyof ExtractLimits, number>;
}

function trimUrl(url: string): string {
  return url.replace(/\/+$/, "");
}

function sameUrl(a: string, b: string): boolean {
  return trimUrl(a).toLowerCase() === trimUrl(b).toLowerCase();
}

function parseEnvironments(text: string, problems: string[]): Record<string, EnvironmentConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    problems.push("FASTBUILD_ENVIRONMENTS: not valid JSON");
    return {};
  }
  const shape = z.record(name, environmentSchema).safeParse(raw);
  if (!shape.success) {
    for (const issue of shape.error.issues) {
      problems.push(`FASTBUILD_ENVIRONMENTS.${issue.path.join(".")}: ${issue.message}`);
    }
    return {};
  }
  if (Object.keys(shape.data).length === 0) problems.push("FASTBUILD_ENVIRONMENTS: define at least one");
  return Object.fromEntries(Object.entries(shape.data).map(([key, value]) => [key, { ...value, name: key }]));
}

/** `sig=…` in a SAS URL, `AccountKey=…` / `SharedAccessSignature=…` in a connection string. */
const SECRET = /(AccountKey|SharedAccessSignature|sig)=([^;&\s"']+)/gi;
/** The same inside a URL-encoded URL (a SAS in another URL's query): `sig%3D…` up to `%26`. */
const ENCODED_SECRET = /(AccountKey|SharedAccessSignature|sig)%3D(.+?)(?=%26|%3B|[&;\s"']|$)/gi;
/** A secret as a JSON member: `"sig":"…"`, `"callbackToken":"…"`, `"x-fastbuild-token":"…"`. */
const JSON_SECRET =
  /"(sig|accountKey|callbackToken|token|access_token|refresh_token|password|x-fastbuild-token|authorization)"(\s*:\s*)"(?:[^"\\]|\\.)*"/gi;
/** The callback token as a header (`x-fastbuild-token: …`) or any `Bearer …` / `Basic …` credential. */
const TOKEN_HEADER = /(x-fastbuild-token)(\s*[:=]\s*)[^\s,;"']+/gi;
const AUTH_SCHEME = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/g;

/**
 * Hides keys, signatures and tokens in any string (connection strings, SAS URLs, plain or
 * URL-encoded, JSON bodies, token headers) before it is logged.
 */
export function redact(text: string): string {
  return text
    .replace(SECRET, "$1=***")
    .replace(ENCODED_SECRET, "$1%3D***")
    .replace(JSON_SECRET, '"$1"$2"***"')
    .replace(TOKEN_HEADER, "$1$2***")
    .replace(AUTH_SCHEME, "$1 ***");
}

/**
 * What every log sink writes: secrets redacted, and on one line (a client's newline cannot start
 * a log line of its own; see core/logText.ts).
 */
export function logLine(text: string): string {
  return oneLine(redact(text));
}

/** A log with `info`/`warn`/`error` (an `InvocationContext` is one). */
export interface LogSink {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** `sink`, writing each message through {@link logLine}. */
export function safeLog(sink: LogSink): LogSink {
  return {
    info: (message) => sink.info(logLine(message)),
    warn: (message) => sink.warn(logLine(message)),
    error: (message) => sink.error(logLine(message)),
  };
}

/** The config as it may be logged. */
export function redactConfig(config: Config): Config {
  return {
    ...config,
    storage: {
      ...config.storage,
      connectionString: config.storage.connectionString && redact(config.storage.connectionString),
    },
  };
}
