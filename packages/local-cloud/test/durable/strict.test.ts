import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as df from "durable-functions";
import type { OrchestrationContext, OrchestrationHandler } from "durable-functions";
import {
  customStatusSizeError,
  OrchestrationDriver,
  VirtualClock,
  type ActivityHandler,
  type DriverOptions,
  type ReplaySchemaName,
} from "../../src/durable/driver.js";
import { HistoryEventType } from "../../src/durable/history.js";
import { jsonNetDateString, reformatDates } from "../../src/durable/hostRules.js";
import { LocalDurableEngine } from "../../src/durable/localEngine.js";

const SCHEMAS: ReplaySchemaName[] = ["V1", "V3"];
const START = new Date(Date.UTC(2030, 0, 1));
const TEN_MINUTES = 600_000;

function driver(
  orchestrator: OrchestrationHandler,
  schema: ReplaySchemaName,
  activities: Record<string, ActivityHandler>,
  extra: Partial<DriverOptions> = {},
) {
  return new OrchestrationDriver({
    name: "Toy",
    orchestrator,
    instanceId: `toy-${schema}`,
    input: null,
    schema,
    activities: new Map(Object.entries(activities)),
    stallTimeoutMs: 2000,
    ...extra,
  });
}

const eventsOf = (d: OrchestrationDriver, type: number) => d.getHistory().filter((e) => e.EventType === type);

describe("custom status size rule", () => {
  it("allows 17,407 UTF-16 bytes of JSON and refuses 17,408 with the host's message", () => {
    // A JSON string of n characters is "x".repeat(n - 2) with its quotes; 8,703 chars = 17,406 bytes.
    assert.equal(customStatusSizeError("x".repeat(8703 - 2)), undefined);
    assert.equal(
      customStatusSizeError("x".repeat(8704 - 2)),
      "The UTF-16 size of the JSON-serialized payload must not exceed 16 KB. The current payload size is 17 KB.",
    );
    // A non-BMP character is two UTF-16 units: half as many fit.
    assert.equal(customStatusSizeError("😀".repeat(4350)), undefined);
    assert.match(customStatusSizeError("😀".repeat(4351)) ?? "", /current payload size is 17 KB/);
    assert.equal(customStatusSizeError(undefined), undefined);
    assert.equal(customStatusSizeError(null), undefined);
  });
});

