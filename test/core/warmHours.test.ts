import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isWarmNow, parseDays, warmBuilders } from "../../src/core/warmHours.js";

const BERLIN = { timeZone: "Europe/Berlin", days: "Mon-Fri", from: "08:00", to: "18:00" };

describe("warm hours", () => {
  it("reads ranges, lists and ranges over the week's end", () => {
    assert.deepEqual([...parseDays("Mon-Fri")!], ["Mon", "Tue", "Wed", "Thu", "Fri"]);
    assert.deepEqual([...parseDays("Mon,Wed,Fri")!], ["Mon", "Wed", "Fri"]);
    assert.deepEqual([...parseDays("Fri-Mon")!], ["Fri", "Sat", "Sun", "Mon"]);
    assert.equal(parseDays("Mon-Fry"), undefined);
  });

  it("is warm from `from` (included) to `to` (excluded), in the zone's local time", () => {
    // Wednesday 2030-01-09: Berlin is UTC+1 in winter.
    assert.equal(isWarmNow(BERLIN, new Date("2030-01-09T06:59:00Z")), false);
    assert.equal(isWarmNow(BERLIN, new Date("2030-01-09T07:00:00Z")), true);
    assert.equal(isWarmNow(BERLIN, new Date("2030-01-09T16:59:00Z")), true);
    assert.equal(isWarmNow(BERLIN, new Date("2030-01-09T17:00:00Z")), false);
  });

  it("follows daylight saving time (UTC+2 in summer)", () => {
    // Wednesday 2030-07-10, 08:00 in Berlin is 06:00 UTC.
    assert.equal(isWarmNow(BERLIN, new Date("2030-07-10T05:59:00Z")), false);
    assert.equal(isWarmNow(BERLIN, new Date("2030-07-10T06:00:00Z")), true);
  });

  it("takes the weekday in the zone, not in UTC", () => {
    // Friday 23:30 UTC is Saturday in Tokyo; Monday 00:30 in Tokyo is Sunday in UTC.
    const tokyo = { timeZone: "Asia/Tokyo", days: "Mon-Fri", from: "00:00", to: "23:59" };
    assert.equal(isWarmNow(tokyo, new Date("2030-01-11T23:30:00Z")), false);
    assert.equal(isWarmNow(tokyo, new Date("2030-01-13T15:30:00Z")), true);
  });

  it("is never warm at the weekend of a Mon-Fri schedule", () => {
    assert.equal(isWarmNow(BERLIN, new Date("2030-01-12T10:00:00Z")), false);
  });

  it("wants the most builders any environment on the builder asks for, and says whose hours", () => {
    const at = new Date("2030-01-09T10:00:00Z");
    assert.deepEqual(warmBuilders([{ environment: "dev", warm: undefined }], at), { count: 0 });
    assert.deepEqual(
      warmBuilders(
        [
          { environment: "dev", warm: undefined },
          { environment: "prod", warm: { builders: 1, hours: BERLIN } },
        ],
        at,
      ),
      { count: 1, reason: "warm hours of prod (Mon-Fri 08:00-18:00 Europe/Berlin)" },
    );
    assert.deepEqual(
      warmBuilders(
        [{ environment: "prod", warm: { builders: 1, hours: BERLIN } }],
        new Date("2030-01-09T20:00:00Z"),
      ),
      { count: 0 },
    );
  });
});
