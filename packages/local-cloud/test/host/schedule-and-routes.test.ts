import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { parseSchedule } from "../../src/host/ncrontab.js";
import { byPrecedence, compileRoute, matchRoute } from "../../src/host/routes.js";

describe("NCRONTAB schedules", () => {
  it("finds the next five-minute mark", () => {
    const next = parseSchedule("0 */5 * * * *").next(new Date("2026-03-14T09:26:53.120Z"));
    assert.equal(next.toISOString(), "2026-03-14T09:30:00.000Z");
  });

  it("is strictly after the given moment, even on an occurrence", () => {
    const next = parseSchedule("0 */5 * * * *").next(new Date("2026-03-14T09:30:00.000Z"));
    assert.equal(next.toISOString(), "2026-03-14T09:35:00.000Z");
  });

  it("reads ranges, lists, names and day-of-week", () => {
    // 09:15 and 09:45 on weekdays in January.
    const schedule = parseSchedule("0 15,45 9 * jan mon-fri");
    assert.equal(schedule.next(new Date("2026-01-02T10:00:00Z")).toISOString(), "2026-01-05T09:15:00.000Z");
    assert.equal(schedule.next(new Date("2026-01-31T00:00:00Z")).toISOString(), "2027-01-01T09:15:00.000Z");
  });

  it("reads hh:mm:ss intervals", () => {
    assert.equal(
      parseSchedule("00:05:00").next(new Date("2026-01-01T00:00:00Z")).toISOString(),
      "2026-01-01T00:05:00.000Z",
    );
  });

  it("names the bad field of a bad schedule", () => {
    assert.throws(() => parseSchedule("*/5 * * * *"), /expected 6 NCRONTAB fields/);
    assert.throws(() => parseSchedule("0 61 * * * *"), /minute field "61"/);
    assert.throws(() => parseSchedule("0 0 * * * funday"), /day-of-week field "funday"/);
  });

  it("always lands on a matching second, after the moment, within one step", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 59 }),
        fc.date({ min: new Date("2020-01-01"), max: new Date("2030-01-01"), noInvalidDate: true }),
        (step, at) => {
          const next = parseSchedule(`*/${step} * * * * *`).next(at);
          assert.ok(next > at);
          assert.equal(next.getUTCSeconds() % step, 0);
          assert.ok(next.getTime() - at.getTime() <= 60_000);
        },
      ),
    );
  });
});

describe("route templates", () => {
  it("matches parameters, optional parameters and catch-alls", () => {
    assert.deepEqual(matchRoute(compileRoute("builds/{id}"), "builds/abc"), { id: "abc" });
    assert.deepEqual(matchRoute(compileRoute("Builds/{id}/source"), "builds/abc/SOURCE"), { id: "abc" });
    assert.equal(matchRoute(compileRoute("builds/{id}"), "builds/abc/source"), undefined);
    assert.deepEqual(matchRoute(compileRoute("items/{id?}"), "items"), {});
    assert.deepEqual(matchRoute(compileRoute("files/{*path}"), "files/a/b%2Fc"), { path: "a/b/c" });
    assert.equal(matchRoute(compileRoute("items/{id:int}"), "items/x"), undefined);
    assert.deepEqual(matchRoute(compileRoute("items/{id:int}"), "items/12"), { id: "12" });
  });

  it("tries literal segments before parameters", () => {
    const routes = [compileRoute("builds/{id}"), compileRoute("builds/latest")].sort(byPrecedence);
    assert.equal(routes[0]?.template, "builds/latest");
  });

  it("refuses a template it cannot read", () => {
    assert.throws(() => compileRoute("builds/{id"), /cannot read segment/);
    assert.throws(() => compileRoute("files/{*path}/more"), /catch-all must be the last segment/);
  });
});
