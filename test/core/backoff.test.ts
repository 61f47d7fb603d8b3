import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { POLL_INTERVAL_MS, pollDelayMs } from "../../src/cli/follow.js";
import { backoffDelayMs, type BackoffPolicy } from "../../src/core/backoff.js";
import { RETRY } from "../../src/core/retry.js";
import { POLLS } from "../../src/orchestration/poll.js";

describe("backoff", () => {
  // The delays every policy of the project gives, attempt by attempt (0 = the first wait).
  const table: [string, BackoffPolicy, number[]][] = [
    ["build command poll", POLLS.command, [5_000, 7_500, 11_250, 16_875, 25_313, 30_000, 30_000]],
    ["deploy poll", POLLS.deploy, [1_000, 1_000, 1_000, 1_000, 1_000]],
    ["builder-ready poll", POLLS.builderReady, [1_000, 1_200, 1_440, 1_728, 2_000, 2_000]],
    ["builder queue", POLLS.queue, [1_000, 1_500, 2_250, 3_375, 5_000, 5_000]],
    // Rounded at each step: 5_063 × 1.5 = 7_594.5 → 7_595 (not 1_000 × 1.5^5 = 7_593.75).
    ["command exit", POLLS.exit, [1_000, 1_500, 2_250, 3_375, 5_063, 7_595, 10_000]],
    ["ARM retry", RETRY.arm, [2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]],
    ["VM start retry", RETRY.vmStart, [15_000, 30_000, 60_000, 120_000, 120_000]],
    ["storage retry", RETRY.storage, [1_000, 2_000, 4_000, 8_000, 15_000, 15_000]],
  ];

  for (const [name, policy, delays] of table) {
    it(`gives the ${name} delays`, () => {
      assert.deepEqual(
        delays.map((_, attempt) => backoffDelayMs(policy, attempt)),
        delays,
      );
    });
  }

  it("gives the CLI's poll waits: doubling with each failure in a row, up to 8×", () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 10].map((failures) => pollDelayMs(POLL_INTERVAL_MS, failures)),
      [1_500, 3_000, 6_000, 12_000, 12_000, 12_000],
    );
  });

  it("never waits longer than the policy's maximum, even for a first wait above it", () => {
    assert.equal(backoffDelayMs({ firstMs: 9_000, factor: 2, maxMs: 5_000 }, 0), 5_000);
    assert.equal(backoffDelayMs(POLLS.command, 10_000), POLLS.command.maxMs);
  });
});
