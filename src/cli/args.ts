/**
 * Command-line parsing (node:util parseArgs): commands, flags and build ids. Settings are
 * validated in src/config/cli.ts; a build id is checked here, before any request is sent.
 */
import { parseArgs } from "node:util";
import { buildIdSchema } from "../core/buildInput.js";
import { InvalidInputError } from "../core/errors.js";

export const USAGE = `usage: fast-build <command> [options]

commands:
  dev                   archive the current folder, upload it, build it on the builder VM, deploy it
  follow <build-id>     follow a build from now on: its log, phases and summary; Ctrl-C leaves it
                        running (exit code: as for dev, by the build's final phase)
  status <build-id>     print the build's status once
  logs <build-id>       print the build's log
  cancel <build-id>     cancel the build (exit 0 also when it had already ended)
  builders              list the builder VMs: power state, lease holder, queue, idle shutdown

dev options:
  --env NAME        environment to build for (or FASTBUILD_ENV)
  --dir PATH        project folder (default: the current folder)
  --no-deploy       build and push the image, do not deploy it
  --rebuild-base    rebuild the dependency base image even if cached
  --json            print the final build status as JSON on stdout
  --no-follow       return after the upload, do not wait for the build

other options:
  --json            status, builders: print the API's JSON on stdout
  --follow          logs: keep printing until the build has ended

every command:
  --api URL         function app URL (or FASTBUILD_API_URL); key in FASTBUILD_API_KEY
  -h, --help        show this help

A build id is what \`fast-build dev\` prints, e.g. 20260314092653-3f9a0c1d2e.
exit codes: 0 succeeded, 1 failed, 2 bad input or settings (or no such build), 3 cancelled,
            4 timed out, 130 interrupted`;

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
}

export type Command =
  | { command: "help" }
  | { command: "dev"; flags: DevFlags }
  | { command: "follow"; buildId: string; flags: ApiFlags }
  | { command: "status"; buildId: string; flags: ApiFlags & { json: boolean } }
  | { command: "logs"; buildId: string; flags: ApiFlags & { follow: boolean } }
  | { command: "cancel"; buildId: string; flags: ApiFlags }
  | { command: "builders"; flags: ApiFlags & { json: boolean } };

export type CommandName = Exclude<Command["command"], "help">;

const OPTIONS = {
  env: { type: "string" },
  api: { type: "string" },
  dir: { type: "string" },
  // Node 20's parseArgs has no `allowNegative`: the negations are flags of their own.
  "no-deploy": { type: "boolean" },
  "rebuild-base": { type: "boolean" },
  json: { type: "boolean" },
  "no-follow": { type: "boolean" },
  follow: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

type OptionName = keyof typeof OPTIONS;

/** Which options each command takes (besides --help), and whether it names a build. */
const COMMANDS: Record<CommandName, { options: readonly OptionName[]; buildId: boolean; usage: string }> = {
  dev: {
    options: ["env", "api", "dir", "no-deploy", "rebuild-base", "json", "no-follow"],
    buildId: false,
    usage: "fast-build dev [--env NAME] [--dir PATH] [--no-deploy] [--rebuild-base] [--json] [--no-follow]",
  },
  follow: { options: ["api"], buildId: true, usage: "fast-build follow <build-id>" },
  status: { options: ["api", "json"], buildId: true, usage: "fast-build status <build-id> [--json]" },
  logs: { options: ["api", "follow"], buildId: true, usage: "fast-build logs <build-id> [--follow]" },
  cancel: { options: ["api"], buildId: true, usage: "fast-build cancel <build-id>" },
  builders: { options: ["api", "json"], buildId: false, usage: "fast-build builders [--json]" },
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
    parsed = parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: OPTIONS });
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
  for (const option of ["env", "api", "dir"] as const) {
    if (values[option] !== undefined && values[option].trim() === "") {
      throw usageError(`--${option} needs a value`, name);
    }
  }
  const api = { api: values.api };
  const json = values.json ?? false;

  if (!spec.buildId) {
    if (rest.length > 0) throw usageError(`unexpected argument to ${name}: ${rest.join(" ")}`, name);
    if (name === "builders") return { command: "builders", flags: { ...api, json } };
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
