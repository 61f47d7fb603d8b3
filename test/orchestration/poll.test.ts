/**
 * The orchestrator's poll schedules (src/orchestration/poll.ts), computed from the one table: how
 * soon each poll sees a change and how many reads it spends, on the arithmetic of its waits (no
 * clock: a read's round trip is an assumption stated here, not a measurement).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { POLLS, pollWaitMs, type PollPolicy } from "../../src/orchestration/poll.js";

/** Azure's side of one probe: the activity's dispatch and its ARM read (an assumption). */
const ROUND_TRIP_MS = 500;

/** When each probe reads, from the poll's start, following `pollUntil`'s bookkeeping. */
function readTimes(policy: PollPolicy, untilMs: number, roundTripMs = ROUND_TRIP_MS): number[] {
  const times: number[] = [];
  let now = 0;
  let lateSince: number | undefined;
  for (let attempt = 0; now <= untilMs; attempt++) {
    times.push(now);
    now += roundTripMs;
    if (lateSince === undefined && now >= policy.expectedMs) lateSince = attempt;
    now += pollWaitMs(policy, attempt, lateSince);
  }
  return times;
}

const seenAt = (times: number[], readyAt: number) => times.find((t) => t >= readyAt);

describe("poll schedules", () => {
  it("sees a revision healthy at 25 s by 25.5 s, with 18 reads, then backs off once it is late", () => {
    const times = readTimes(POLLS.deploy, 15 * 60_000);
    const seen = seenAt(times, 25_000);
    assert.ok(seen !== undefined && seen <= 25_500, `seen at ${seen} ms`);
    // One ARM request each from version 6 (two before): fewer than the 1.5 s schedule's 14 × 2.
    assert.equal(times.filter((t) => t <= seen).length, 18);
    // A revision that never becomes healthy costs about 140 reads over the 15-minute deploy timeout.
    assert.ok(times.length <= 150, `${times.length} reads in 15 minutes`);
    const late = times.slice(-3);
    assert.equal(late[2]! - late[1]!, POLLS.deploy.lateMaxMs + ROUND_TRIP_MS);
  });

  it("sees the simulator's revision (healthy after 1.5 s) within a second", () => {
    // The local cloud answers at once; its revision is healthy 1.5 s after the PATCH (sim/).
    const seen = seenAt(readTimes(POLLS.deploy, 10_000, 0), 1_500);
    assert.ok(seen !== undefined && seen - 1_500 <= 1_000, `seen at ${seen} ms`);
  });

  it("starts every poll that waits on Azure at a second, never waiting longer than its late maximum", () => {
    for (const name of ["deploy", "builderReady", "queue", "exit"] as const) {
      const policy = POLLS[name];
      assert.equal(policy.firstMs, 1_000, name);
      for (const attempt of [0, 5, 50, 500]) {
        assert.ok(pollWaitMs(policy, attempt, undefined) <= policy.maxMs, name);
        assert.ok(pollWaitMs(policy, attempt, 0) <= policy.lateMaxMs, name);
      }
    }
  });

  it("continues a late poll from where its expected schedule ended, growing by the late factor", () => {
    // Late at attempt 3 (wait 1,000): the next waits grow 1,000 → 1,500 → 2,250 … up to 15 s.
    assert.deepEqual(
      [3, 4, 5, 9, 20].map((attempt) => pollWaitMs(POLLS.deploy, attempt, 3)),
      [1_000, 1_500, 2_250, 11_393, 15_000],
    );
  });

  it("keeps the build command's fallback poll and the exit grace on their one schedule", () => {
    assert.deepEqual(
      [0, 1, 2, 10].map((attempt) => pollWaitMs(POLLS.command, attempt, undefined)),
      [5_000, 7_500, 11_250, 30_000],
    );
  });
});
