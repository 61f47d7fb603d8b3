/**
 * The simulation's measure of the first build after `fast-build warm` vs a cold one (issue 11):
 * the same source change built from a builder in each state the idle shutdown can leave it in,
 * each timed end to end as the developer sees it (`fast-build dev` from start to exit):
 *
 *   cold        deallocated, `fast-build dev` (the build starts the VM: a cold boot)
 *   warm        deallocated, `fast-build warm` (as a pre-push hook would) `leadMs` before dev
 *   resume      hibernated (idleShutdown: "hibernate"), `fast-build dev` (the build's start resumes it)
 *   resume+warm hibernated, `fast-build warm` `leadMs` before dev
 *
 * The builder's state is set on the ARM emulator as the idle shutdown leaves it (a timer that
 * waits out the idle window has no place in a simulation); every other step is the product's own:
 * the real CLI processes, the function app, the orchestrator, the SDK start of a deallocated or
 * hibernated VM. The emulator models the VM's start (`vmStartMs`) and the shorter resume
 * (`vmResumeMs`); the numbers show what the warm and the resume take off the build's path, not
 * what Azure takes. The scenarios run round after round, in turn, so drift hits each alike.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import type { ArmEmulator, VmInit, VmRef } from "@fast-build/local-cloud/arm";
import type { BuildStatus } from "../src/core/api.js";

export type WarmScenario = "cold" | "warm" | "resume" | "resume+warm";
const SCENARIOS: readonly WarmScenario[] = ["cold", "warm", "resume", "resume+warm"];

export interface WarmMeasurement {
  scenario: WarmScenario;
  round: number;
  exitCode: number;
  phase: string | undefined;
  /** `fast-build dev` from start to exit. */
  elapsedMs: number;
  /** The build's `builder` step (lease taken → VM running with a ready agent). */
  builderStepMs: number | undefined;
}

export interface WarmComparison {
  leadMs: number;
  rounds: number;
  measurements: WarmMeasurement[];
  /** Median end-to-end time per scenario. */
  medianMs: Record<WarmScenario, number>;
}

export interface WarmContext {
  arm: ArmEmulator;
  vm: VmRef;
  environment: string;
  repoRoot: string;
  cli: { url: string; functionKey: string; cacheDir: string };
  /** Commits a new source change (so each build has work to do and is not skipped). */
  change: (label: string) => Promise<void>;
  /** Runs `fast-build dev --json` as the developer would. */
  dev: () => Promise<{ exitCode: number; status: BuildStatus | undefined; elapsedMs: number }>;
  say: (line?: string) => void;
  /** How long before `fast-build dev` the warm is issued (default 2 s). */
  leadMs?: number;
  /** Rounds of the four scenarios (default 1). */
  rounds?: number;
}

/** Runs the comparison and narrates each build and the medians. */
export async function compareWarmStarts(ctx: WarmContext): Promise<WarmComparison> {
  const leadMs = ctx.leadMs ?? 2000;
  const rounds = ctx.rounds ?? 1;
  const { say } = ctx;
  say();
  say(`== first build after warm vs cold (warm issued ${seconds(leadMs)} before dev)`);
  const measurements: WarmMeasurement[] = [];
  let n = 0;
  for (let round = 1; round <= rounds; round++) {
    for (const scenario of SCENARIOS) {
      await ctx.change(`warm comparison ${++n}`);
      const hibernated = scenario.startsWith("resume");
      // As the idle shutdown leaves it: deallocated, or hibernated (idleShutdown: "hibernate").
      const init: VmInit = { powerState: "deallocated", hibernationEnabled: true, hibernated };
      ctx.arm.addVm(ctx.vm, init);
      if (scenario.endsWith("warm")) {
        const warm = await runWarm(ctx);
        if (warm !== 0) say(`   (fast-build warm exited ${warm})`);
        await new Promise((resolve) => setTimeout(resolve, leadMs));
      }
      const build = await ctx.dev();
      const measurement: WarmMeasurement = {
        scenario,
        round,
        exitCode: build.exitCode,
        phase: build.status?.phase,
        elapsedMs: build.elapsedMs,
        builderStepMs: stepMs(build.status, "builder"),
      };
      measurements.push(measurement);
      // Each step's time (lease, builder, source, build, deploy): where the difference is.
      const steps = (build.status?.steps ?? [])
        .map((step) => [step.name, stepMs(build.status, step.name)] as const)
        .filter((entry): entry is readonly [string, number] => entry[1] !== undefined)
        .map(([name, ms]) => `${name} ${seconds(ms)}`)
        .join(", ");
      say(
        `   ${scenario.padEnd(11)} round ${round}: ${measurement.phase ?? "no status"} in ${seconds(build.elapsedMs)} (${steps})`,
      );
    }
  }
  const medianMs = Object.fromEntries(
    SCENARIOS.map((scenario) => [
      scenario,
      median(measurements.filter((m) => m.scenario === scenario).map((m) => m.elapsedMs)),
    ]),
  ) as Record<WarmScenario, number>;
  const cold = medianMs.cold;
  for (const scenario of SCENARIOS) {
    const runs = measurements.filter((m) => m.scenario === scenario).map((m) => m.elapsedMs);
    const spread =
      runs.length > 1 ? ` (spread ${seconds(Math.min(...runs))}–${seconds(Math.max(...runs))})` : "";
    const versus = scenario === "cold" ? "" : `, ${seconds(cold - medianMs[scenario])} less than cold`;
    // The builder step is where the VM's state shows; the build step varies with the machine's load.
    const builder = median(
      measurements.filter((m) => m.scenario === scenario).flatMap((m) => m.builderStepMs ?? []),
    );
    say(
      `   median ${scenario.padEnd(11)} ${seconds(medianMs[scenario]).padStart(6)}${spread}${versus}; builder step ${seconds(builder)}`,
    );
  }
  return { leadMs, rounds, measurements, medianMs };
}

/** `fast-build warm <env> --json`, as a pre-push hook runs it; its exit code. */
function runWarm(ctx: WarmContext): Promise<number> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(ctx.repoRoot, "src", "cli", "main.ts"), "warm", ctx.environment, "--json"],
    {
      cwd: ctx.repoRoot,
      env: {
        ...process.env,
        FASTBUILD_API_URL: ctx.cli.url,
        FASTBUILD_API_KEY: ctx.cli.functionKey,
        FASTBUILD_CACHE_DIR: ctx.cli.cacheDir,
      },
      stdio: "ignore",
    },
  );
  return new Promise((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => done(code ?? 1));
  });
}

function stepMs(status: BuildStatus | undefined, name: string): number | undefined {
  const step = status?.steps.find((s) => s.name === name);
  if (!step?.startedAt || !step.endedAt) return undefined;
  return Date.parse(step.endedAt) - Date.parse(step.startedAt);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
