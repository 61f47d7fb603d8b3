/**
 * Warm hours: when an environment keeps builders running although nobody builds (a team's working
 * day), so the first build of the morning finds a started VM. One definition of the setting (the
 * zod schema the config uses) and of the question "is it warm now?" (the idle shutdown asks it).
 * Pure: the time zone arithmetic is `Intl`'s, whose zone database ships with Node.
 */
import { z } from "zod";

export const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/**
 * How many builders one environment may keep warm today: it has one builder (one VM, one lease
 * record). The setting is a count so that a pool of N builders can keep some of them warm later.
 */
export const MAX_WARM_BUILDERS = 1;

const CLOCK = /^([01]\d|2[0-3]):([0-5]\d)$/;
const minutesOf = (clock: string): number => {
  const match = CLOCK.exec(clock);
  return match ? Number(match[1]) * 60 + Number(match[2]) : Number.NaN;
};

/** Whether `zone` is a time zone `Intl` knows (an IANA name such as `Europe/Berlin`, or `UTC`). */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/**
 * `Mon-Fri`, `Mon,Wed,Fri`, `Sat-Sun`, `Fri-Mon` (a range may wrap over the week's end), or a mix
 * (`Mon-Wed,Fri`). Undefined when the text is none of those.
 */
export function parseDays(text: string): ReadonlySet<Weekday> | undefined {
  const days = new Set<Weekday>();
  for (const part of text.split(",").map((p) => p.trim())) {
    const [from, to, extra] = part.split("-").map((p) => p.trim());
    const a = WEEKDAYS.indexOf(from as Weekday);
    const b = to === undefined ? a : WEEKDAYS.indexOf(to as Weekday);
    if (a < 0 || b < 0 || extra !== undefined) return undefined;
    for (let i = a; ; i = (i + 1) % 7) {
      days.add(WEEKDAYS[i]!);
      if (i === b) break;
    }
  }
  return days;
}

export const warmHoursSchema = z
  .object({
    timeZone: z
      .string()
      .refine(isTimeZone, "an IANA time zone such as Europe/Berlin or America/New_York (or UTC)"),
    days: z
      .string()
      .refine(
        (days) => parseDays(days) !== undefined,
        `weekdays as ${WEEKDAYS.join(" ")}: a range (Mon-Fri), a list (Mon,Wed,Fri) or both (Mon-Wed,Fri)`,
      ),
    from: z.string().regex(CLOCK, "a 24-hour time as HH:MM, e.g. 08:00"),
    to: z.string().regex(CLOCK, "a 24-hour time as HH:MM, e.g. 18:00"),
  })
  .strict()
  .refine((h) => !(minutesOf(h.from) >= minutesOf(h.to)), {
    message:
      "must be later than from on the same day (warm hours across midnight are not supported: end at 23:59 and start at 00:00 on the next days)",
    path: ["to"],
  });
export type WarmHours = z.infer<typeof warmHoursSchema>;

/** `warm: { builders: 1, hours: {...} }` in an environment: keep that many builders up during those hours. */
export const warmSchema = z
  .object({
    builders: z
      .number()
      .int("a whole number")
      .min(0)
      .max(
        MAX_WARM_BUILDERS,
        `at most ${MAX_WARM_BUILDERS}: an environment has one builder today (set 0 or 1)`,
      ),
    hours: warmHoursSchema,
  })
  .strict();
export type WarmSetting = z.infer<typeof warmSchema>;

/** The weekday and minute of the day at `now` in `timeZone`. */
export function localTime(timeZone: string, now: Date): { day: Weekday; minute: number } {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    weekday: "short",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).formatToParts(now);
  const part = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  return { day: part("weekday") as Weekday, minute: Number(part("hour")) * 60 + Number(part("minute")) };
}

/** Whether `now` falls in the warm hours: on one of `days`, from `from` (included) to `to` (excluded), local time. */
export function isWarmNow(hours: WarmHours, now: Date): boolean {
  const { day, minute } = localTime(hours.timeZone, now);
  if (!(parseDays(hours.days)?.has(day) ?? false)) return false;
  return minute >= minutesOf(hours.from) && minute < minutesOf(hours.to);
}

/**
 * How many builders the settings of a builder's environments want warm at `now` (the largest: a
 * builder shared by two environments is warm when either says so), with the reason to report.
 */
export function warmBuilders(
  settings: readonly { environment: string; warm: WarmSetting | undefined }[],
  now: Date,
): { count: number; reason?: string } {
  let best: { count: number; reason?: string } = { count: 0 };
  for (const { environment, warm } of settings) {
    if (!warm || warm.builders <= best.count || !isWarmNow(warm.hours, now)) continue;
    const { days, from, to, timeZone } = warm.hours;
    best = {
      count: warm.builders,
      reason: `warm hours of ${environment} (${days} ${from}-${to} ${timeZone})`,
    };
  }
  return best;
}
