/**
 * Runs a `fast-build` command other than `--help` (src/cli/main.ts answers that alone): parses
 * flags, reads settings, loads and runs the command and turns every error into a message with its
 * hint and an exit code (never a stack trace). Each command's module is loaded when it runs:
 * `dev` brings the archiver and the storage SDK, `plan` the archiver (and the API client for
 * `--api`), the others only the API client.
 */
import { resolve } from "node:path";
import type { Writable } from "node:stream";
import { loadApiSettings, loadCliSettings } from "../config/cli.js";
import {
  ConfigError,
  ConflictError,
  describeError,
  InvalidInputError,
  isFastBuildError,
  NotFoundError,
  PayloadTooLargeError,
  UnauthorizedError,
} from "../core/errors.js";
import { type Command, parseCommand, USAGE } from "./args.js";
import type { BuildCommandRun } from "./builds.js";
import { EXIT } from "./follow.js";
import { createOutput } from "./progress.js";

type Stream = Writable & { isTTY?: boolean };

/** Where a run of the command reads and writes; tests run `main` in-process with their own. */
export interface CliIo {
  stdout: Stream;
  stderr: Stream;
  /** The variables the settings come from (default: the process environment, read in src/config). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Poll interval of the following commands (tests poll faster than the default 1.5 s). */
  pollIntervalMs?: number;
}

/** Runs `fast-build` with `argv` (without node and script) and resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const interrupt = new AbortController();
  let command: Command | undefined;
  let interrupts = 0;
  const onSigint = () => {
    const message = command && interruptMessage(command);
    // A second Ctrl-C leaves at once; so does the first for a command that only asks and prints.
    if (++interrupts > 1 || message === undefined) process.exit(EXIT.interrupted);
    io.stderr.write(message);
    interrupt.abort();
  };
  process.on("SIGINT", onSigint);
  try {
    command = parseCommand(argv);
    return await run(command, io, interrupt.signal);
  } catch (error) {
    io.stderr.write(`${formatError(error)}\n`);
    return exitCodeForError(error, command);
  } finally {
    process.off("SIGINT", onSigint);
  }
}

async function run(command: Command, io: CliIo, interrupt: AbortSignal): Promise<number> {
  if (command.command === "help") {
    io.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  if (command.command === "plan" || (command.command === "dev" && command.flags.dryRun)) {
    const { flags } = command;
    // Offline unless plan names an API; dev --dry-run never asks (and needs no settings).
    const ask =
      command.command === "plan" && flags.api !== undefined ? loadCliSettings(flags, io.env) : undefined;
    const { runPlan } = await import("./plan.js");
    return runPlan({
      root: resolve(process.cwd(), flags.dir ?? "."),
      archive: flags.archive,
      rebuildBase: flags.rebuildBase,
      json: flags.json,
      ...(ask ? { ask } : {}),
      out: createOutput(flags.json ? io.stderr : io.stdout),
      stdout: io.stdout,
    });
  }
  if (command.command === "init") {
    const { runInit } = await import("./init.js");
    return runInit({
      root: resolve(process.cwd(), command.flags.dir ?? "."),
      force: command.flags.force,
      binary: command.flags.binary,
      json: command.flags.json,
      out: createOutput(command.flags.json ? io.stderr : io.stdout),
      stdout: io.stdout,
    });
  }
  if (command.command === "dev") {
    const settings = loadCliSettings(command.flags, io.env);
    const { runDev } = await import("./dev.js");
    return runDev({
      settings,
      flags: command.flags,
      cwd: process.cwd(),
      out: createOutput(command.flags.json ? io.stderr : io.stdout),
      stdout: io.stdout,
      interrupt,
      ...(io.pollIntervalMs !== undefined ? { pollIntervalMs: io.pollIntervalMs } : {}),
    });
  }
  const settings = loadApiSettings(command.flags, io.env);
  const { runBuilders, runCancel, runFollow, runLogs, runStatus, runWarm } = await import("./builds.js");
  const opts = (human: Stream): BuildCommandRun => ({
    settings,
    out: createOutput(human),
    stdout: io.stdout,
    interrupt,
    ...(io.pollIntervalMs !== undefined ? { pollIntervalMs: io.pollIntervalMs } : {}),
  });
  switch (command.command) {
    case "follow":
      return runFollow(command.buildId, opts(io.stdout));
    case "status":
      return runStatus(command.buildId, command.flags.json, opts(command.flags.json ? io.stderr : io.stdout));
    case "logs":
      // The log itself is the output: messages about it go to stderr.
      return runLogs(command.buildId, command.flags.follow, opts(io.stderr));
    case "cancel":
      return runCancel(command.buildId, opts(io.stdout));
    case "builders":
      return runBuilders(command.flags.json, opts(command.flags.json ? io.stderr : io.stdout));
    case "history":
    case "costs": {
      const { runCosts, runHistory } = await import("./history.js");
      const human = opts(command.flags.json ? io.stderr : io.stdout);
      return command.command === "history"
        ? runHistory(
            { environment: command.flags.env, limit: command.flags.limit },
            command.flags.json,
            human,
          )
        : runCosts({ environment: command.flags.env, days: command.flags.days }, command.flags.json, human);
    }
    case "warm":
      return runWarm(
        command.environment,
        command.flags.json,
        opts(command.flags.json ? io.stderr : io.stdout),
      );
    default:
      return runDeployCommand(command, opts(command.flags.json ? io.stderr : io.stdout));
  }
}

/** promote, rollback, approve, reject, promotion (src/cli/promotions.ts). */
async function runDeployCommand(
  command: Extract<Command, { command: "promote" | "rollback" | "approve" | "reject" | "promotion" }>,
  opts: BuildCommandRun,
): Promise<number> {
  const { runDecide, runPromote, runPromotion, runRollback } = await import("./promotions.js");
  switch (command.command) {
    case "promote":
      return runPromote(command.from, command.to, command.flags, opts);
    case "rollback":
      return runRollback(command.environment, command.flags, opts);
    case "approve":
      return runDecide(command.id, "approve", command.flags, opts);
    case "reject":
      return runDecide(command.id, "reject", command.flags, opts);
    case "promotion":
      return runPromotion(command.id, command.flags.json, opts);
  }
}

