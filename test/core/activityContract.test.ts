/**
 * The activity contract is a compile-time guarantee: `npm run typecheck` checks the
 * `@ts-expect-error` lines below (an error that disappears fails the check). The test itself only
 * makes sure every registered name has a handler.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Task } from "durable-functions";
import { ACTIVITIES, type ActivityHandlers } from "../../src/core/activityContract.js";
import type { VmRef } from "../../src/core/ports.js";
import { RETRY } from "../../src/core/retry.js";
import type { RunContext } from "../../src/orchestration/context.js";

/** Never run: what the orchestrator's `call` accepts and returns. */
function* _orchestratorSide(run: RunContext, vm: VmRef): Generator<Task, void, unknown> {
  // @ts-expect-error startVm takes `{ vm }`, not a VM name
  yield* run.call(ACTIVITIES.startVm, vm.vmName, RETRY.vmStart);
  // @ts-expect-error readBuild needs the command's handle and the build id as well
  yield* run.call(ACTIVITIES.readBuild, { vm }, RETRY.arm);
  const status = yield* run.call(ACTIVITIES.getVmStatus, { vm }, RETRY.arm);
  // @ts-expect-error getVmStatus answers a VmStatus, which names no revision
  void status.revisionName;
}

/** Never run: what an activity's handler must accept and return. */
const _activitySide: Partial<ActivityHandlers> = {
  // @ts-expect-error a handler that wants another input than the orchestrator sends
  [ACTIVITIES.startVm]: (_input: { vmName: string }) =>
    Promise.resolve({ powerState: "running" as const, agentReady: true }),
  // @ts-expect-error a handler that answers something other than the contract's output
  [ACTIVITIES.deployImage]: () => Promise.resolve({ revision: "r1" }),
};

describe("activity contract", () => {
  it("names each activity once", () => {
    const names = Object.values(ACTIVITIES);
    assert.equal(new Set(names).size, names.length);
  });
});
