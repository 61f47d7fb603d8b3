/**
 * Timer-trigger schedules as Azure Functions reads them: six-field NCRONTAB
 * (`{second} {minute} {hour} {day} {month} {day-of-week}`, UTC) or a `hh:mm:ss` interval.
 * Only what the local host needs to fire timers on time: the next occurrence after a moment.
 */

export interface Schedule {
  /** The first occurrence strictly after `after`. */
  next(after: Date): Date;
}

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: string[];
  /** Offset added to a name's index (months are 1-based). */
  nameBase?: number;
}

const FIELDS: FieldSpec[] = [
  { name: "second", min: 0, max: 59 },
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day", min: 1, max: 31 },
  { name: "month", min: 1, max: 12, names: MONTHS, nameBase: 1 },
  { name: "day-of-week", min: 0, max: 6, names: DAYS, nameBase: 0 },
];

/** Parses a schedule; throws an error naming the bad field, so a bad schedule fails at start. */
export function parseSchedule(expression: string): Schedule {
  const trimmed = expression.trim();
  const interval = /^(\d{1,2}):(\d{2}):(\d{2})$/.exec(trimmed);
  if (interval) {
    const ms = (Number(interval[1]) * 3600 + Number(interval[2]) * 60 + Number(interval[3])) * 1000;
    if (ms <= 0) throw new Error(`schedule "${expression}": the interval must be positive`);
    return { next: (after) => new Date(after.getTime() + ms) };
  }
  const parts = trimmed.split(/\s+/);
  if (parts.length !== 6) {
    throw new Error(
      `schedule "${expression}": expected 6 NCRONTAB fields (second minute hour day month day-of-week)`,
    );
  }
  const sets = FIELDS.map((spec, i) => parseField(parts[i] ?? "", spec, expression));
  const [seconds, minutes, hours, days, months, weekdays] = sets as [
    Set<number>,
    Set<number>,
    Set<number>,
    Set<number>,
    Set<number>,
    Set<number>,
  ];
  return {
    next(after: Date): Date {
      const t = new Date(Math.floor(after.getTime() / 1000) * 1000 + 1000);
      // Five years covers every satisfiable pattern (Feb 29 on a given weekday recurs within 28 years,
      // but such schedules are not something a build system runs).
      const limit = after.getTime() + 5 * 366 * 24 * 3600 * 1000;
      while (t.getTime() <= limit) {
        if (!months.has(t.getUTCMonth() + 1)) {
          t.setUTCMonth(t.getUTCMonth() + 1, 1);
          t.setUTCHours(0, 0, 0, 0);
        } else if (!days.has(t.getUTCDate()) || !weekdays.has(t.getUTCDay())) {
          t.setUTCDate(t.getUTCDate() + 1);
          t.setUTCHours(0, 0, 0, 0);
        } else if (!hours.has(t.getUTCHours())) {
          t.setUTCHours(t.getUTCHours() + 1, 0, 0, 0);
        } else if (!minutes.has(t.getUTCMinutes())) {
          t.setUTCMinutes(t.getUTCMinutes() + 1, 0, 0);
        } else if (!seconds.has(t.getUTCSeconds())) {
          t.setUTCSeconds(t.getUTCSeconds() + 1, 0);
        } else {
          return t;
        }
      }
      throw new Error(`schedule "${expression}" has no occurrence in the next five years`);
    },
  };
}

function parseField(text: string, spec: FieldSpec, expression: string): Set<number> {
  const values = new Set<number>();
  const fail = (why: string): never => {
    throw new Error(`schedule "${expression}": ${spec.name} field "${text}" ${why}`);
  };
  for (const item of text.split(",")) {
    const [range = "", stepText] = item.split("/");
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1) fail("has a bad step");
    let from: number;
    let to: number;
    if (range === "*") {
      from = spec.min;
      to = spec.max;
    } else {
      const [a = "", b] = range.split("-");
      from = value(a, spec) ?? fail("is not a number or name");
      to =
        b === undefined
          ? stepText === undefined
            ? from
            : spec.max
          : (value(b, spec) ?? fail("is not a number or name"));
    }
    if (from < spec.min || to > spec.max || from > to) fail(`is outside ${spec.min}-${spec.max}`);
    for (let v = from; v <= to; v += step) values.add(v);
  }
  return values;
}

function value(text: string, spec: FieldSpec): number | undefined {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    // Day-of-week 7 is Sunday in most cron dialects.
    return spec.name === "day-of-week" && n === 7 ? 0 : n;
  }
  const index = spec.names?.indexOf(text.toLowerCase()) ?? -1;
  return index >= 0 ? index + (spec.nameBase ?? 0) : undefined;
}
