/**
 * The soak's builder "VM": the emulator's run-command executor plays build.sh quickly — it waits a
 * moment, pushes the build's image to the local registry and prints build.sh's result line — and
 * records every script it runs, so the soak can count scripts per build and overlaps per VM.
 */
import type { RunCommandExecutor } from "@fast-build/local-cloud/arm";
import { builderResult } from "../../test/fixtures/builderResult.js";
import { pushImage } from "../../test/azure/registryImages.js";

export interface ScriptRun {
  vm: string;
  buildId: string;
  startedAt: number;
  /** Unset while it runs. */
  endedAt?: number;
}

export interface SoakVm {
  executor: RunCommandExecutor;
  runs: ScriptRun[];
}

/** `registry`: the local registry (`host` for image names, `url` to push to). */
export function soakVm(
  registry: { host: string; url: string },
  imageRepository: string,
  scriptMs: number,
): SoakVm {
  const runs: ScriptRun[] = [];
  const executor: RunCommandExecutor = async (run) => {
    // The managed Run Command hands build.sh its settings as parameters.
    const buildId = run.parameters.FASTBUILD_BUILD_ID ?? `unknown:${run.name}`;
    const record: ScriptRun = { vm: run.vm.vmName, buildId, startedAt: Date.now() };
    runs.push(record);
    try {
      const stopped = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), scriptMs);
        run.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      if (stopped) return { exitCode: 137 };
      const digest = await pushImage(registry.url, imageRepository, buildId);
      const result = builderResult(buildId, {
        image: `${registry.host}/${imageRepository}:${buildId}`,
        digest,
        baseCacheHit: true,
        timings: { app: scriptMs },
      });
      run.stdout(`fastbuild[app] building ${buildId}\n${JSON.stringify(result)}\n`);
      return { exitCode: 0 };
    } finally {
      record.endedAt = Date.now();
    }
  };
  return { executor, runs };
}

/** Pairs of scripts that ran at the same time on the same VM (one still running counts as open-ended). */
export function overlaps(runs: readonly ScriptRun[]): number {
  let count = 0;
  for (const [i, a] of runs.entries()) {
    for (const b of runs.slice(i + 1)) {
      if (a.vm === b.vm && a.startedAt < (b.endedAt ?? Infinity) && b.startedAt < (a.endedAt ?? Infinity))
        count++;
    }
  }
  return count;
}
