/**
 * Host stalls (issue 14 item 3): the function app down or scaled to zero for minutes between two
 * episodes, on one virtual clock shared by the orchestrations and their activities, so the
 * builder lease really expires.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ACTIVITIES } from "../../src/core/activityContract.js";
import type { BuildStatus } from "../../src/core/api.js";
import { BUILD_EVENTS, builderKey } from "../../src/core/buildInput.js";
import { VirtualClock, type ActivityHandler } from "@fast-build/local-cloud/durable/driver";
import {
  arm,
  driverFor,
  leases,
  newInput,
  runBuild,
  runUntilStopped,
  scenario,
  START,
  succeed,
  useLocalCloud,
  vmRequests,
} from "./support.js";

useLocalCloud();

const MINUTE = 60_000;

describe("host stalls on a shared virtual clock (issue 14 item 3)", () => {
  it("a stall shorter than the lease never loses the build", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor(succeed());
    const clock = new VirtualClock(START);
    let stalled = false;
    const { status } = await runBuild(
      s,
      newInput(s),
      "V3",
      (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
      {
        clock,
        // The first wait ends 8 minutes late: under the 10-minute lease.
        faults: {
          stallBefore: (next) => (next.kind === "timer" && !stalled ? ((stalled = true), 8 * MINUTE) : 0),
        },
      },
    );
    assert.ok(stalled);
    assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
  });

  it("a longer stall ends the build LeaseLost, and the build that took the expired lease never overlaps it", async () => {
    const s = scenario({ powerState: "running" });
    const clock = new VirtualClock(START);
    /** Real-time order of what the "VM" did: which build's script started and ended. */
    const events: string[] = [];
    const first = newInput(s);
    const second = newInput(s);
    arm.setRunCommandExecutor((run) => {
      const id = run.parameters.FASTBUILD_BUILD_ID ?? "";
      events.push(`start ${id}`);
      const work = id === first.buildId ? runUntilStopped(s)(run) : succeed()(run);
      return work.then((result) => {
        events.push(`end ${id}`);
        return result;
      });
    });
    let secondRun: Promise<unknown> | undefined;
    const secondDriver = driverFor(s, second, "V3", undefined, { clock });
    secondDriver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    let stalled = false;
    // After the stall the first build renews only once the second one holds the builder.
    const wrap = (activities: ReadonlyMap<string, ActivityHandler>) =>
      new Map(
        [...activities].map(([name, handler]): [string, ActivityHandler] => [
          name,
          name === ACTIVITIES.renewLease || name === ACTIVITIES.readBuild
            ? async (data, context) => {
                if (stalled && !secondRun) {
                  // The second build comes along during the stall and finds the lease expired.
                  secondRun = secondDriver.run();
                  for (const end = Date.now() + 20_000; Date.now() < end;) {
                    if ((await leases.read(builderKey(s.vm)))?.record.holder === second.buildId) break;
                    await new Promise((resolve) => setTimeout(resolve, 5));
                  }
                }
                return handler(data, context);
              }
            : handler,
        ]),
      );
    const driver = driverFor(s, first, "V3", wrap, {
      clock,
      faults: {
        // Once the first build's script runs, the host is down for 12 minutes: past the 10-minute lease.
        stallBefore: (next) =>
          next.kind === "timer" && !stalled && events.includes(`start ${first.buildId}`)
            ? ((stalled = true), 12 * MINUTE)
            : 0,
      },
    });
    driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    const instance = await driver.run();
    const status = instance.output as BuildStatus;
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "LeaseLost");
    assert.match(status.error?.message ?? "", new RegExp(`build ${second.buildId} took the builder`));
    assert.match(status.error?.message ?? "", /did not run the build in between/);
    const other = (await secondRun) as { output: BuildStatus };
    assert.equal(other.output.phase, "succeeded", JSON.stringify(other.output.error));
    // The first script ended before the second started: never two on the VM.
    assert.ok(
      events.indexOf(`end ${first.buildId}`) < events.indexOf(`start ${second.buildId}`),
      events.join(", "),
    );
    assert.equal(
      vmRequests(s, "POST", /\/(deallocate|start)$/i).length,
      0,
      "nobody stopped or started the VM",
    );
  });
});
