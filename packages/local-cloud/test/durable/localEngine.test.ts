import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { OrchestrationContext, OrchestrationHandler } from "durable-functions";
import { LocalDurableEngine } from "../../src/durable/localEngine.js";

const approval: OrchestrationHandler = function* (context: OrchestrationContext) {
  context.df.setCustomStatus({ waiting: true });
  const deadline = new Date(context.df.currentUtcDateTime.getTime() + 50);
  const timer = context.df.createTimer(deadline);
  const event = context.df.waitForExternalEvent("Approve");
  const winner: unknown = yield context.df.Task.any([event, timer]);
  if (winner === event) timer.cancel();
  const greeting = (yield context.df.callActivity("Greet", context.df.getInput())) as string;
  return { approved: winner === event, greeting };
};

function engine(kind: "virtual" | "real") {
  return new LocalDurableEngine({
    orchestrators: new Map([["Approval", approval]]),
    activities: new Map([["Greet", (name: unknown) => `hello ${String(name)}`]]),
    clock: kind === "virtual" ? { kind: "virtual" } : { kind: "real" },
    stallTimeoutMs: 2000,
  });
}

describe("local durable engine", () => {
  it("starts an instance, delivers a raised event and reports Durable-style status", async () => {
    const e = engine("real");
    await e.startNew("Approval", "inst-1", "ada");
    await e.raiseEvent("inst-1", "Approve", true);
    const done = await e.waitForCompletion("inst-1", 10_000);
    assert.equal(done.runtimeStatus, "Completed");
    assert.deepEqual(done.output, { approved: true, greeting: "hello ada" });
    assert.deepEqual(done.customStatus, { waiting: true });
    assert.equal(done.name, "Approval");
    assert.equal(done.instanceId, "inst-1");
    assert.deepEqual(await e.getStatus("inst-1"), done);
    assert.equal((await e.listInstances()).length, 1);
    await e.stop();
  });

  it("fires a timer in real time when no event comes", async () => {
    const e = engine("real");
    await e.startNew("Approval", "inst-2", "bob");
    const done = await e.waitForCompletion("inst-2", 10_000);
    assert.deepEqual(done.output, { approved: false, greeting: "hello bob" });
    await e.stop();
  });

  it("refuses a second start of a running instance and terminates on request", async () => {
    const e = new LocalDurableEngine({
      orchestrators: new Map([
        [
          "Forever",
          function* (context: OrchestrationContext) {
            yield context.df.waitForExternalEvent("Never");
          } as OrchestrationHandler,
        ],
      ]),
      activities: new Map(),
    });
    await e.startNew("Forever", "inst-3", null);
    await assert.rejects(e.startNew("Forever", "inst-3", null), /already exists/);
    await e.terminate("inst-3", "enough");
    const done = await e.waitForCompletion("inst-3", 10_000);
    assert.equal(done.runtimeStatus, "Terminated");
    assert.equal(done.output, "enough");
    assert.equal(await e.getStatus("missing"), undefined);
    await e.stop();
  });
});
