import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  addRecentBuild,
  estimateDuration,
  formatDuration,
  RECENT_BUILDS,
  type RecentBuild,
} from "../../src/core/expectedDuration.js";

const build = (n: number, base: "hit" | "miss", seconds: number): RecentBuild => ({
  buildId: `b${n}`,
  base,
  durationMs: seconds * 1000,
  endedAt: new Date(Date.UTC(2030, 0, 1, 0, 0, n)).toISOString(),
});

describe("expected duration", () => {
  it("is the median of the recent builds with the same base outcome", () => {
    const list = [build(1, "hit", 40), build(2, "miss", 300), build(3, "hit", 20), build(4, "hit", 30)];
    assert.deepEqual(estimateDuration(list, "hit"), {
      medianMs: 30_000,
      builds: 3,
      text: "about 30 s (median of 3 earlier builds with a base hit)",
    });
    assert.equal(estimateDuration(list, "miss").text, "about 5 min (the last build with a base miss)");
    assert.equal(estimateDuration([build(1, "hit", 10), build(2, "hit", 21)], "hit").medianMs, 15_500);
  });

  it("says unknown, and makes nothing up, without an earlier build of that kind", () => {
    assert.deepEqual(estimateDuration([build(1, "hit", 40)], "miss"), {
      medianMs: undefined,
      builds: 0,
      text: "unknown (no earlier build with a base miss)",
    });
  });

  it("looks at the last builds only", () => {
    const list = Array.from({ length: RECENT_BUILDS.keep }, (_, i) => build(i, "hit", i < 10 ? 1000 : 10));
    assert.equal(estimateDuration(list, "hit").medianMs, 10_000);
    assert.equal(estimateDuration(list, "hit").builds, RECENT_BUILDS.consider);
  });

  it("adds a build once (recording is at least once), keeps time order and a bound", () => {
    let list: RecentBuild[] = [];
    list = addRecentBuild(list, build(2, "hit", 2));
    list = addRecentBuild(list, build(1, "hit", 1));
    list = addRecentBuild(list, build(2, "hit", 2));
    assert.deepEqual(
      list.map((b) => b.buildId),
      ["b1", "b2"],
    );
    for (let n = 3; n < 100; n++) list = addRecentBuild(list, build(n, "miss", n));
    assert.equal(list.length, RECENT_BUILDS.keep);
    assert.equal(list.at(-1)?.buildId, "b99");
  });

  it("is said the way a person says a wait", () => {
    for (const [ms, text] of [
      [0, "1 s"],
      [8_400, "8 s"],
      [89_000, "89 s"],
      [95_000, "2 min"],
      [59 * 60_000, "59 min"],
      [60 * 60_000, "1 h"],
      [65 * 60_000, "1 h 5 min"],
    ] as const) {
      assert.equal(formatDuration(ms), text, String(ms));
    }
  });
});