/** The commands whose refusals by the API (409, 403) exit `refused`. */
const DEPLOY_COMMANDS: ReadonlySet<string> = new Set([
  "promote",
  "rollback",
  "approve",
  "reject",
  "promotion",
]);

/** What the first Ctrl-C says and does; `undefined`: nothing to wind down, leave at once. */
function interruptMessage(command: Command): string | undefined {
  switch (command.command) {
    case "dev":
      return "\ninterrupted: cancelling the build (Ctrl-C again to quit now)\n";
    case "follow":
      // Not this command's build to cancel: it may be someone else's, or a `dev --no-follow` run.
      return `\ninterrupted: leaving build ${command.buildId} running, it is NOT cancelled (\`fast-build cancel ${command.buildId}\` stops it)\n`;
    case "logs":
      return command.flags.follow
        ? "\ninterrupted: stopped following the log; the build goes on\n"
        : undefined;
    default:
      return undefined;
  }
}

/**
 * Bad input and settings exit 2; so does an unknown build id for the commands that name one
 * (the user typed it). For `dev`, a 404 is the server's problem mid-build: a failure (1).
 */
function exitCodeForError(error: unknown, command: Command | undefined): number {
  if (
    error instanceof InvalidInputError ||
    error instanceof ConfigError ||
    error instanceof PayloadTooLargeError
  ) {
    return EXIT.usage;
  }
  if (error instanceof NotFoundError && command !== undefined && "buildId" in command) return EXIT.usage;
  if (command !== undefined && DEPLOY_COMMANDS.has(command.command)) {
    // An unknown environment, promotion or build named on the command line is the user's typo.
    if (error instanceof NotFoundError) return EXIT.usage;
    if (error instanceof ConflictError || error instanceof UnauthorizedError) return EXIT.refused;
  }
  // plan --api and warm ask about the environment they were given: an unknown one is the user's typo.
  if (
    error instanceof NotFoundError &&
    (command?.command === "plan" ||
      command?.command === "warm" ||
      command?.command === "history" ||
      command?.command === "costs")
  ) {
    return EXIT.usage;
  }
  return EXIT.failed;
}

/** `error: …` plus the hint, for any thrown value. */
export function formatError(error: unknown): string {
  if (isFastBuildError(error)) {
    return `error: ${error.message}${error.hint ? `\nhint: ${error.hint}` : ""}`;
  }
  return `error: ${describeError(error)}`;
}
