#!/usr/bin/env node
/**
 * Entry of the `fast-build` command. `--help` is answered here from the usage text alone
 * (src/cli/usage.ts); any other command loads src/cli/run.ts, which parses it, reads the settings,
 * runs it and turns every error into a message with its hint and an exit code. So the help costs
 * a bare `node` and little more: the schemas, the storage SDK and the archiver load only with the
 * commands that use them.
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { CliIo } from "./run.js";
import { isHelpRequest, USAGE } from "./usage.js";

export type { CliIo } from "./run.js";

const PROCESS_IO: CliIo = { stdout: process.stdout, stderr: process.stderr };

/** Runs `fast-build` with `argv` (without node and script) and resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIo = PROCESS_IO): Promise<number> {
  if (isHelpRequest(argv)) {
    io.stdout.write(`${USAGE}\n`);
    // EXIT.ok: src/cli/follow.ts, where the exit codes are, would load the schemas with it.
    return 0;
  }
  const { runCli } = await import("./run.js");
  return runCli(argv, io);
}

// Run only as the program, not when imported (tests import `main`). npm's bin is a symlink.
const script = process.argv[1];
if (script && realpathSync(script) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
