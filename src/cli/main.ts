#!/usr/bin/env node
/**
 * Entry of the `fast-build` command. Parses flags, reads settings, runs the command and turns
 * every error into a message with its hint and an exit code (never a stack trace).
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { loadCliSettings } from "../config/cli.js";
import {
  ConfigError,
  describeError,
  InvalidInputError,
  isFastBuildError,
  PayloadTooLargeError,
} from "../core/errors.js";
import { parseCommand, USAGE } from "./args.js";
import { EXIT, runDev } from "./dev.js";
import { createOutput } from "./progress.js";

/** Runs `fast-build` with `argv` (without node and script) and resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const interrupt = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    // First Ctrl-C: cancel the build on the server and stop; a second one leaves at once.
    if (++interrupts > 1) process.exit(EXIT.interrupted);
    process.stderr.write("\ninterrupted: cancelling the build (Ctrl-C again to quit now)\n");
    interrupt.abort();
  };
  process.on("SIGINT", onSigint);
  try {
    const command = parseCommand(argv);
    if (command.command === "help") {
      process.stdout.write(`${USAGE}\n`);
      return EXIT.ok;
    }
    const settings = loadCliSettings(command.flags);
    const out = createOutput(command.flags.json ? process.stderr : process.stdout);
    return await runDev({
      settings,
      flags: command.flags,
      cwd: process.cwd(),
      out,
      stdout: process.stdout,
      interrupt: interrupt.signal,
    });
  } catch (error) {
    process.stderr.write(`${formatError(error)}\n`);
    const badInput =
      error instanceof InvalidInputError ||
      error instanceof ConfigError ||
      error instanceof PayloadTooLargeError;
    return badInput ? EXIT.usage : EXIT.failed;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

/** `error: …` plus the hint, for any thrown value. */
export function formatError(error: unknown): string {
  if (isFastBuildError(error)) {
    return `error: ${error.message}${error.hint ? `\nhint: ${error.hint}` : ""}`;
  }
  return `error: ${describeError(error)}`;
}

// Run only as the program, not when imported (tests import `main`). npm's bin is a symlink.
const script = process.argv[1];
if (script && realpathSync(script) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
