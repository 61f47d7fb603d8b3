/**
 * The one definition of a fair comparison for `bench/*.bench.ts`:
 *
 *   - candidate and baseline ALTERNATE, round after round, in one process (never seven of one and
 *     then seven of the other: a drift of the machine — caches, the other sessions on its two
 *     cores — then touches both alike);
 *   - each is reported as its median with its spread (interquartile range and min-max, so a noisy
 *     run shows as noisy);
 *   - the ratio is the candidate's median over the baseline's median, printed beside the goal.
 *
 * Use:
 *
 *   const [base, cand] = await alternate([
 *     { label: "baseline: tar czf + sha256sum", run: () => tarAndHash(dir) },
 *     { label: "candidate: createArchive", run: () => createArchive(dir) },
 *   ]);
 *   printRatio("archive / tar", cand, base, { atMost: 1.0 });
 *
 * A contestant's `run` is timed from call to settle; when the job's own figure is not its wall time
 * (a build's overhead, a request count), record the figures yourself and still call `alternate`
 * for the order, then `printSpread` / `printGoal` them.
 */

/** Median and spread of a series of samples (any unit). */
export interface Spread {
  median: number;
  /** First and third quartiles (nearest rank). */
  q1: number;
  q3: number;
  min: number;
  max: number;
  n: number;
}

export interface Contestant {
  label: string;
  /** One run of the job (sync or async); its wall time, call to settle, is the sample. */
  run: () => unknown;
}

export interface AlternateOptions {
  /** Rounds after the warm-up (default 11; `BENCH_ROUNDS` overrides). */
  rounds?: number;
  /** Run each contestant once first, unmeasured, to warm the page cache and the JIT (default true). */
  warmUp?: boolean;
  /** Print each contestant's median and spread when done (default true). */
  print?: boolean;
  /** The unit `print` shows the samples in (default milliseconds). */
  unit?: Unit;
}

/** How samples are shown: milliseconds as `ms`, or seconds (`s`), or plain counts. */
export type Unit = "ms" | "s" | "requests" | "MB";

/** The number of rounds a bench asked for, unless `BENCH_ROUNDS` says otherwise. */
export function rounds(wanted: number): number {
  const override = Number(process.env.BENCH_ROUNDS);
  return Number.isInteger(override) && override > 0 ? override : wanted;
}

/**
 * Runs the contestants in turn, round after round, and returns the median and spread of each
 * one's wall times (milliseconds), in the contestants' order.
 */
export async function alternate(
  contestants: Contestant[],
  options: AlternateOptions = {},
): Promise<Spread[]> {
  const samples = contestants.map(() => [] as number[]);
  if (options.warmUp ?? true) for (const c of contestants) await c.run();
  const n = rounds(options.rounds ?? 11);
  for (let round = 0; round < n; round++) {
    for (const [i, c] of contestants.entries()) {
      const start = performance.now();
      await c.run();
      samples[i]!.push(performance.now() - start);
    }
  }
  const spreads = samples.map(spread);
  if (options.print ?? true) {
    for (const [i, c] of contestants.entries()) printSpread(c.label, spreads[i]!, options.unit ?? "ms");
  }
  return spreads;
}

/** Median, quartiles and range of the samples (throws on none: a bench that measured nothing is broken). */
export function spread(samples: readonly number[]): Spread {
  if (samples.length === 0) throw new Error("no samples");
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, q1: at(0.25), q3: at(0.75), min: sorted[0]!, max: sorted.at(-1)!, n: sorted.length };
}

/** `1234.5 ms` / `1.23 s` / `12 requests`. */
export function format(value: number, unit: Unit): string {
  if (unit === "s") return `${(value / 1000).toFixed(2)} s`;
  if (unit === "ms") return `${value.toFixed(1)} ms`;
  if (unit === "MB") return `${value.toFixed(1)} MB`;
  return `${Number.isInteger(value) ? value : value.toFixed(1)} requests`;
}

/** One line: the label, the median, the IQR, the min-max and the number of samples. */
export function printSpread(label: string, s: Spread, unit: Unit = "ms"): void {
  const f = (v: number) => format(v, unit);
  console.log(
    `  ${label.padEnd(48)} median ${f(s.median).padStart(12)}  IQR ${f(s.q1)} – ${f(s.q3)}  ` +
      `min-max ${f(s.min)} – ${f(s.max)}  (${s.n} runs, alternating)`,
  );
}

/** A goal on a ratio: candidate / baseline at most this. */
export interface RatioGoal {
  atMost: number;
}

/** Prints `candidate / baseline` (medians) beside its goal; returns the ratio. */
export function printRatio(label: string, candidate: Spread, baseline: Spread, goal?: RatioGoal): number {
  const ratio = candidate.median / baseline.median;
  const against = goal ? `   goal ≤ ${goal.atMost.toFixed(2)}×: ${verdict(ratio <= goal.atMost)}` : "";
  console.log(`  ratio ${label}: ${ratio.toFixed(2)}×${against}`);
  return ratio;
}

/**
 * Prints a figure whose baseline is its goal (an absolute budget, e.g. "≤ 1.0 s"): the median now,
 * the goal, and now / goal. Returns now / goal.
 */
export function printGoal(label: string, now: Spread, goal: { atMost: number; unit: Unit }): number {
  const ratio = now.median / goal.atMost;
  console.log(
    `  ${label}: now ${format(now.median, goal.unit)} / goal ≤ ${format(goal.atMost, goal.unit)} = ` +
      `${ratio.toFixed(2)}×: ${verdict(ratio <= 1)}`,
  );
  return ratio;
}

const verdict = (ok: boolean) => (ok ? "OK" : "MISSED");
