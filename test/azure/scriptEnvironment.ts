/**
 * What build.sh would see on the VM, for test executors: the managed Run Command hands the
 * parameters to bash as its environment; the action Run Command (hybrid profile) runs its script
 * text — Azure's `export` prelude plus dockerfiles/launcher.sh — with /bin/sh from a file, as the
 * Linux extension does. Here that text really runs, with a `bash` on PATH that only reports the
 * environment it was started with: exactly what the launcher hands build.sh.
 */
import { execFile } from "node:child_process";
import { chmod, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { RunCommandRun } from "@fast-build/local-cloud/arm";

const exec = promisify(execFile);
/** Set by sh itself, not by the launcher. */
const SHELL_OWN = new Set(["PATH", "PWD", "OLDPWD", "SHLVL", "_"]);

export interface ScriptView {
  env: Record<string, string>;
  /** Action only: the script file the extension wrote was gone when build.sh started. */
  scriptFileRemoved: boolean;
}

export async function scriptView(run: RunCommandRun): Promise<ScriptView> {
  if (run.shell === "/bin/bash") {
    return { env: { ...run.parameters, ...run.protectedParameters }, scriptFileRemoved: true };
  }
  const dir = await mkdtemp(join(tmpdir(), "fb-action-"));
  try {
    const shim = join(dir, "bin");
    const script = join(dir, "script.sh");
    await exec("mkdir", [shim]);
    await writeFile(join(shim, "bash"), `#!/bin/sh\n[ -e ${script} ] && echo present >&2\nexec env -0\n`);
    await chmod(join(shim, "bash"), 0o755);
    await writeFile(script, run.script, { mode: 0o500 });
    // run-command-extension-linux main/exec.go: the script file's path as the shell's command.
    const { stdout, stderr } = await exec("/bin/sh", ["-c", script], {
      cwd: dir,
      env: { PATH: `${shim}:/usr/bin:/bin` },
      maxBuffer: 1024 * 1024,
    });
    const env: Record<string, string> = {};
    for (const entry of stdout.split("\0")) {
      const at = entry.indexOf("=");
      if (at > 0 && !SHELL_OWN.has(entry.slice(0, at))) env[entry.slice(0, at)] = entry.slice(at + 1);
    }
    const removed = !stderr.includes("present") && !(await stat(script).catch(() => undefined));
    return { env, scriptFileRemoved: removed };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The environment build.sh would start with. */
export async function scriptEnvironment(run: RunCommandRun): Promise<Record<string, string>> {
  return (await scriptView(run)).env;
}
