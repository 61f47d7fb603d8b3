import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as df from "durable-functions";
import type { OrchestrationContext, OrchestrationHandler } from "durable-functions";
import fc from "fast-check";
import {
  checkReplayPrefixes,
  NonDeterminismError,
  OrchestrationDriver,
  type ActivityHandler,
  type ReplaySchemaName,
} from "../../src/durable/driver.js";
import { HistoryEventType } from "../../src/durable/history.js";

const SCHEMAS: ReplaySchemaName[] = ["V1", "V3"];
const GREET = "Greet";
const FLAKY = "Flaky";

function drive(
  orchestrator: OrchestrationHandler,
  schema: ReplaySchemaName,
  activities: Record<string, ActivityHandler>,
  input: unknown = undefined,
) {
  return new OrchestrationDriver({
    name: "Test",
    orchestrator,
    instanceId: `i-${schema}`,
    input,
    schema,
    activities: new Map(Object.entries(activities)),
    stallTimeoutMs: 2000,
  });
}

const greet: ActivityHandler = (name) => `hello ${String(name)}`;

for (const schema of SCHEMAS) {
  describe(`local durable driver (${schema})`, () => {
    it("runs activities in order, passing results back and publishing custom status", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        context.df.setCustomStatus({ step: 1 });
        const a = (yield context.df.callActivity(GREET, "a")) as string;
        context.df.setCustomStatus({ step: 2 });
        const b = (yield context.df.callActivity(GREET, { n: "b" })) as string;
        return [a, b];
      };
      const driver = drive(orchestrator, schema, { [GREET]: greet });
      const status = await driver.run();
      assert.equal(status.runtimeStatus, "Completed");
      assert.deepEqual(status.output, ["hello a", "hello [object Object]"]);
      assert.deepEqual(status.customStatus, { step: 2 });
    });

    it("runs Task.all children and returns their results in order", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        const results = (yield context.df.Task.all([
          context.df.callActivity(GREET, "x"),
          context.df.callActivity(GREET, "y"),
        ])) as string[];
        return results;
      };
      const status = await drive(orchestrator, schema, { [GREET]: greet }).run();
      assert.deepEqual(status.output, ["hello x", "hello y"]);
    });

    it("delivers an event raised before the orchestrator waits for it, and the timer loses", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        yield context.df.callActivity(GREET, "first");
        const deadline = new Date(context.df.currentUtcDateTime.getTime() + 60_000);
        const timer = context.df.createTimer(deadline);
        const event = context.df.waitForExternalEvent("Go");
        const winner: unknown = yield context.df.Task.any([event, timer]);
        if (winner === event) {
          timer.cancel();
          return { got: event.result };
        }
        return "timeout";
      };
      const driver = drive(orchestrator, schema, { [GREET]: greet });
      driver.raiseEvent("Go", { v: 1 });
      const status = await driver.run();
      assert.deepEqual(status.output, { got: { v: 1 } });
      assert.deepEqual(driver.openTimers(), []);
    });

    it("sees a timer cancelled in a later replay than the one that created it", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        const timer = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 60_000));
        const event = context.df.waitForExternalEvent("Go");
        const winner: unknown = yield context.df.Task.any([event, timer]);
        if (winner === event) timer.cancel();
        return winner === event ? "event" : "timer";
      };
      let raised = false;
      const driver: OrchestrationDriver = new OrchestrationDriver({
        name: "Test",
        orchestrator,
        instanceId: "late-cancel",
        input: undefined,
        schema,
        activities: new Map(),
        // The event arrives only after the replay that emitted the timer.
        onUpdate: () => {
          if (!raised) {
            raised = true;
            driver.raiseEvent("Go", null);
          }
        },
      });
      const status = await driver.run();
      assert.equal(status.output, "event");
      assert.deepEqual(driver.openTimers(), []);
    });

    it("fires timers in virtual time and advances the orchestration clock", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        const start = context.df.currentUtcDateTime.getTime();
        const timer = context.df.createTimer(new Date(start + 3_600_000));
        const event = context.df.waitForExternalEvent("Never");
        const winner: unknown = yield context.df.Task.any([event, timer]);
        return { timedOut: winner === timer, elapsed: context.df.currentUtcDateTime.getTime() - start };
      };
      const status = await drive(orchestrator, schema, {}).run();
      assert.deepEqual(status.output, { timedOut: true, elapsed: 3_600_000 });
    });

    it("retries a failing activity per its RetryOptions, then succeeds", async () => {
      let calls = 0;
      const flaky: ActivityHandler = () => {
        calls++;
        if (calls < 3) throw new Error(`boom ${calls}`);
        return "ok";
      };
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        const retry = new df.RetryOptions(1000, 3);
        const value: unknown = yield context.df.callActivityWithRetry(FLAKY, retry, null);
        const after = (yield context.df.callActivity(GREET, "after")) as string;
        return [value, after];
      };
      const driver = drive(orchestrator, schema, { [FLAKY]: flaky, [GREET]: greet });
      const status = await driver.run();
      assert.equal(status.runtimeStatus, "Completed");
      assert.deepEqual(status.output, ["ok", "hello after"]);
      assert.equal(calls, 3);
      const failed = driver.getHistory().filter((e) => e.EventType === HistoryEventType.TaskFailed);
      assert.equal(failed.length, 2);
    });

    it("fails the task after the last attempt and lets the orchestrator catch it", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        try {
          yield context.df.callActivityWithRetry(FLAKY, new df.RetryOptions(500, 2), null);
          return "no error";
        } catch (error) {
          return `caught: ${(error as Error).message.split("\n")[0]}`;
        }
      };
      const flaky: ActivityHandler = () => {
        throw new Error("always");
      };
      const status = await drive(orchestrator, schema, { [FLAKY]: flaky }).run();
      assert.equal(status.output, "caught: Activity function 'Flaky' failed:  always ");
    });

    it("reports an orchestrator that throws as Failed with its message", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        yield context.df.callActivity(GREET, "x");
        throw new Error("bad input");
      };
      const status = await drive(orchestrator, schema, { [GREET]: greet }).run();
      assert.equal(status.runtimeStatus, "Failed");
      assert.match(String(status.output), /bad input/);
    });

    it("fails loudly when a replay does not repeat the actions of the previous one", async () => {
      let replays = 0;
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        replays++; // state outside the orchestration: differs on every replay
        yield context.df.callActivity(GREET, `call ${replays}`);
        yield context.df.callActivity(GREET, "second");
        return "done";
      };
      await assert.rejects(drive(orchestrator, schema, { [GREET]: greet }).run(), NonDeterminismError);
    });

    it("refuses a task reused inside a second Task.any", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        const event = context.df.waitForExternalEvent("Go");
        const t1 = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 1000));
        yield context.df.Task.any([event, t1]);
        const t2 = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 1000));
        yield context.df.Task.any([event, t2]);
        return "done";
      };
      await assert.rejects(drive(orchestrator, schema, {}).run(), /second Task.any/);
    });

    it("terminates a waiting instance", async () => {
      const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
        yield context.df.waitForExternalEvent("Never");
        return "done";
      };
      const driver = drive(orchestrator, schema, {});
      const running = driver.run();
      driver.terminate("stop it");
      const status = await running;
      assert.equal(status.runtimeStatus, "Terminated");
      assert.equal(status.output, "stop it");
    });

    it("emits the same actions when replayed from any prefix of a finished history (property)", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ fail: fc.boolean(), wait: fc.integer({ min: 1, max: 120 }) }), {
            minLength: 1,
            maxLength: 4,
          }),
          async (steps) => {
            const orchestrator: OrchestrationHandler = function* (context: OrchestrationContext) {
              const out: string[] = [];
              for (const [index, step] of steps.entries()) {
                const at = new Date(context.df.currentUtcDateTime.getTime() + step.wait * 1000);
                const timer = context.df.createTimer(at);
                const work = context.df.callActivity(step.fail ? FLAKY : GREET, `s${index}`);
                try {
                  const winner: unknown = yield context.df.Task.any([work, timer]);
                  if (winner === work && !timer.isCompleted) timer.cancel();
                  out.push(winner === work ? "work" : "timer");
                } catch {
                  out.push("failed");
                }
                context.df.setCustomStatus({ index, guid: context.df.newGuid(context.df.instanceId) });
              }
              return out;
            };
            const flaky: ActivityHandler = () => {
              throw new Error("nope");
            };
            const driver = drive(orchestrator, schema, { [GREET]: greet, [FLAKY]: flaky });
            const status = await driver.run();
            assert.notEqual(status.runtimeStatus, "Failed");
            await checkReplayPrefixes(orchestrator, {
              instanceId: driver.instanceId,
              history: driver.getHistory(),
              input: undefined,
              schema,
            });
          },
        ),
        { numRuns: 15 },
      );
    });
  });
}