for (const schema of SCHEMAS) {
  describe(`strict local durable driver (${schema})`, () => {
    it("fails the episode whose final custom status is too large and schedules none of its actions", async () => {
      let cleanups = 0;
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        context.df.setCustomStatus({ phase: "small" });
        yield context.df.callActivity("Step", 1);
        try {
          context.df.setCustomStatus({ log: "x".repeat(9000) });
          yield context.df.callActivity("Step", 2);
        } finally {
          yield context.df.callActivity("Cleanup", null);
        }
        return "done";
      };
      const d = driver(orchestrator, schema, {
        Step: (n) => n,
        Cleanup: () => {
          cleanups++;
          return null;
        },
      });
      const status = await d.run();
      assert.equal(status.runtimeStatus, "Failed");
      assert.equal(
        status.output,
        "Orchestrator function 'Toy' failed: The UTF-16 size of the JSON-serialized payload must not exceed 16 KB. " +
          "The current payload size is 17 KB.",
      );
      assert.deepEqual(status.customStatus, { phase: "small" });
      assert.equal(cleanups, 0);
      assert.deepEqual(
        eventsOf(d, HistoryEventType.TaskScheduled).map((e) => e.Input),
        ["1"],
      );
    });

    it("checks only the episode's final custom status", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        context.df.setCustomStatus("y".repeat(20_000));
        context.df.setCustomStatus("fits");
        yield context.df.callActivity("Step", 1);
        return "done";
      };
      const status = await driver(orchestrator, schema, { Step: (n) => n }).run();
      assert.equal(status.runtimeStatus, "Completed");
      assert.equal(status.customStatus, "fits");
    });

    it("runs a redelivered activity again and records only the last run's outcome", async () => {
      const runs: number[] = [];
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        return (yield context.df.callActivity("Count", null)) as number;
      };
      const d = driver(
        orchestrator,
        schema,
        {
          Count: () => {
            runs.push(runs.length + 1);
            return runs.length;
          },
        },
        { faults: { redeliver: (call) => call.delivery === 1 } },
      );
      const status = await d.run();
      assert.deepEqual(runs, [1, 2]);
      assert.equal(status.output, 2);
      assert.equal(eventsOf(d, HistoryEventType.TaskCompleted).length, 1);
    });

    it("fails a timed-out call at start + functionTimeout with the host's message while the handler runs on", async () => {
      const clock = new VirtualClock(START);
      let finished = false;
      let release: () => void = () => undefined;
      const slow = new Promise<void>((resolve) => (release = resolve));
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        try {
          yield context.df.callActivity("Slow", null);
          return "no error";
        } catch (error) {
          return {
            message: (error as Error).message.split("\n")[0],
            at: context.df.currentUtcDateTime.getTime(),
          };
        }
      };
      const d = driver(
        orchestrator,
        schema,
        {
          Slow: async () => {
            await slow;
            finished = true;
          },
        },
        {
          clock: { kind: "virtual", clock },
          functionTimeoutMs: TEN_MINUTES,
          timeoutGraceMs: 50,
          faults: { timeout: (call) => call.name === "Slow" },
        },
      );
      const status = await d.run();
      assert.deepEqual(status.output, {
        message:
          "Activity function 'Slow' failed: Timeout value of 00:10:00 was exceeded by function: Functions.Slow ",
        at: START.getTime() + TEN_MINUTES,
      });
      assert.equal(finished, false);
      release();
      await d.settled();
      assert.equal(finished, true);
    });

    it("a timed-out run's work before it blocks lands before its deadline, so the retry sees it (virtual clock)", async () => {
      const clock = new VirtualClock(START);
      const seen: string[] = [];
      let release: () => void = () => undefined;
      const blocked = new Promise<void>((resolve) => (release = resolve));
      let runs = 0;
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        for (;;) {
          try {
            return (yield context.df.callActivity("Put", null)) as number;
          } catch {
            // Retried as an orchestrator retries a timed-out call.
          }
        }
      };
      const d = driver(
        orchestrator,
        schema,
        {
          Put: async () => {
            const run = ++runs;
            seen.push(`run ${run} starts at ${clock.now().toISOString()}`);
            // Some real time of work (a few HTTPS calls), then the first run blocks.
            await new Promise((resolve) => setTimeout(resolve, 30));
            seen.push(`run ${run} put at ${clock.now().toISOString()}`);
            if (run === 1) await blocked;
            return run;
          },
        },
        {
          clock: { kind: "virtual", clock },
          functionTimeoutMs: TEN_MINUTES,
          timeoutGraceMs: 200,
          faults: { timeout: (call) => call.delivery === 1 && call.id === 0 },
        },
      );
      const status = await d.run();
      const deadline = new Date(START.getTime() + TEN_MINUTES).toISOString();
      assert.equal(status.output, 2);
      assert.deepEqual(seen, [
        `run 1 starts at ${START.toISOString()}`,
        `run 1 put at ${START.toISOString()}`,
        `run 2 starts at ${deadline}`,
        `run 2 put at ${deadline}`,
      ]);
      release();
      await d.settled();
    });

    it("shares one virtual clock with activities and lets the host stall on it", async () => {
      const clock = new VirtualClock(START);
      const seen: string[] = [];
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        const before = context.df.currentUtcDateTime.getTime();
        yield context.df.callActivity("Now", null);
        yield context.df.callActivity("Now", null);
        return { before, after: context.df.currentUtcDateTime.getTime() };
      };
      const d = driver(
        orchestrator,
        schema,
        {
          Now: () => {
            seen.push(clock.now().toISOString());
            return null;
          },
        },
        {
          clock: { kind: "virtual", clock },
          faults: {
            stallBefore: (next) => (next.kind === "activity-result" && next.episode === 2 ? 300_000 : 0),
          },
        },
      );
      const status = await d.run();
      const plus5 = new Date(START.getTime() + 300_000).toISOString();
      assert.deepEqual(status.output, { before: START.getTime(), after: START.getTime() + 300_000 });
      assert.deepEqual(seen, [START.toISOString(), plus5]);
      assert.equal(d.now().toISOString(), plus5);
    });

    it("resumes from a history cut mid-run and ends with the same output", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        const a = (yield context.df.callActivityWithRetry(
          "Flaky",
          new df.RetryOptions(1000, 3),
          "a",
        )) as string;
        const timer = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 60_000));
        const go = context.df.waitForExternalEvent("Go");
        const winner: unknown = yield context.df.Task.any([go, timer]);
        if (winner === go) timer.cancel();
        const b = (yield context.df.callActivity("Echo", "b")) as string;
        return [a, winner === go ? go.result : "timeout", b];
      };
      let flaky = 0;
      const activities = {
        Flaky: (input: unknown) => {
          if (++flaky % 2 === 1) throw new Error("odd call");
          return input;
        },
        Echo: (input: unknown) => input,
      };
      const whole = driver(orchestrator, schema, activities);
      whole.raiseEvent("Go", "went");
      const expected = await whole.run();
      assert.equal(expected.runtimeStatus, "Completed");

      for (let cut = 1; cut < eventsOf(whole, HistoryEventType.OrchestratorStarted).length; cut++) {
        flaky = 0;
        const first = driver(orchestrator, schema, activities, { stopAfterEpisodes: cut });
        first.raiseEvent("Go", "went");
        const stopped = await first.run();
        assert.notEqual(stopped.runtimeStatus, "Completed", `cut ${cut}`);
        const resumed = driver(orchestrator, schema, activities, {
          history: first.getHistory(),
          undelivered: first.undeliveredEvents(),
        });
        const status = await resumed.run();
        assert.deepEqual(status.output, expected.output, `cut ${cut}`);
      }
    });

    it("runs an activity again after a crash before its result was recorded", async () => {
      let calls = 0;
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        return (yield context.df.callActivity("Once", null)) as number;
      };
      const activities = {
        Once: () => {
          calls++;
          if (calls === 1) d.crash();
          return calls;
        },
      };
      const d = driver(orchestrator, schema, activities);
      assert.equal((await d.run()).runtimeStatus, "Running");
      const status = await driver(orchestrator, schema, activities, { history: d.getHistory() }).run();
      assert.equal(status.output, 2);
      assert.equal(calls, 2);
    });

    for (const ordering of ["one-at-a-time", "timers-first"] as const) {
      it(`delivers an event raised when a timer is due ${ordering === "timers-first" ? "after" : "before"} the timer (${ordering})`, async () => {
        const clock = new VirtualClock(START);
        const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
          const timer = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 60_000));
          const go = context.df.waitForExternalEvent("Go");
          const winner: unknown = yield context.df.Task.any([go, timer]);
          if (winner === go) timer.cancel();
          return winner === go ? "event" : "timer";
        };
        let raised = false;
        const d: OrchestrationDriver = driver(
          orchestrator,
          schema,
          {},
          {
            clock: { kind: "virtual", clock },
            ordering,
            onUpdate: () => {
              if (raised) return;
              raised = true;
              clock.advance(60_000);
              d.raiseEvent("Go", null);
            },
          },
        );
        const status = await d.run();
        assert.equal(status.output, ordering === "timers-first" ? "timer" : "event");
      });
    }

    it("delivers two events in one episode with one timestamp when batched", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        const a = (yield context.df.waitForExternalEvent("A")) as string;
        const b = (yield context.df.waitForExternalEvent("B")) as string;
        const c = (yield context.df.callActivity("Echo", "c")) as string;
        return [a, b, c];
      };
      const d = driver(orchestrator, schema, { Echo: (x) => x }, { ordering: "batched" });
      let raised = false;
      const run = d.run();
      d.raiseEvent("A", "a");
      d.raiseEvent("B", "b");
      raised = true;
      const status = await run;
      assert.ok(raised);
      assert.deepEqual(status.output, ["a", "b", "c"]);
      const history = d.getHistory();
      const first = history.findIndex((e) => e.EventType === HistoryEventType.EventRaised);
      assert.equal(history[first + 1]?.EventType, HistoryEventType.EventRaised, "both events in one episode");
      assert.equal(history[first]?.Timestamp, history[first + 1]?.Timestamp);
    });

    it("keeps retry numbering in lockstep when batched", async () => {
      let calls = 0;
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        const retry = new df.RetryOptions(1000, 3);
        const results = (yield context.df.Task.all([
          context.df.callActivityWithRetry("Flaky", retry, "x"),
          context.df.callActivity("Echo", "y"),
          context.df.callActivityWithRetry("Flaky", retry, "z"),
        ])) as string[];
        const after = (yield context.df.callActivity("Echo", "after")) as string;
        return [...results, after];
      };
      const d = driver(
        orchestrator,
        schema,
        {
          Flaky: (input) => {
            if (++calls <= 2) throw new Error("first attempts fail");
            return input;
          },
          Echo: (x) => x,
        },
        { ordering: "batched" },
      );
      const status = await d.run();
      assert.equal(status.runtimeStatus, "Completed", JSON.stringify(status.output));
      assert.deepEqual(status.output, ["x", "y", "z", "after"]);
    });

    it("fires a cancelled timer at its due time in an episode that changes nothing", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        const timer = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 60_000));
        const go = context.df.waitForExternalEvent("Go");
        yield context.df.Task.any([go, timer]);
        timer.cancel();
        yield context.df.callActivity("Wait", null);
        // Still running when the cancelled timer is due: it fires, and changes nothing.
        yield context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 60_000));
        return "done";
      };
      const clock = new VirtualClock(START);
      const d = driver(
        orchestrator,
        schema,
        {
          // The host is busy past the cancelled timer's time.
          Wait: () => {
            clock.advance(120_000);
            return null;
          },
        },
        { clock: { kind: "virtual", clock } },
      );
      d.raiseEvent("Go", null);
      const status = await d.run();
      assert.equal(status.output, "done");
      const fired = eventsOf(d, HistoryEventType.TimerFired).map((e) => e.TimerId);
      const [cancelled, later] = eventsOf(d, HistoryEventType.TimerCreated).map((e) => e.EventId);
      assert.deepEqual(fired, [cancelled, later]);
      assert.deepEqual(d.openTimers(), []);
    });

    it("reformats date strings nested in activity inputs and results as Json.NET does", async () => {
      const received: unknown[] = [];
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        const result: unknown = yield context.df.callActivity("Dates", {
          at: "2030-01-01T00:00:00.000Z",
          top: "kept",
        });
        const bare: unknown = yield context.df.callActivity("Dates", "2030-01-01T00:00:00.120Z");
        return { result, bare };
      };
      const status = await driver(orchestrator, schema, {
        Dates: (input) => {
          received.push(input);
          return { when: "2030-01-02T03:04:05.670Z" };
        },
      }).run();
      assert.deepEqual(received, [{ at: "2030-01-01T00:00:00Z", top: "kept" }, "2030-01-01T00:00:00.120Z"]);
      assert.deepEqual(status.output, {
        result: { when: "2030-01-02T03:04:05.67Z" },
        bare: { when: "2030-01-02T03:04:05.67Z" },
      });
    });

    it("reports its history's size", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        yield context.df.callActivity("Echo", "x");
        return "done";
      };
      const d = driver(orchestrator, schema, { Echo: (x) => x });
      await d.run();
      const stats = d.historyStats();
      assert.equal(stats.events, d.getHistory().length);
      assert.equal(stats.bytes, Buffer.byteLength(JSON.stringify(d.getHistory())));
    });
  });
}

