/**
 * Command-line parsing (node:util parseArgs): commands, flags and build ids. Settings are
 * validated in src/config/cli.ts; a build id is checked here, before any request is sent.
 */
import { NAME_PATTERN } from "../config/index.js";
import { buildIdSchema } from "../core/buildInput.js";
import { InvalidInputError } from "../core/errors.js";
import { CLI_HISTORY_LIMIT, COST_DAYS } from "../core/history.js";
import { type OPTIONS, parseArgv } from "./usage.js";

export { USAGE } from "./usage.js";

const HELP_HINT = "Run `fast-build --help` for the commands and options.";

/** The flag every command takes. */
export interface ApiFlags {
  api: string | undefined;
}

export interface DevFlags extends ApiFlags {
  env: string | undefined;
  dir: string | undefined;
  deploy: boolean;
  rebuildBase: boolean;
  json: boolean;
  follow: boolean;
  /** Send one archive of the whole tree instead of its manifest and the contents the store lacks. */
  archive: boolean;
  /** Print what `fast-build plan` prints and send nothing (no API call). */
  dryRun: boolean;
}

/** `fast-build plan`: `api` given means also ask the API what the registry has. */
export interface PlanFlags extends ApiFlags {
  env: string | undefined;
  dir: string | undefined;
  rebuildBase: boolean;
  json: boolean;
  archive: boolean;
}

export type Command =
  | { command: "help" }
  | { command: "dev"; flags: DevFlags }
  | { command: "plan"; flags: PlanFlags }
  | { command: "follow"; buildId: string; flags: ApiFlags }
  | { command: "status"; buildId: string; flags: ApiFlags & { json: boolean } }
  | { command: "logs"; buildId: string; flags: ApiFlags & { follow: boolean } }
  | { command: "cancel"; buildId: string; flags: ApiFlags }
  | { command: "builders"; flags: ApiFlags & { json: boolean } }
  | { command: "warm"; environment: string; flags: ApiFlags & { json: boolean } }
  | { command: "promote"; from: string; to: string; flags: DeployFlags & { build: string | undefined } }
  | { command: "rollback"; environment: string; flags: DeployFlags & { to: string | undefined } }
  | { command: "approve"; id: string; flags: ApiFlags & { json: boolean } }
  | { command: "reject"; id: string; flags: ApiFlags & { json: boolean; reason: string | undefined } }
  | { command: "promotion"; id: string; flags: ApiFlags & { json: boolean } }
  | { command: "init"; flags: InitFlags }
  | { command: "history"; flags: ApiFlags & { json: boolean; env: string | undefined; limit: number } }
  | { command: "costs"; flags: ApiFlags & { json: boolean; env: string | undefined; days: number } };

/** promote and rollback: print JSON, or return once started. */
export interface DeployFlags extends ApiFlags {
  json: boolean;
  follow: boolean;
}

/** `fast-build init`: offline, no API. */
export interface InitFlags {
  dir: string | undefined;
  binary: string | undefined;
  force: boolean;
  json: boolean;
}

export type CommandName = Exclude<Command["command"], "help">;

type OptionName = keyof typeof OPTIONS;

/** Which options each command takes (besides --help), and whether it names a build. */
const COMMANDS: Record<CommandName, { options: readonly OptionName[]; buildId: boolean; usage: string }> = {
  dev: {
    options: ["env", "api", "dir", "no-deploy", "rebuild-base", "json", "no-follow", "archive", "dry-run"],
    buildId: false,
    usage:
      "fast-build dev [--env NAME] [--dir PATH] [--no-deploy] [--rebuild-base] [--json] [--no-follow] [--archive] [--dry-run]",
  },
  plan: {
    options: ["env", "api", "dir", "rebuild-base", "json", "archive"],
    buildId: false,
    usage: "fast-build plan [--dir PATH] [--archive] [--json] [--api URL --env NAME] [--rebuild-base]",
  },
  follow: { options: ["api"], buildId: true, usage: "fast-build follow <build-id>" },
  status: { options: ["api", "json"], buildId: true, usage: "fast-build status <build-id> [--json]" },
  logs: { options: ["api", "follow"], buildId: true, usage: "fast-build logs <build-id> [--follow]" },
  cancel: { options: ["api"], buildId: true, usage: "fast-build cancel <build-id>" },
  builders: { options: ["api", "json"], buildId: false, usage: "fast-build builders [--json]" },
  warm: { options: ["api", "json"], buildId: false, usage: "fast-build warm <env> [--json]" },
  promote: {
    options: ["api", "build", "json", "no-follow"],
    buildId: false,
    usage: "fast-build promote <from> <to> [--build ID] [--json] [--no-follow]",
  },
  rollback: {
    options: ["api", "to", "json", "no-follow"],
    buildId: false,
    usage: "fast-build rollback <env> [--to REVISION|BUILD] [--json] [--no-follow]",
  },
  approve: { options: ["api", "json"], buildId: false, usage: "fast-build approve <id> [--json]" },
  reject: {
    options: ["api", "json", "reason"],
    buildId: false,
    usage: "fast-build reject <id> [--reason TEXT] [--json]",
  },
  promotion: { options: ["api", "json"], buildId: false, usage: "fast-build promotion <id> [--json]" },
  init: {
    options: ["dir", "binary", "force", "json"],
    buildId: false,
    usage: "fast-build init [--dir PATH] [--binary NAME] [--force] [--json]",
  },
  history: {
    options: ["api", "json", "env", "limit"],
    buildId: false,
    usage: "fast-build history [--env NAME] [--limit N] [--json]",
  },
  costs: {
    options: ["api", "json", "env", "days"],
    buildId: false,
    usage: "fast-build costs [--days N] [--env NAME] [--json]",
  },
};

