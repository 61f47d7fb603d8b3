/**
 * Settings of the `fast-build` command: flags win over the environment (FASTBUILD_API_URL,
 * FASTBUILD_API_KEY, FASTBUILD_ENV; FASTBUILD_CACHE_DIR has no flag). Validated together; every
 * problem is reported in one error. Every command needs the API settings; only `dev` needs an environment (the other commands name
 * a build or list all builders).
 */
import { NAME_PATTERN } from "./index.js";
import { homedir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../core/errors.js";

/** What every command needs to call the API. */
export interface ApiSettings {
  /** API base without a trailing slash, e.g. `https://myapp.azurewebsites.net`. */
  apiUrl: string;
  /** Functions key, sent as `x-functions-key`; unset for a local runtime without keys. */
  apiKey: string | undefined;
  /**
   * FASTBUILD_API_TOKEN: a Microsoft Entra access token for the function app, sent as
   * `Authorization: Bearer`, so App Service authentication knows who calls (approvals need it:
   * e.g. `az account get-access-token --resource <the app's client id> --query accessToken -o tsv`).
   */
  apiToken?: string | undefined;
}

/** The settings of `fast-build dev`. */
export interface CliSettings extends ApiSettings {
  environment: string;
  /** Where the CLI keeps what makes the next build smaller (src/cli/manifestCache.ts). */
  cacheDir: string;
}

export interface CliSettingFlags {
  api?: string | undefined;
  env?: string | undefined;
}

type Env = Readonly<Record<string, string | undefined>>;

/** FASTBUILD_CACHE_DIR, else `$XDG_CACHE_HOME/fast-build`, else `~/.cache/fast-build`. */
export function cacheDir(env: Env = process.env): string {
  if (env.FASTBUILD_CACHE_DIR) return env.FASTBUILD_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "fast-build");
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

const HINT = "Fix the settings listed above (flags or FASTBUILD_* variables), then run again.";

/** Reads and validates the settings of `fast-build dev`; throws one `ConfigError` listing all problems. */
export function loadCliSettings(flags: CliSettingFlags, env: Env = process.env): CliSettings {
  const problems: string[] = [];
  const api = readApiSettings(flags, env, problems);
  const environment = (flags.env ?? env.FASTBUILD_ENV ?? "").trim();
  if (!environment) {
    problems.push("environment: missing; pass --env NAME or set FASTBUILD_ENV");
  } else if (!NAME_PATTERN.test(environment)) {
    problems.push(`environment: ${JSON.stringify(environment)} is not a name (letters, digits, . _ - only)`);
  }
  if (problems.length > 0) throw new ConfigError(problems, HINT);
  return { ...api, environment, cacheDir: cacheDir(env) };
}

/**
 * Reads and validates the API settings alone (the commands other than `dev`): FASTBUILD_ENV is
 * neither needed nor checked. Throws one `ConfigError` listing all problems.
 */
export function loadApiSettings(flags: Pick<CliSettingFlags, "api">, env: Env = process.env): ApiSettings {
  const problems: string[] = [];
  const api = readApiSettings(flags, env, problems);
  if (problems.length > 0) throw new ConfigError(problems, HINT);
  return api;
}

function readApiSettings(flags: Pick<CliSettingFlags, "api">, env: Env, problems: string[]): ApiSettings {
  const rawUrl = (flags.api ?? env.FASTBUILD_API_URL ?? "").trim();
  let apiUrl = "";
  if (!rawUrl) {
    problems.push("API URL: missing; pass --api https://<app>.azurewebsites.net or set FASTBUILD_API_URL");
  } else {
    let url: URL | undefined;
    try {
      url = new URL(rawUrl);
    } catch {
      problems.push(
        `API URL: ${JSON.stringify(rawUrl)} is not a URL; expected e.g. https://<app>.azurewebsites.net`,
      );
    }
    if (url) {
      if (url.protocol !== "https:" && !(url.protocol === "http:" && LOOPBACK.has(url.hostname))) {
        // The functions key travels in a header: never send it in clear text over a network.
        problems.push(`API URL: ${url.origin} must use https (plain http only for 127.0.0.1/localhost)`);
      } else if (url.search || url.hash || url.username || url.password) {
        problems.push(
          "API URL: give only the base (no ?query, #fragment or user:password@); the key goes in FASTBUILD_API_KEY",
        );
      } else {
        apiUrl = url
          .toString()
          .replace(/\/+$/, "")
          .replace(/\/api$/, "");
      }
    }
  }
  const apiKey = env.FASTBUILD_API_KEY?.trim() || undefined;
  if (apiKey !== undefined && /\s/.test(apiKey)) {
    problems.push("FASTBUILD_API_KEY: contains whitespace; copy the function key exactly");
  }
  const apiToken = env.FASTBUILD_API_TOKEN?.trim() || undefined;
  if (apiToken !== undefined && !/^[A-Za-z0-9._~+/=-]+$/.test(apiToken)) {
    problems.push("FASTBUILD_API_TOKEN: not a bearer token (letters, digits and . _ ~ + / = - only)");
  }
  return { apiUrl, apiKey, ...(apiToken ? { apiToken } : {}) };
}
