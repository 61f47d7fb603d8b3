/**
 * What a run command does on the emulated VM. `scriptedExecutor` plays a fixed result (tests);
 * `localShellExecutor` really runs the script with bash on this machine (local simulation).
 */
import { spawn } from "node:child_process";
import type { RunCommandExecutor } from "./types.js";

export interface ScriptedResult {
  exitCode?: number;
  stdout?: string;
  stderr?: string;
  /** How long the "script" runs; cancel and timeout cut it short. */
  durationMs?: number;
}

/**
 * Writes `stdout`/`stderr`, waits `durationMs` (or until aborted), then exits with `exitCode`.
 * A function lets the result depend on the run (script, parameters).
 */
export function scriptedExecutor(
  result: ScriptedResult | ((run: Parameters<RunCommandExecutor>[0]) => ScriptedResult) = {},
): RunCommandExecutor {
  return async (run) => {
    const {
      exitCode = 0,
      stdout = "",
      stderr = "",
      durationMs = 0,
    } = typeof result === "function" ? result(run) : result;
    if (stdout) run.stdout(stdout);
    if (stderr) run.stderr(stderr);
    if (durationMs > 0 && !run.signal.aborted) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, durationMs);
        run.signal.addEventListener(
          "abort",
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
    }
    return { exitCode: run.signal.aborted ? 137 : exitCode };
  };
}

export interface LocalShellOptions {
  /** Working directory of the script (default: the process's). */
  cwd?: string;
  /** Extra environment on top of PATH/HOME/LANG (parameters still win). */
  env?: Record<string, string>;
}

/**
 * Runs `<run.shell> -c script` (bash for managed Run Commands, `/bin/sh` for the action one) with
 * the parameters (and protected parameters) as environment variables, as Run Command does on
 * Linux, streaming its output. Cancel or timeout kills the whole process group.
 */
export function localShellExecutor(options: LocalShellOptions = {}): RunCommandExecutor {
  return (run) =>
    new Promise((resolve, reject) => {
      if (!run.script) {
        reject(
          new Error(
            "localShellExecutor runs inline scripts only (source.script); scriptUri/commandId are not supported",
          ),
        );
        return;
      }
      const base: Record<string, string> = {};
      for (const name of ["PATH", "HOME", "LANG", "TMPDIR"]) {
        const value = process.env[name];
        if (value !== undefined) base[name] = value;
      }
      const child = spawn(run.shell, ["-c", run.script], {
        cwd: options.cwd,
        env: { ...base, ...options.env, ...run.parameters, ...run.protectedParameters },
        stdio: ["ignore", "pipe", "pipe"],
        // Its own process group, so a kill reaches every child the script started.
        detached: true,
      });
      const kill = () => {
        if (child.pid !== undefined && child.exitCode === null) {
          try {
            process.kill(-child.pid, "SIGKILL");
          } catch {
            // Already gone.
          }
        }
      };
      if (run.signal.aborted) kill();
      run.signal.addEventListener("abort", kill, { once: true });
      child.stdout.setEncoding("utf8").on("data", (text: string) => run.stdout(text));
      child.stderr.setEncoding("utf8").on("data", (text: string) => run.stderr(text));
      child.once("error", (error) => {
        run.signal.removeEventListener("abort", kill);
        reject(error);
      });
      child.once("close", (code, signal) => {
        run.signal.removeEventListener("abort", kill);
        resolve({ exitCode: code ?? 128 + signalNumber(signal) });
      });
    });
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGTERM: 15, SIGKILL: 9, SIGINT: 2 };
  return (signal && numbers[signal]) ?? 1;
}
