/**
 * Build history and builder costs (issue 11 item 6), the pure part: what one history record holds,
 * how its rows are keyed (newest first), the opaque page cursor, the builder power transitions and
 * how they become VM and disk minutes per UTC day and a cost from the configured per-hour rates.
 * No SDK here: src/azure/history.ts stores the records, src/functions/history.ts serves them.
 */
import { z } from "zod";
import type { Author, BuildPhase, BuildStatus } from "./api.js";
import { InvalidInputError } from "./errors.js";
import { BUILD_ID } from "./rules.js";
import { STEPS, type StepName } from "./status.js";

/**
 * The step names of the status, by what a developer calls them: the lease step is the wait in the
 * builder's queue, the builder step the VM's start, the source step the upload.
 */
export const PHASE_LABELS: Readonly<Record<StepName, string>> = {
  lease: "queue",
  builder: "vm-start",
  source: "upload",
  build: "build",
  deploy: "deploy",
};

/** One build as the history keeps it: written once at its end (upserted by build id). */
export interface BuildHistoryRecord {
  buildId: string;
  environment: string;
  createdAt: string;
  endedAt: string;
  outcome: BuildPhase;
  /** `ok`, or `<code>: <message>` of the terminal error. */
  reason: string;
  commit?: string;
  branch?: string;
  /** The working tree had changes not in `commit`. */
  dirty?: boolean;
  author?: Author;
  /** created → ended. */
  durationMs: number;
  /** Per step that ran (`PHASE_LABELS` says what each is), ms. */
  phasesMs: Partial<Record<StepName, number>>;
  /** The registry had the image for this source: no builder was used. */
  registryHit?: boolean;
  image?: { reference: string; digest?: string };
  revision?: string;
  builder?: string;
  /** Minutes the build held the builder (lease take → release). */
  vmMinutes: number;
}

/** The history fields the orchestrator adds to the record of its build (see orchestration/build.ts). */
export function historyRecord(
  status: BuildStatus,
  input: {
    buildId: string;
    environment: string;
    createdAt: string;
    commit?: string | undefined;
    branch?: string | undefined;
    dirty?: boolean | undefined;
    author?: Author | undefined;
  },
  end: { outcome: BuildPhase; reason: string; endedAt: string; vmMinutes: number },
): BuildHistoryRecord {
  const endMs = Date.parse(end.endedAt);
  const phasesMs: Partial<Record<StepName, number>> = {};
  for (const step of status.steps) {
    if (!(STEPS as readonly string[]).includes(step.name) || step.startedAt === undefined) continue;
    const stepEnd = step.endedAt === undefined ? endMs : Date.parse(step.endedAt);
    phasesMs[step.name as StepName] = Math.max(0, stepEnd - Date.parse(step.startedAt));
  }
  return {
    buildId: input.buildId,
    environment: input.environment,
    createdAt: input.createdAt,
    endedAt: end.endedAt,
    outcome: end.outcome,
    reason: end.reason,
    ...(input.commit !== undefined ? { commit: input.commit } : {}),
    ...(input.branch !== undefined ? { branch: input.branch } : {}),
    ...(input.dirty !== undefined ? { dirty: input.dirty } : {}),
    ...(input.author !== undefined ? { author: input.author } : {}),
    durationMs: Math.max(0, endMs - Date.parse(input.createdAt)),
    phasesMs,
    ...(status.registryCheck?.sourceImage === "present" ? { registryHit: true } : {}),
    ...(status.image ? { image: status.image } : {}),
    ...(status.revision ? { revision: status.revision.name } : {}),
    ...(status.builder.name ? { builder: status.builder.name } : {}),
    vmMinutes: end.vmMinutes,
  };
}

// ---------------------------------------------------------------------------------------------
// Keys and the page cursor

/** Table RowKeys sort as strings: 13 digits of (this − ms) put the newest first. */
const INVERT_FROM = 9_999_999_999_999;

/** `<inverted ms>~<build id>`: newest first, and the same key on every write of one build. */
export function historyRowKey(createdAt: string, buildId: string): string {
  return `${invertedTime(createdAt)}~${buildId}`;
}

export function invertedTime(iso: string): string {
  return String(INVERT_FROM - Date.parse(iso)).padStart(13, "0");
}

