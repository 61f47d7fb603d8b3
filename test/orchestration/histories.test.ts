/**
 * Every recorded build history of every release (test/fixtures/histories/<release>/) replays on
 * the current orchestrator as the Durable Functions host would replay an in-flight instance after
 * a deploy: at every cut, and as a whole. Pure replay, no cloud. A failure names the fixture, the
 * cut, the event and what the code does now; see README "Changing the orchestrator safely".
 */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import type { BuildStatus } from "../../src/core/api.js";
import { BUILD_ORCHESTRATOR } from "../../src/core/activityContract.js";
import { buildOrchestrator } from "../../src/orchestration/build.js";
import {
  checkReplayCompatibility,
  formatBreaks,
  type ReplayBreak,
} from "@fast-build/local-cloud/durable/replayCheck";
import { readHistoryFixtures, recordedRun, type HistoryFixture } from "./historyFixtures.js";

/** What a replayed build must still end with: the phase the developer saw. */
const phaseOf = (output: unknown) => (output as BuildStatus | undefined)?.phase;

describe("recorded build histories replay on the current orchestrator", () => {
  let fixtures: HistoryFixture[];
  before(async () => {
    fixtures = await readHistoryFixtures();
  });

  it("has recordings of this release's builds to check against", () => {
    assert.ok(fixtures.length >= 12, `found ${fixtures.length}; record them with npm run record-histories`);
    for (const fixture of fixtures) {
      assert.equal(
        fixture.orchestrator,
        BUILD_ORCHESTRATOR,
        `${fixture.release}/${fixture.name} was recorded on ${fixture.orchestrator}: replay it on the handler registered under that name`,
      );
    }
  });

  it("replays every fixture at every in-flight cut with no break", async () => {
    const breaks: ReplayBreak[] = [];
    for (const fixture of fixtures) {
      breaks.push(
        ...(await checkReplayCompatibility(buildOrchestrator, recordedRun(fixture), {
          outcome: phaseOf,
          cuts: fixture.inFlight.map((point) => point.cut),
        })),
      );
    }
    assert.deepEqual(breaks, [], formatBreaks(breaks));
  });
});
