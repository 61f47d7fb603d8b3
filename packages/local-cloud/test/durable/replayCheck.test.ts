import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import * as df from "durable-functions";
import type { OrchestrationContext, OrchestrationHandler, Task } from "durable-functions";
import { OrchestrationDriver, type ReplaySchemaName } from "../../src/durable/driver.js";
import type { HistoryEvent } from "../../src/durable/history.js";
import {
  checkReplayCompatibility,
  formatBreaks,
  historyAtCut,
  inFlightCuts,
  type RecordedRun,
} from "../../src/durable/replayCheck.js";

/** A toy orchestrator, as a list of steps: each change below edits the list. */
type Step =
  | { activity: string; input?: unknown }
  | { timerMs: number }
  /** `Task.any` of an event and a timeout timer, the losing timer cancelled. */
  | { race: string };

const RECORDED: Step[] = [
  { activity: "Prepare", input: 1 },
  { timerMs: 60_000 },
  { activity: "Build", input: 2 },
  { race: "Go" },
  { activity: "Deploy", input: 3 },
];

interface Toy {
  steps?: Step[];
  /** Runs on each activity result (a strict reader may throw). */
  read?: (name: string, result: unknown) => void;
  output?: (results: unknown[]) => unknown;
  log?: boolean;
}

function toy({ steps = RECORDED, read, output, log }: Toy = {}): OrchestrationHandler {
  return function* (context: OrchestrationContext): Generator<Task, unknown, unknown> {
    const results: unknown[] = [];
    for (const step of steps) {
      const now = context.df.currentUtcDateTime.getTime();
      if ("activity" in step) {
        const result = yield context.df.callActivity(step.activity, step.input);
        read?.(step.activity, result);
        results.push(result);
        if (log && !context.df.isReplaying) context.log(`${step.activity} done`);
      } else if ("timerMs" in step) {
        yield context.df.createTimer(new Date(now + step.timerMs));
      } else {
        const timeout = context.df.createTimer(new Date(now + 3600_000));
        const winner = yield context.df.Task.any([context.df.waitForExternalEvent(step.race), timeout]);
        if (winner !== timeout) timeout.cancel();
      }
    }
    return output ? output(results) : { phase: "done", results };
  };
}

const histories = new Map<ReplaySchemaName, RecordedRun>();

/** Runs the recorded toy on the local driver; every activity returns `{ value }`. */
async function record(schema: ReplaySchemaName): Promise<RecordedRun> {
  const driver = new OrchestrationDriver({
    name: "Toy",
    orchestrator: toy(),
    instanceId: `toy-${schema}`,
    input: { n: 1 },
    schema,
    activities: new Map(["Prepare", "Build", "Deploy"].map((name) => [name, () => ({ value: name })])),
    stallTimeoutMs: 2000,
  });
  driver.raiseEvent("Go", {});
  const status = await driver.run();
  assert.equal(status.runtimeStatus, "Completed");
  return {
    name: `toy-${schema}`,
    instanceId: driver.instanceId,
    input: { n: 1 },
    schema,
    history: driver.getHistory(),
    runtimeStatus: "Completed",
    output: status.output,
  };
}

const phase = (output: unknown) => (output as { phase?: unknown } | undefined)?.phase;

async function check(changed: Toy, schema: ReplaySchemaName = "V3") {
  const run = histories.get(schema)!;
  return checkReplayCompatibility(toy(changed), run, { outcome: phase });
}

/** Steps with `edit` applied to a copy. */
const edited = (edit: (steps: Step[]) => void): Step[] => {
  const steps = RECORDED.map((step) => ({ ...step }));
  edit(steps);
  return steps;
};

