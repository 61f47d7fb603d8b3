/** `npm run soak` settings: flags first, then `FASTBUILD_SOAK_*` variables, then defaults. */
import { parseArgs } from "node:util";

export interface SoakOptions {
  builds: number;
  /** Builds in flight at once (spread over the two environments). */
  concurrency: number;
  /** Share of ARM requests that fail, split evenly over the fault kinds. */
  faults: number;
  /** Share of VM starts that end `AllocationFailed`. */
  allocationFailures: number;
  /** The SDK pipeline's own retries (on: its default 3; off: 0, the orchestrator's retries carry the faults). */
  sdkRetries: boolean;
  seed: number;
  /** How long one fake build script runs. */
  scriptMs: number;
  /** A build not terminal this long after it started counts as stuck. */
  stuckAfterMs: number;
  /** Crashes of the local host's durable engine, at seeded moments while builds run. */
  crashRestarts: number;
  /** How long (real ms) the host stays down after each crash (the API answers 503). */
  crashDownMs: number;
  /** Real ms from the API answering again to the orchestrations resuming (bench/soak/crash.ts). */
  crashResumeLagMs: number;
  /**
   * Real ms the durable driver lets pass before each virtual timer fires (its `realDelayMs`): the
   * client's upload and the emulator's work must fit in it, or a wait's deadline passes before
   * they land (README: Reliability).
   */
  timerRealMs: number;
}

const USAGE = `usage: npm run soak -- [--builds N] [--concurrency N] [--faults 0-1] [--allocation-failures 0-1]
                       [--sdk-retries on|off] [--seed N] [--script-ms N] [--stuck-after-s N]
                       [--crash-restarts N] [--crash-down-ms N] [--crash-resume-lag-ms N]
                       [--timer-real-ms N]
(or FASTBUILD_SOAK_BUILDS, _CONCURRENCY, _FAULTS, _ALLOCATION_FAILURES, _SDK_RETRIES, _SEED, _SCRIPT_MS,
 _STUCK_AFTER_S, _CRASH_RESTARTS, _CRASH_DOWN_MS, _CRASH_RESUME_LAG_MS, _TIMER_REAL_MS)`;

export function parseSoakOptions(argv: string[], env: NodeJS.ProcessEnv): SoakOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      builds: { type: "string" },
      concurrency: { type: "string" },
      faults: { type: "string" },
      "allocation-failures": { type: "string" },
      "sdk-retries": { type: "string" },
      seed: { type: "string" },
      "script-ms": { type: "string" },
      "stuck-after-s": { type: "string" },
      "crash-restarts": { type: "string" },
      "crash-down-ms": { type: "string" },
      "crash-resume-lag-ms": { type: "string" },
      "timer-real-ms": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) throw new SoakUsage(USAGE);
  const problems: string[] = [];
  const read = (flag: keyof typeof values, fallback: string): string => {
    const value = values[flag];
    const name = `FASTBUILD_SOAK_${flag.toUpperCase().replaceAll("-", "_")}`;
    return typeof value === "string" ? value : (env[name] ?? fallback);
  };
  const number = (flag: keyof typeof values, fallback: string, ok: (n: number) => boolean, what: string) => {
    const text = read(flag, fallback);
    const n = Number(text);
    if (text.trim() === "" || !ok(n)) problems.push(`--${flag} must be ${what}, got '${text}'`);
    return n;
  };
  const share = (n: number) => n >= 0 && n <= 1;
  const count = (n: number) => Number.isInteger(n) && n >= 1;
  const wholeMs = (n: number) => Number.isInteger(n) && n >= 0;
  const retries = read("sdk-retries", "off");
  if (retries !== "on" && retries !== "off")
    problems.push(`--sdk-retries must be on or off, got '${retries}'`);
  const options: SoakOptions = {
    builds: number("builds", "100", count, "a whole number of at least 1"),
    concurrency: number("concurrency", "8", count, "a whole number of at least 1"),
    faults: number("faults", "0.2", share, "a share from 0 to 1"),
    allocationFailures: number("allocation-failures", "0.5", share, "a share from 0 to 1"),
    sdkRetries: retries === "on",
    seed: number("seed", "1", Number.isSafeInteger, "a whole number"),
    scriptMs: number("script-ms", "300", wholeMs, "a whole number of ms"),
    stuckAfterMs: number("stuck-after-s", "120", (n) => n > 0, "a number of seconds above 0") * 1000,
    crashRestarts: number("crash-restarts", "0", wholeMs, "a whole number"),
    crashDownMs: number("crash-down-ms", "2000", wholeMs, "a whole number of ms"),
    crashResumeLagMs: number("crash-resume-lag-ms", "2000", wholeMs, "a whole number of ms"),
    timerRealMs: number("timer-real-ms", "250", wholeMs, "a whole number of ms"),
  };
  if (problems.length > 0) throw new SoakUsage(`${problems.join("\n")}\n${USAGE}`);
  return options;
}

/** Bad settings (or --help): the message says what to pass. */
export class SoakUsage extends Error {
  override name = "SoakUsage";
}