function isCommandName(name: string): name is CommandName {
  return Object.hasOwn(COMMANDS, name);
}

/** The hint of an argument error: the command's own usage line when the command is known. */
function usageHint(name?: CommandName): string {
  return name ? `usage: ${COMMANDS[name].usage} (\`fast-build --help\` lists every command)` : HELP_HINT;
}

function usageError(message: string, name?: CommandName): InvalidInputError {
  return new InvalidInputError(message, { code: "InvalidArguments", hint: usageHint(name) });
}

/** Parses argv (without node and script); throws `InvalidInputError` with the usage as hint. */
export function parseCommand(argv: readonly string[]): Command {
  let parsed;
  try {
    // No defaults: an option left `undefined` was not given, so a command can refuse the others.
    parsed = parseArgv(argv);
  } catch (error) {
    throw usageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help || positionals[0] === "help") return { command: "help" };
  const [name, ...rest] = positionals;
  if (name === undefined) throw usageError("missing command");
  if (!isCommandName(name)) throw usageError(`unknown command: ${positionals.join(" ")}`);
  const spec = COMMANDS[name];

  for (const option of Object.keys(values) as OptionName[]) {
    if (option === "help" || values[option] === undefined || spec.options.includes(option)) continue;
    throw usageError(`--${option} is not an option of \`fast-build ${name}\``, name);
  }
  for (const option of ["env", "api", "dir", "binary"] as const) {
    if (values[option] !== undefined && values[option].trim() === "") {
      throw usageError(`--${option} needs a value`, name);
    }
  }
  const api = { api: values.api };
  const json = values.json ?? false;

  if (name === "warm") {
    return { command: "warm", environment: parseEnvironment(rest), flags: { ...api, json } };
  }
  if (
    name === "promote" ||
    name === "rollback" ||
    name === "approve" ||
    name === "reject" ||
    name === "promotion"
  ) {
    return parseDeployCommand(name, rest, values, api);
  }
  if (!spec.buildId) {
    if (rest.length > 0) throw usageError(`unexpected argument to ${name}: ${rest.join(" ")}`, name);
    if (name === "builders") return { command: "builders", flags: { ...api, json } };
    if (name === "init") {
      return {
        command: "init",
        flags: { dir: values.dir, binary: values.binary, force: values.force ?? false, json },
      };
    }
    if (name === "history" || name === "costs") {
      const env = values.env === undefined ? undefined : parseEnvironment([values.env], name);
      if (name === "history") {
        const limit = wholeNumber("limit", values.limit, CLI_HISTORY_LIMIT, name);
        return { command: "history", flags: { ...api, json, env, limit } };
      }
      const days = wholeNumber("days", values.days, COST_DAYS, name);
      return { command: "costs", flags: { ...api, json, env, days } };
    }
    if (name === "plan") {
      // Offline without --api: an environment would be silently ignored, so say what it needs.
      if (values.env !== undefined && values.api === undefined) {
        throw usageError("--env asks the API, so it needs --api URL (plan is offline without it)", name);
      }
      return {
        command: "plan",
        flags: {
          ...api,
          env: values.env,
          dir: values.dir,
          rebuildBase: values["rebuild-base"] ?? false,
          json,
          archive: values.archive ?? false,
        },
      };
    }
    return {
      command: "dev",
      flags: {
        ...api,
        env: values.env,
        dir: values.dir,
        deploy: !values["no-deploy"],
        rebuildBase: values["rebuild-base"] ?? false,
        json,
        follow: !values["no-follow"],
        archive: values.archive ?? false,
        dryRun: values["dry-run"] ?? false,
      },
    };
  }

  if (rest.length !== 1) {
    throw usageError(
      rest.length === 0
        ? `\`fast-build ${name}\` needs a build id`
        : `\`fast-build ${name}\` takes one build id, got ${rest.length}: ${rest.join(" ")}`,
      name,
    );
  }
  const buildId = parseBuildId(rest[0] ?? "", name);
  switch (name) {
    case "status":
      return { command: name, buildId, flags: { ...api, json } };
    case "logs":
      return { command: name, buildId, flags: { ...api, follow: values.follow ?? false } };
    case "follow":
    case "cancel":
      return { command: name, buildId, flags: api };
    default:
      throw new Error(`unreachable: ${name}`);
  }
}

/**
 * The one `<env>` of `fast-build warm`. Only its shape is checked here (the API knows the
 * environments and answers 404 with their list); `--env` is refused by the option table, so the
 * name comes one way only.
 */