describe("replay compatibility check", () => {
  before(async () => {
    for (const schema of ["V1", "V3"] as const) histories.set(schema, await record(schema));
  });

  it("cuts the history before every OrchestratorStarted but the first, and delivers that episode's new events", () => {
    const history = histories.get("V3")!.history;
    const cuts = inFlightCuts(history);
    assert.ok(cuts.length >= 5, `one cut per episode: ${cuts.join(", ")}`);
    const cut = cuts[1]!;
    const replayed: HistoryEvent[] = historyAtCut(history, cut);
    assert.deepEqual(
      replayed.slice(0, cut),
      history.slice(0, cut).map((e) => ({ ...e, IsPlayed: true })),
    );
    // The old code's answer to the arriving events (its new tasks, the episode's end) is left out.
    assert.deepEqual(
      replayed.slice(cut).map((e) => e.EventType),
      [12, 5],
      "OrchestratorStarted, then the TaskCompleted that arrived",
    );
  });

  for (const schema of ["V1", "V3"] as const) {
    it(`passes the unchanged orchestrator at every cut (${schema})`, async () => {
      assert.deepEqual(await check({}, schema), []);
    });
  }

  describe("breaks, reported with the run, the cut, the event and what the new code does", () => {
    it("an activity inserted before a recorded one", async () => {
      const breaks = await check({ steps: edited((s) => s.splice(2, 0, { activity: "Lint" })) });
      assert.equal(breaks.length, 1, formatBreaks(breaks));
      const only = breaks[0];
      assert.ok(only);
      assert.equal(only.run, "toy-V3");
      assert.match(
        only.message,
        /records activity "Build" as sequence number 2; the new code schedules activity "Lint" there\. Azure would fail this instance \(NonDeterministicOrchestrationException\)/,
      );
      assert.match(only.where[0] ?? "", /^before event #\d+ \(next: the result of #2 Build\)$/);
      assert.ok(only.where.includes("the whole history"));
      const text = formatBreaks(breaks);
      assert.match(
        text,
        /^1 break\(s\) with recorded histories:\n- toy-V3, deploy landing before event #\d+/,
      );
      assert.match(text, /version the orchestrator \(README: Changing the orchestrator safely\)/);
    });

    it("an activity renamed", async () => {
      const breaks = await check({
        steps: edited((s) => (s[4] = { activity: "Release", input: 3 })),
      });
      assert.match(
        breaks[0]?.message ?? "",
        /records activity "Deploy" .* schedules activity "Release" there/,
      );
    });

    it("two activities reordered (V1)", async () => {
      const steps = edited((s) => ([s[0], s[2]] = [s[2]!, s[0]!]));
      const breaks = await check({ steps }, "V1");
      assert.match(
        breaks[0]?.message ?? "",
        /history event #\d+ records activity "Prepare" as sequence number 0; the new code schedules activity "Build" there/,
      );
    });

    it("a timer added before a recorded activity", async () => {
      // Prepare #0, timer #1, Build #2, the race's timeout #3, Deploy #4.
      const breaks = await check({ steps: edited((s) => s.splice(4, 0, { timerMs: 1000 })) });
      assert.match(
        breaks[0]?.message ?? "",
        /records activity "Deploy" as sequence number 4; the new code creates a timer there/,
      );
    });

    it("a recorded timer removed", async () => {
      const breaks = await check({ steps: edited((s) => s.splice(1, 1)) });
      assert.match(
        breaks[0]?.message ?? "",
        /records a timer \(fire at 2030-01-01T00:01:00\.000Z\) as sequence number 1; the new code schedules activity "Build" there/,
      );
    });

    it("a step removed from the end: the recorded activity is never scheduled", async () => {
      const breaks = await check({ steps: edited((s) => s.pop()) });
      assert.match(
        breaks[0]?.message ?? "",
        /records activity "Deploy" .*; the new code schedules nothing there/,
      );
    });

    it("a replay that now throws on a recorded result", async () => {
      const breaks = await check({
        read: (name, result) => {
          if (name === "Build" && typeof (result as { digest?: unknown }).digest !== "string") {
            throw new Error("Build returned no digest");
          }
        },
      });
      assert.match(
        breaks[0]?.message ?? "",
        /the new code throws where the recorded run did not: .*Build returned no digest/,
      );
      assert.match(breaks[0]?.where[0] ?? "", /next: the result of #2 Build/);
    });

    it("the whole history ending in another outcome", async () => {
      const breaks = await check({ output: () => ({ phase: "failed" }) });
      assert.deepEqual(
        breaks.map((b) => [b.where, b.message]),
        [[["the whole history"], 'the whole history now ends with outcome "failed", recorded "done"']],
      );
    });
  });

  describe("compatible changes pass", () => {
    const compatible: [string, Toy][] = [
      ["a new field in the output", { output: (results) => ({ phase: "done", results, extra: 1 }) }],
      ["a log line", { log: true }],
      [
        "an activity's input changed",
        { steps: edited((s) => (s[2] = { activity: "Build", input: { n: 9 } })) },
      ],
      ["a timer's length changed", { steps: edited((s) => (s[1] = { timerMs: 5000 })) }],
      [
        "an activity name's case (the host compares names ignoring case)",
        { steps: edited((s) => (s[4] = { activity: "deploy" })) },
      ],
      ["an activity added after the last recorded one", { steps: [...RECORDED, { activity: "Notify" }] }],
    ];
    for (const [what, change] of compatible) {
      it(what, async () => {
        const breaks = await check(change);
        assert.deepEqual(breaks, [], formatBreaks(breaks));
      });
    }
  });

  it("refuses an orchestrator using callActivityWithRetry, saying what to do", async () => {
    const retrying: OrchestrationHandler = function* (context: OrchestrationContext) {
      yield context.df.callActivityWithRetry("Prepare", new df.RetryOptions(1000, 2), 1);
    };
    await assert.rejects(
      checkReplayCompatibility(retrying, histories.get("V3")!),
      /replayCheck does not model callActivityWithRetry \(activity Prepare\): retry in the orchestrator with callActivity and a timer/,
    );
  });
});
