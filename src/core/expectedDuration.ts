/**
 * The expected duration the status shows before the builder is up (issue 10, item 1): the median
 * of the environment's recent builds that ran the builder and succeeded with the same base-image
 * outcome (a base miss compiles every dependency; a hit builds only the app layer). Each recorded
 * build adds one entry (`RecentBuild`); the store keeps the last `RECENT_BUILDS.keep` per
 * environment, and an estimate needs `RECENT_BUILDS.minimum` of the same kind.
 */
export const RECENT_BUILDS = { keep: 20, consider: 10, minimum: 1 } as const;

export interface RecentBuild {
  buildId: string;
  /** Whether the builder found the base image for the build's base key. */
  base: "hit" | "miss";
  /** Created → ended, as the developer waited. */
  durationMs: number;
  endedAt: string;
}

/** The list with `entry` added (replacing an entry of the same build: recording is at least once), newest last, bounded. */
export function addRecentBuild(list: readonly RecentBuild[], entry: RecentBuild): RecentBuild[] {
  const others = list.filter((b) => b.buildId !== entry.buildId);
  return (
    [...others, entry]
      // By instant, not by text: the durable runtime may shorten fractions ("12.5Z").
      .sort((a, b) => Date.parse(a.endedAt) - Date.parse(b.endedAt))
      .slice(-RECENT_BUILDS.keep)
  );
}

export interface DurationEstimate {
  /** Median duration in ms, undefined when no earlier build of this kind is known. */
  medianMs: number | undefined;
  /** How many earlier builds it is the median of. */
  builds: number;
  /** For the status, e.g. "about 2 min (median of 5 earlier builds with a base hit)". */
  text: string;
}

export function estimateDuration(list: readonly RecentBuild[], base: "hit" | "miss"): DurationEstimate {
  const same = list.filter((b) => b.base === base).slice(-RECENT_BUILDS.consider);
  const kind = `with a base ${base}`;
  if (same.length < RECENT_BUILDS.minimum) {
    return { medianMs: undefined, builds: 0, text: `unknown (no earlier build ${kind})` };
  }
  const sorted = same.map((b) => b.durationMs).sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianMs = sorted.length % 2 ? sorted[mid]! : Math.round((sorted[mid - 1]! + sorted[mid]!) / 2);
  const what =
    same.length === 1 ? `the last build ${kind}` : `median of ${same.length} earlier builds ${kind}`;
  return { medianMs, builds: same.length, text: `about ${formatDuration(medianMs)} (${what})` };
}

/** "8 s", "45 s", "2 min", "1 h 5 min": rounded the way a person says a wait. */
export function formatDuration(ms: number): string {
  const seconds = Math.max(1, Math.round(ms / 1000));
  if (seconds < 90) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h${minutes % 60 ? ` ${minutes % 60} min` : ""}`;
}
