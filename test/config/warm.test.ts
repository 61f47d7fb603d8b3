/**
 * The `warm` setting of an environment (warm hours): what is accepted, and every refusal, each
 * naming the setting and saying what to write instead; nothing loads with a bad one.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "../../src/config/index.js";
import { ConfigError } from "../../src/core/errors.js";
import { ENVIRONMENT, MINIMAL_SETTINGS } from "./settings.js";

const HOURS = { timeZone: "Europe/Berlin", days: "Mon-Fri", from: "08:00", to: "18:00" };
const withWarm = (warm: unknown) => ({
  ...MINIMAL_SETTINGS,
  FASTBUILD_ENVIRONMENTS: JSON.stringify({ dev: { ...ENVIRONMENT, warm } }),
});

/** The one problem `loadConfig` reports for `settings`, or fails when it accepts them. */
function problem(settings: Record<string, string>): string {
  try {
    loadConfig(settings);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.problems.length, 1, error.problems.join("\n"));
    return error.problems[0]!;
  }
  assert.fail("the settings were accepted");
}

describe("environment warm hours", () => {
  it("is off unless set", () => {
    assert.equal(loadConfig(MINIMAL_SETTINGS).environments.dev?.warm, undefined);
  });

  it("accepts one builder warm on weekdays in a time zone", () => {
    const config = loadConfig(withWarm({ builders: 1, hours: HOURS }));
    assert.deepEqual(config.environments.dev?.warm, { builders: 1, hours: HOURS });
  });

  it("accepts lists, wrapping ranges, UTC and 0 builders", () => {
    for (const days of ["Mon,Wed,Fri", "Fri-Mon", "Mon-Wed,Fri", "Sun"]) {
      loadConfig(withWarm({ builders: 0, hours: { ...HOURS, days, timeZone: "UTC" } }));
    }
  });

  const refusals: [string, unknown, RegExp][] = [
    [
      "an unknown time zone",
      { builders: 1, hours: { ...HOURS, timeZone: "Europe/Berlinn" } },
      /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.hours\.timeZone: an IANA time zone such as Europe\/Berlin/,
    ],
    [
      "a day that is no weekday",
      { builders: 1, hours: { ...HOURS, days: "Mon-Fry" } },
      /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.hours\.days: weekdays as Mon Tue Wed Thu Fri Sat Sun: a range \(Mon-Fri\)/,
    ],
    [
      "days in another language or case",
      { builders: 1, hours: { ...HOURS, days: "monday-friday" } },
      /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.hours\.days: weekdays as/,
    ],
    [
      "a range with three ends",
      { builders: 1, hours: { ...HOURS, days: "Mon-Wed-Fri" } },
      /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.hours\.days:/,
    ],
    [
      "a time that is not HH:MM",
      { builders: 1, hours: { ...HOURS, from: "8am" } },
      /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.hours\.from: a 24-hour time as HH:MM, e\.g\. 08:00/,
    ],
    [
      "an hour past 23",
      { builders: 1, hours: { ...HOURS, to: "24:00" } },
      /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.hours\.to: a 24-hour time as HH:MM/,
    ],
    [
      "hours across midnight",
      { builders: 1, hours: { ...HOURS, from: "22:00", to: "06:00" } },
      /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.hours\.to: must be later than from on the same day \(warm hours across midnight are not supported/,
    ],
    [
      "an empty window",
      { builders: 1, hours: { ...HOURS, from: "08:00", to: "08:00" } },
      /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.hours\.to: must be later than from/,
    ],
    [
      "more builders than the environment has",
      { builders: 2, hours: HOURS },
      /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.builders: at most 1: an environment has one builder today \(set 0 or 1\)/,
    ],
    [
      "a fraction of a builder",
      { builders: 0.5, hours: HOURS },
      /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.builders: a whole number/,
    ],
    ["a negative count", { builders: -1, hours: HOURS }, /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.builders:/],
    ["no hours", { builders: 1 }, /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.hours:/],
    [
      "an unknown key (a typo)",
      { builders: 1, hours: { ...HOURS, timezone: "UTC" } },
      /^FASTBUILD_ENVIRONMENTS\.dev\.warm\.hours: .*timezone/i,
    ],
  ];
  for (const [what, warm, expected] of refusals) {
    it(`refuses ${what}, naming the setting`, () => {
      assert.match(problem(withWarm(warm)), expected);
    });
  }
});
