/** Stopping the local cloud's child processes (Azurite, the registry). */
import type { ChildProcess } from "node:child_process";

/**
 * SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. A process that already
 * ended (by exit code or by signal) resolves at once: its "exit" event will not come again.
 */
export function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}
