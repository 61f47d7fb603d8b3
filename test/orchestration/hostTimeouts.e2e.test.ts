/**
 * Host timeouts (issue 14 item 2): Azure fails an activity that runs past host.json's
 * `functionTimeout` while its code keeps running, and the orchestrator retries it. The start and
 * the deploy are timed out here on the strict driver, their first run still working when the
 * retry runs, and each effect lands once.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { ACTIVITIES } from "../../src/core/activityContract.js";
import { BUILD_EVENTS } from "../../src/core/buildInput.js";
import { VirtualClock, type ActivityHandler } from "@fast-build/local-cloud/durable/driver";
import { HistoryEventType } from "@fast-build/local-cloud/durable/history";
import {
  appPatches,
  arm,
  assertRunCommandGone,
  newInput,
  runBuild,
  scenario,
  START,
  succeed,
  useLocalCloud,
  vmRequests,
} from "./support.js";

useLocalCloud();

/** host.json's functionTimeout (`[d.]hh:mm:ss`), the one definition the host applies, in ms. */
function functionTimeoutMs(): number {
  const host = JSON.parse(readFileSync(new URL("../../host.json", import.meta.url), "utf8")) as {
    functionTimeout: string;
  };
  const m = /^(?:(\d+)\.)?(\d{2}):(\d{2}):(\d{2})$/.exec(host.functionTimeout);
  assert.ok(m, `host.json functionTimeout ${host.functionTimeout}`);
  const [, days = "0", hours, minutes, seconds] = m;
  return (((Number(days) * 24 + Number(hours)) * 60 + Number(minutes)) * 60 + Number(seconds)) * 1000;
}

for (const name of [ACTIVITIES.startBuild, ACTIVITIES.deployImage] as const) {
  describe(`the host times out ${name} while it runs on (issue 14 item 2)`, () => {
    it("the orchestrator retries it: one script, one run command PUT, one PATCH, a terminal build with its cleanup", async () => {
      const s = scenario({ powerState: "running" });
      const starts: string[] = [];
      const inner = succeed();
      arm.setRunCommandExecutor((run) => {
        starts.push(run.parameters.FASTBUILD_BUILD_ID ?? "");
        return inner(run);
      });
      const clock = new VirtualClock(START);
      const input = newInput(s);
      const timeoutMs = functionTimeoutMs();
      assert.equal(timeoutMs, 600_000);
      // The first run does its work, then its reply hangs: it is still running when the retry runs.
      let release: () => void = () => undefined;
      const hung = new Promise<void>((resolve) => (release = resolve));
      let calls = 0;
      let timedOut = false;
      let firstSettled = false;
      const wrap = (activities: ReadonlyMap<string, ActivityHandler>) =>
        new Map(
          [...activities].map(([key, handler]): [string, ActivityHandler] => [
            key,
            key === name
              ? async (data, context) => {
                  if (++calls > 1) return handler(data, context);
                  const value = await handler(data, context);
                  await hung;
                  firstSettled = true;
                  return value;
                }
              : handler,
          ]),
        );
      const { status, driver } = await runBuild(
        s,
        input,
        "V3",
        (d) => d.raiseEvent(BUILD_EVENTS.sourceUploaded, {}),
        {
          clock,
          functionTimeoutMs: timeoutMs,
          timeoutGraceMs: 300,
          faults: { timeout: (call) => call.name === name && !timedOut && (timedOut = true) },
        },
        wrap,
      );
      assert.equal(status.phase, "succeeded", JSON.stringify(status.error));
      assert.equal(firstSettled, false, "the timed-out run was still running when the build ended");
      const failed = driver
        .getHistory()
        .filter((e) => e.EventType === HistoryEventType.TaskFailed)
        .map((e) => e.Reason);
      assert.deepEqual(failed, [
        `Activity function '${name}' failed: Timeout value of 00:10:00 was exceeded by function: Functions.${name}`,
      ]);
      assert.equal(calls, 2, "retried once");
      assert.deepEqual(starts, [input.buildId], "one script");
      assert.equal(
        vmRequests(s, "PUT", new RegExp(`/runcommands/fb-${input.buildId}$`, "i")).length,
        1,
        "one run command PUT",
      );
      assert.equal(appPatches(s), 1, "one PATCH");
      await assertRunCommandGone(s, input.buildId);
      release();
      await driver.settled();
      assert.equal(firstSettled, true);
      assert.equal(appPatches(s), 1, "the straggler added nothing");
    });
  });
}
