/**
 * Delivery order (issue 14 item 5): Azure hands an episode what it dequeued, several messages in
 * one batch with one timestamp, in dequeue order (DurableTask.Core `TaskOrchestrationDispatcher.cs`),
 * so a timer due at an instant can come before, with or after an event raised at that instant.
 * The build must end the same way in every order the driver offers.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BuildStatus } from "../../src/core/api.js";
import { ACTIVITIES } from "../../src/core/activityContract.js";
import { BUILD_EVENTS } from "../../src/core/buildInput.js";
import {
  VirtualClock,
  type DeliveryOrdering,
  type OrchestrationDriver,
} from "@fast-build/local-cloud/durable/driver";
import {
  arm,
  assertRunCommandGone,
  appPatches,
  driverFor,
  leases,
  newInput,
  resultLine,
  runBuild,
  scenario,
  START,
  succeed,
  images,
  useLocalCloud,
} from "./support.js";
import { pushImage } from "../azure/registryImages.js";
import { builderKey } from "../../src/core/buildInput.js";

useLocalCloud();

const ORDERINGS: DeliveryOrdering[] = ["one-at-a-time", "timers-first", "batched"];
const MINUTE = 60_000;

for (const ordering of ORDERINGS) {
  describe(`delivery order ${ordering} (issue 14 item 5)`, () => {
    /**
     * The upload is raised when the clock stands at the source deadline (10 minutes after the
     * build's creation) or `lateMs` after it, as the host is about to deliver the deadline's
     * timer: in every ordering the timer's episode comes first, the upload at that same instant
     * after it (in timers-first also when both are due).
     */
    async function uploadAt(lateMs: number, version?: number) {
      const s = scenario({ powerState: "running", builds: { sourceTimeoutMinutes: 10, leaseMinutes: 10 } });
      arm.setRunCommandExecutor(succeed());
      const clock = new VirtualClock(START);
      const input = newInput(s, version === undefined ? {} : { orchestratorVersion: version });
      const deadline = START.getTime() + 10 * MINUTE;
      let raised: string | undefined;
      const driver: OrchestrationDriver = driverFor(s, input, "V3", undefined, {
        clock,
        ordering,
        faults: {
          stallBefore: (next) => {
            if (raised === undefined && next.kind === "timer" && clock.now().getTime() >= deadline + lateMs) {
              raised = clock.now().toISOString();
              driver.raiseEvent(BUILD_EVENTS.sourceUploaded, { size: 10, reportedAt: raised });
            }
            return 0;
          },
        },
      });
      const instance = await driver.run();
      assert.equal(instance.runtimeStatus, "Completed");
      assert.equal((await leases.read(builderKey(s.vm)))?.record.holder, undefined, "the lease is released");
      return { status: instance.output as BuildStatus, raised, deadline };
    }

    it("an upload reported at the exact source deadline proceeds, though its event comes after the deadline's timer", async () => {
      const { status, raised, deadline } = await uploadAt(0);
      assert.equal(raised, new Date(deadline).toISOString());
      assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
    });

    it("an upload reported after the deadline fails the build SourceNeverUploaded", async () => {
      const { status, raised, deadline } = await uploadAt(1);
      assert.ok(raised && Date.parse(raised) > deadline);
      assert.equal(status.phase, "failed");
      assert.equal(status.error?.code, "SourceNeverUploaded");
    });

    it("version 2 too: an upload delivered while the build renews its lease after the deadline's timer fired counts (the latch keeps the waiter that lost the race)", async () => {
      // The deadline's timer (10 min) falls on a renewal (every 5 min): the upload, raised as
      // that timer is delivered, reaches the waiter while fb_RenewLease runs.
      const { status } = await uploadAt(0, 2);
      assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
    });

    // Decision: a cancel that arrives with the result ends the build cancelled as long as nothing
    // was deployed: the user asked to stop before seeing the result, and the deploy is what a
    // cancel is for. Once a revision was created the build ends as it did (deploy.ts, version 4).
    for (const first of ["callback", "cancel"] as const) {
      it(`a cancel raised together with the completion callback (${first} first) ends the build cancelled, its cleanup done, nothing deployed`, async () => {
        const s = scenario({ powerState: "running" });
        let driver: OrchestrationDriver | undefined;
        arm.setRunCommandExecutor(async (run) => {
          const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
          await pushImage(images.url, "team/app", buildId);
          const callback = () =>
            driver?.raiseEvent(BUILD_EVENTS.buildCompleted, JSON.parse(resultLine(buildId)));
          const cancel = () =>
            driver?.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "changed my mind" });
          // Both at once: in batched ordering they are one episode.
          for (const raise of first === "callback" ? [callback, cancel] : [cancel, callback]) raise();
          run.stdout(`${resultLine(buildId)}\n`);
          return new Promise<{ exitCode: number }>((resolve) =>
            run.signal.addEventListener("abort", () => resolve({ exitCode: 137 })),
          );
        });
        const input = newInput(s);
        const { status } = await runBuild(
          s,
          input,
          "V3",
          (d) => {
            driver = d;
            d.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
          },
          { ordering },
        );
        assert.equal(status.phase, "cancelled", JSON.stringify(status.error));
        assert.equal(appPatches(s), 0, "nothing deployed");
        await assertRunCommandGone(s, input.buildId);
      });
    }
  });
}

describe("a cancel once the app was patched", () => {
  it("does not end the build cancelled over the revision it created: the build ends as its revision does", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(succeed());
    const input = newInput(s);
    // The wrapper runs only once the driver exists (the deploy comes long after it is made).
    const driver: OrchestrationDriver = driverFor(s, input, "V3", (activities) => {
      const wrapped = new Map(activities);
      const deployImage = activities.get(ACTIVITIES.deployImage)!;
      wrapped.set(ACTIVITIES.deployImage, async (...args) => {
        const answer: unknown = await deployImage(...args);
        driver.raiseEvent(BUILD_EVENTS.cancelRequested, { reason: "too late" });
        return answer;
      });
      return wrapped;
    });
    driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    const instance = await driver.run();
    const status = instance.output as BuildStatus;
    assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
    assert.equal(status.revision?.healthState, "Healthy");
    assert.equal(appPatches(s), 1);
    assert.equal((await leases.read(builderKey(s.vm)))?.record.holder, undefined, "the lease is released");
  });
});