describe("Json.NET date strings", () => {
  it("drops trailing zeros of fractions, keeps Z, converts offsets to the host's UTC and leaves non-dates", () => {
    assert.equal(jsonNetDateString("2030-01-01T00:00:00.000Z"), "2030-01-01T00:00:00Z");
    assert.equal(jsonNetDateString("2020-01-01T23:59:59.340+09:00"), "2020-01-01T14:59:59.34+00:00");
    assert.equal(jsonNetDateString("2020-07-23T00:00:00-05:00"), "2020-07-23T05:00:00+00:00");
    assert.equal(jsonNetDateString("2030-01-01T00:00:00.5"), "2030-01-01T00:00:00.5");
    assert.equal(jsonNetDateString("2030-02-30T00:00:00Z"), "2030-02-30T00:00:00Z");
    assert.equal(jsonNetDateString("2030-01-01"), "2030-01-01");
    assert.equal(jsonNetDateString("at 2030-01-01T00:00:00.000Z"), "at 2030-01-01T00:00:00.000Z");
    assert.deepEqual(reformatDates(["2030-01-01T00:00:00.000Z"], "preserve", true), [
      "2030-01-01T00:00:00.000Z",
    ]);
  });
});

describe("strict local durable engine", () => {
  const approval: OrchestrationHandler = function* (context: OrchestrationContext) {
    context.df.setCustomStatus("waiting");
    const a = (yield context.df.callActivity("Echo", "a")) as string;
    const go = (yield context.df.waitForExternalEvent("Go")) as string;
    const b = (yield context.df.callActivity("Echo", "b")) as string;
    return [a, go, b];
  };

  it("reads Pending without a custom status until the host picks the instance up", async () => {
    const engine = new LocalDurableEngine({
      orchestrators: new Map([["Approval", approval]]),
      activities: new Map([["Echo", (x: unknown) => x]]),
      clock: { kind: "real" },
      pickupDelayMs: 50,
    });
    await engine.startNew("Approval", "p-1", null);
    const before = await engine.getStatus("p-1");
    assert.equal(before?.runtimeStatus, "Pending");
    assert.equal(before?.customStatus, undefined);
    await engine.raiseEvent("p-1", "Go", "go");
    const done = await engine.waitForCompletion("p-1", 10_000);
    assert.deepEqual(done.output, ["a", "go", "b"]);
    await engine.stop();
  });

  it("crashes with every instance mid-run and resumes them on restart", async () => {
    const clock = new VirtualClock(START);
    let echoes = 0;
    const engine = new LocalDurableEngine({
      orchestrators: new Map([["Approval", approval]]),
      activities: new Map([
        [
          "Echo",
          (x: unknown) => {
            echoes++;
            return x;
          },
        ],
      ]),
      clock: { kind: "virtual", clock },
      stallTimeoutMs: 5000,
    });
    await engine.startNew("Approval", "c-1", null);
    await engine.startNew("Approval", "c-2", null);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await engine.crash();
    assert.equal((await engine.getStatus("c-1"))?.runtimeStatus, "Running");
    await engine.raiseEvent("c-1", "Go", "one");
    await engine.raiseEvent("c-2", "Go", "two");
    engine.restart();
    assert.deepEqual((await engine.waitForCompletion("c-1", 10_000)).output, ["a", "one", "b"]);
    assert.deepEqual((await engine.waitForCompletion("c-2", 10_000)).output, ["a", "two", "b"]);
    assert.ok(echoes >= 4);
    await engine.settled();
    await engine.stop();
  });
});