const ROW_KEY_PATTERN = new RegExp(`^[0-9]{13}~${BUILD_ID.pattern.source.slice(1, -1)}$`);

/** `limit` of `GET /api/builds`; `days` of `GET /api/costs`. */
export const HISTORY_LIMIT = { min: 1, max: 200, default: 20 } as const;
export const COST_DAYS = { min: 1, max: 90, default: 7 } as const;
/** What `fast-build history --limit` may ask for (the CLI follows the API's pages to get it). */
export const CLI_HISTORY_LIMIT = { min: 1, max: 1000, default: HISTORY_LIMIT.default } as const;

/**
 * The `next` cursor of a history page: the first row key of the next page and the list it belongs
 * to, base64url JSON. Opaque to clients; a cursor that does not decode to exactly that, or that
 * belongs to another environment's list, is refused (400), never passed to the table.
 */
export function encodeCursor(list: string, rowKey: string): string {
  return Buffer.from(JSON.stringify({ v: 1, l: list, k: rowKey }), "utf8").toString("base64url");
}

export function decodeCursor(cursor: string, list: string): string {
  const refuse = (why: string) =>
    new InvalidInputError(`the cursor is not one this API gave out (${why})`, {
      code: "InvalidCursor",
      hint: "Pass the `next` value of the previous page unchanged, with the same env; or leave cursor out for the newest builds.",
    });
  if (cursor.length > 400 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw refuse("not base64url");
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw refuse("not JSON");
  }
  const parsed = z
    .object({ v: z.literal(1), l: z.string(), k: z.string().regex(ROW_KEY_PATTERN) })
    .strict()
    .safeParse(value);
  if (!parsed.success) throw refuse("malformed");
  if (parsed.data.l !== list) throw refuse("it belongs to another environment's list");
  return parsed.data.k;
}

// ---------------------------------------------------------------------------------------------
// Power transitions and costs

/** What a builder VM went to; `hibernated` keeps its disks (and memory on disk) like `deallocated`. */
export const POWER_EVENTS = ["started", "deallocated", "hibernated"] as const;
export type PowerEvent = (typeof POWER_EVENTS)[number];

export interface PowerTransition {
  builderKey: string;
  builder: string;
  state: PowerEvent;
  at: string;
  /** `hardwareProfile.vmSize` when the transition was recorded (`unknown` if it could not be read). */
  vmSize: string;
}

/** One VM size's price; both per hour, in the configured currency. */
export interface VmRate {
  perHour: number;
  diskPerHour: number;
}

export const vmRatesSchema = z.record(
  z.string().regex(/^[A-Za-z0-9_]{1,64}$/, "a VM size such as Standard_D4s_v5"),
  z.object({ perHour: z.number().min(0).max(1000), diskPerHour: z.number().min(0).max(1000) }).strict(),
);
export type VmRates = z.infer<typeof vmRatesSchema>;

export interface DayUsage {
  /** UTC day, YYYY-MM-DD. */
  day: string;
  runningMinutes: number;
  stoppedMinutes: number;
  /** Absent when a size in it has no rate (see `unknownRates`). */
  cost?: number;
  unknownRates?: string[];
}

export interface BuilderUsage {
  builder: string;
  vmSizes: string[];
  runningMinutes: number;
  stoppedMinutes: number;
  cost?: number;
  unknownRates?: string[];
}

interface Interval {
  builder: string;
  running: boolean;
  vmSize: string;
  from: number;
  to: number;
}

const DAY_MS = 86_400_000;

/**
 * The intervals between transitions, cut to [from, to): each transition's state lasts until the
 * next transition of the same builder, the last one until `to` (now). `transitions` may hold one
 * transition before `from` per builder (the state the window starts in); earlier ones are ignored.
 */
export function powerIntervals(
  transitions: readonly PowerTransition[],
  from: number,
  to: number,
): Interval[] {
  const byBuilder = new Map<string, PowerTransition[]>();
  for (const t of transitions) {
    const list = byBuilder.get(t.builderKey) ?? [];
    list.push(t);
    byBuilder.set(t.builderKey, list);
  }
  const intervals: Interval[] = [];
  for (const list of byBuilder.values()) {
    list.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    list.forEach((t, i) => {
      const next = list[i + 1];
      const start = Math.max(from, Date.parse(t.at));
      const end = Math.min(to, next ? Date.parse(next.at) : to);
      if (end <= start) return;
      intervals.push({
        builder: t.builder,
        running: t.state === "started",
        vmSize: t.vmSize,
        from: start,
        to: end,
      });
    });
  }
  return intervals;
}

