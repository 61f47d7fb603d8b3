/** Command-line parsing (node:util parseArgs): flags only, settings are validated in src/config/cli.ts. */
import { parseArgs } from "node:util";
import { InvalidInputError } from "../core/errors.js";

export const USAGE = `usage: fast-build dev [options]

Archives the current folder, uploads it, builds it on the builder VM and deploys it.

options:
  --env NAME        environment to build for (or FASTBUILD_ENV)
  --api URL         function app URL (or FASTBUILD_API_URL); key in FASTBUILD_API_KEY
  --dir PATH        project folder (default: the current folder)
  --no-deploy       build and push the image, do not deploy it
  --rebuild-base    rebuild the dependency base image even if cached
  --json            print the final build status as JSON on stdout
  --no-follow       return after the upload, do not wait for the build
  -h, --help        show this help

exit codes: 0 succeeded, 1 failed, 2 bad input or settings, 3 cancelled, 4 timed out, 130 interrupted`;

const HELP_HINT = "Run `fast-build --help` for the commands and options.";

export interface DevFlags {
  env: string | undefined;
  api: string | undefined;
  dir: string | undefined;
  deploy: boolean;
  rebuildBase: boolean;
  json: boolean;
  follow: boolean;
}

export type Command = { command: "help" } | { command: "dev"; flags: DevFlags };

/** Parses argv (without node and script); throws `InvalidInputError` with the usage as hint. */
export function parseCommand(argv: readonly string[]): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        env: { type: "string" },
        api: { type: "string" },
        dir: { type: "string" },
        // Node 20's parseArgs has no `allowNegative`: the negations are flags of their own.
        "no-deploy": { type: "boolean", default: false },
        "rebuild-base": { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        "no-follow": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    throw new InvalidInputError(error instanceof Error ? error.message : String(error), {
      code: "InvalidArguments",
      hint: HELP_HINT,
    });
  }
  const { values, positionals } = parsed;
  if (values.help || positionals[0] === "help") return { command: "help" };
  if (positionals.length === 0) {
    throw new InvalidInputError("missing command", { code: "InvalidArguments", hint: HELP_HINT });
  }
  if (positionals[0] !== "dev" || positionals.length > 1) {
    throw new InvalidInputError(`unknown command: ${positionals.join(" ")}`, {
      code: "InvalidArguments",
      hint: HELP_HINT,
    });
  }
  for (const name of ["env", "api", "dir"] as const) {
    if (values[name] !== undefined && values[name].trim() === "") {
      throw new InvalidInputError(`--${name} needs a value`, { code: "InvalidArguments", hint: HELP_HINT });
    }
  }
  return {
    command: "dev",
    flags: {
      env: values.env,
      api: values.api,
      dir: values.dir,
      deploy: !values["no-deploy"],
      rebuildBase: values["rebuild-base"],
      json: values.json,
      follow: !values["no-follow"],
    },
  };
}