function parseEnvironment(rest: readonly string[], command: CommandName = "warm"): string {
  if (rest.length !== 1) {
    throw usageError(
      rest.length === 0
        ? "`fast-build warm` needs an environment, e.g. `fast-build warm dev`"
        : `\`fast-build warm\` takes one environment, got ${rest.length}: ${rest.join(" ")}`,
      "warm",
    );
  }
  const env = rest[0] ?? "";
  if (!NAME_PATTERN.test(env)) {
    const shown = env.length > 70 ? `${env.slice(0, 70)}…` : env;
    throw usageError(
      `${JSON.stringify(shown)} is not an environment name (letters, digits, . _ - only)`,
      command,
    );
  }
  return env;
}

/** An environment name given as an argument of `command`. */
function environmentArgument(raw: string, command: CommandName): string {
  if (NAME_PATTERN.test(raw)) return raw;
  const shown = raw.length > 70 ? `${raw.slice(0, 70)}…` : raw;
  throw usageError(
    `${JSON.stringify(shown)} is not an environment name (letters, digits, . _ - only)`,
    command,
  );
}

/** A promotion (`p-…`) or rollback (`r-…`) id, as `fast-build promote` / `rollback` print it. */
const DEPLOY_ID = /^[pr]-\d{14}-[0-9a-f]{8}$/;

type Values = ReturnType<typeof parseArgv>["values"];

/** promote, rollback, approve, reject, promotion: their arguments, checked before any request. */
function parseDeployCommand(
  name: "promote" | "rollback" | "approve" | "reject" | "promotion",
  rest: readonly string[],
  values: Values,
  api: ApiFlags,
): Command {
  const json = values.json ?? false;
  const want = name === "promote" ? 2 : 1;
  if (rest.length !== want) {
    const what =
      name === "promote"
        ? "two environments, <from> and <to>"
        : name === "rollback"
          ? "an environment"
          : "a promotion or rollback id";
    throw usageError(
      `\`fast-build ${name}\` needs ${what}, got ${rest.length}${rest.length ? `: ${rest.join(" ")}` : ""}`,
      name,
    );
  }
  for (const option of ["build", "to", "reason"] as const) {
    if (values[option] !== undefined && values[option].trim() === "") {
      throw usageError(`--${option} needs a value`, name);
    }
  }
  if (name === "promote") {
    const from = environmentArgument(rest[0] ?? "", name);
    const to = environmentArgument(rest[1] ?? "", name);
    if (from === to)
      throw usageError(`<from> and <to> are both ${from}: promote to another environment`, name);
    const build = values.build === undefined ? undefined : parseBuildId(values.build, name);
    return { command: name, from, to, flags: { ...api, json, follow: !values["no-follow"], build } };
  }
  if (name === "rollback") {
    const environment = environmentArgument(rest[0] ?? "", name);
    const to = values.to;
    if (to !== undefined && !/^[A-Za-z0-9][A-Za-z0-9-]{0,99}$/.test(to)) {
      throw usageError(
        `--to ${JSON.stringify(to.slice(0, 70))} is neither a revision name nor a build id`,
        name,
      );
    }
    return { command: name, environment, flags: { ...api, json, follow: !values["no-follow"], to } };
  }
  const id = rest[0] ?? "";
  if (!DEPLOY_ID.test(id)) {
    throw new InvalidInputError(`${JSON.stringify(id.slice(0, 70))} is not a promotion or rollback id`, {
      code: "InvalidPromotionId",
      hint: `It is what fast-build promote or rollback printed, e.g. p-20260314092653-3f9a0c1d; ${usageHint(name)}`,
    });
  }
  if (name === "reject") return { command: name, id, flags: { ...api, json, reason: values.reason } };
  return { command: name, id, flags: { ...api, json } };
}

/** `--limit` / `--days`: a whole number in the range, else a usage error that names it. */
function wholeNumber(
  option: "limit" | "days",
  raw: string | undefined,
  range: { min: number; max: number; default: number },
  command: CommandName,
): number {
  if (raw === undefined) return range.default;
  const value = /^[0-9]{1,7}$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < range.min || value > range.max) {
    const shown = raw.length > 20 ? `${raw.slice(0, 20)}…` : raw;
    throw usageError(
      `--${option} must be a whole number from ${range.min} to ${range.max}, got ${JSON.stringify(shown)}`,
      command,
    );
  }
  return value;
}

/**
 * Checks a build id against the API's own format (`buildIdSchema`) before it goes into a URL:
 * a typo gets a clear message here instead of a 404, and nothing odd reaches the request path.
 */
export function parseBuildId(raw: string, command?: CommandName): string {
  const parsed = buildIdSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const shown = raw.length > 70 ? `${raw.slice(0, 70)}…` : raw;
  throw new InvalidInputError(
    `${JSON.stringify(shown)} is not a build id (${parsed.error.issues[0]?.message ?? "invalid"})`,
    {
      code: "InvalidBuildId",
      hint: `A build id is what \`fast-build dev\` prints, e.g. 20260314092653-3f9a0c1d2e; ${usageHint(command)}`,
    },
  );
}