/** Splits an interval at UTC midnights: [day, ms] pairs. */
export function splitByDay(from: number, to: number): [string, number][] {
  const parts: [string, number][] = [];
  for (let start = from; start < to;) {
    const midnight = (Math.floor(start / DAY_MS) + 1) * DAY_MS;
    const end = Math.min(to, midnight);
    parts.push([new Date(start).toISOString().slice(0, 10), end - start]);
    start = end;
  }
  return parts;
}

const round2 = (n: number) => Math.round(n * 100) / 100;
const round4 = (n: number) => Math.round(n * 10_000) / 10_000;

/** What an unknown size is told (the one wording of it). */
export const unknownRateNote = (size: string): string =>
  `unknown rate for ${size}: add it to FASTBUILD_VM_RATES`;

class Tally {
  runningMs = 0;
  stoppedMs = 0;
  cost = 0;
  readonly unknown = new Set<string>();
  readonly sizes = new Set<string>();

  add(interval: Interval, ms: number, rates: VmRates): void {
    if (interval.running) this.runningMs += ms;
    else this.stoppedMs += ms;
    this.sizes.add(interval.vmSize);
    const rate = Object.hasOwn(rates, interval.vmSize) ? rates[interval.vmSize] : undefined;
    if (!rate) this.unknown.add(interval.vmSize);
    else this.cost += (ms / 3_600_000) * (interval.running ? rate.perHour : rate.diskPerHour);
  }

  get usage() {
    return {
      runningMinutes: round2(this.runningMs / 60_000),
      stoppedMinutes: round2(this.stoppedMs / 60_000),
      ...(this.unknown.size === 0 ? { cost: round4(this.cost) } : { unknownRates: [...this.unknown].sort() }),
    };
  }
}

/** VM minutes (running) and disk minutes (deallocated or hibernated) per UTC day and per builder, with costs. */
export function usageByDay(
  transitions: readonly PowerTransition[],
  from: number,
  to: number,
  rates: VmRates,
): { days: DayUsage[]; builders: BuilderUsage[]; total: Omit<DayUsage, "day"> } {
  const days = new Map<string, Tally>();
  // Every day of the window is listed, also one with no use.
  for (const [day] of splitByDay(from, to)) days.set(day, new Tally());
  const builders = new Map<string, Tally>();
  const total = new Tally();
  for (const interval of powerIntervals(transitions, from, to)) {
    for (const [day, ms] of splitByDay(interval.from, interval.to)) days.get(day)?.add(interval, ms, rates);
    const builder = builders.get(interval.builder) ?? new Tally();
    builder.add(interval, interval.to - interval.from, rates);
    builders.set(interval.builder, builder);
    total.add(interval, interval.to - interval.from, rates);
  }
  return {
    days: [...days].map(([day, tally]) => ({ day, ...tally.usage })),
    builders: [...builders].map(([builder, tally]) => ({
      builder,
      vmSizes: [...tally.sizes].sort(),
      ...tally.usage,
    })),
    total: total.usage,
  };
}

/** `GET /api/costs`. */
export interface CostsResponse {
  environment?: string;
  from: string;
  to: string;
  days: number;
  currency: string;
  perDay: DayUsage[];
  builders: BuilderUsage[];
  total: Omit<DayUsage, "day">;
  /** Builds that ended in the window: their builder minutes (lease take → release). */
  builds: { count: number; vmMinutes: number; averageVmMinutes?: number; averageCost?: number };
  /** One line per size without a rate. */
  notes: string[];
}

/** `GET /api/builds`. */
export interface HistoryPage {
  builds: BuildHistoryRecord[];
  /** Pass as `cursor` for the next (older) page; absent on the last page. */
  next?: string;
}

/** The cost of `vmMinutes` of builder time at the one size's rate, when every builder has one size with a rate. */
export function buildCost(vmMinutes: number, vmSizes: readonly string[], rates: VmRates): number | undefined {
  const [size, ...others] = vmSizes;
  if (size === undefined || others.length > 0 || !Object.hasOwn(rates, size)) return undefined;
  return round4((vmMinutes / 60) * rates[size]!.perHour);
}
