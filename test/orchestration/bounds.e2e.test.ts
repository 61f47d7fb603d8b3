/**
 * What a build writes where Azure limits it, end to end (issue 14, items 1 and 6): every custom
 * status fits the Durable extension's 16 KB rule even when the builder's log and callback are
 * hostile, and the history of the longest allowed build stays within a stated bound.
 */
import { customStatusSizeError } from "@fast-build/local-cloud/durable/hostRules";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BuildStatus } from "../../src/core/api.js";
import { BUILD_EVENTS, builderKey } from "../../src/core/buildInput.js";
import { RESULT_LIMITS } from "../../src/core/buildResult.js";
import { createComputeGateway } from "../../src/azure/compute.js";
import {
  ACTIVITIES,
  type BuildCommandHandle,
  type BuildProgress,
  type ReadBuildInput,
} from "../../src/core/activityContract.js";
import { startArmEmulator, type RunCommandRun } from "@fast-build/local-cloud/arm";
import type { OrchestrationDriver } from "@fast-build/local-cloud/durable/driver";
import { HistoryEventType } from "@fast-build/local-cloud/durable/history";
import { gatewayOptions } from "../azure/armHelpers.js";
import {
  arm,
  assertRunCommandGone,
  driverFor,
  leases,
  newInput,
  resultLine,
  runCommandDeletes,
  scenario,
  useLocalCloud,
} from "./support.js";

useLocalCloud();

/**
 * The history of the longest build allowed (FASTBUILD_BUILD_TIMEOUT_MINUTES at its maximum, 240)
 * with the default 10-minute lease and a log that changes at every poll: about 480 polls (every
 * 30 s) of 8 events each (two episodes, the timer, the read), a renewal every 5 minutes, and at
 * most about 2 KB per poll (the read's input and the tail, at most 1 KB of UTF-16 JSON, escaped
 * again inside the event). Measured: 4,083 events, 0.94 MB (before the bounds: 9.3 MB). The
 * shortest lease (1 minute) renews at every poll: 5,807 events, 1.2 MB.
 */
const HISTORY_BOUND = { events: 4_500, bytes: 1_000_000 };

/** A log line JSON escapes to six times its length (`\u0001`), with quotes and tabs. */
const hostileLine = (n: number): string => `${n} ${'"\t\u0001'.repeat(100)}`;

describe("build status and history bounds end to end", () => {
  it("ends a failed build with a hostile log and callback terminal, cleaned up, every status within Azure's limit", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor((run) => {
      const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
      run.stdout(Array.from({ length: 40 }, (_, i) => hostileLine(i)).join("\n") + "\n");
      run.stderr(Array.from({ length: 40 }, (_, i) => `err ${hostileLine(i)}`).join("\n") + "\n");
      driver.raiseEvent(
        BUILD_EVENTS.buildCompleted,
        JSON.parse(
          resultLine(buildId, {
            status: "failed",
            exitReason: "app-build",
            exitCode: 21,
            failedStep: "app",
            // The longest the callback accepts (RESULT_LIMITS); it cuts longer texts, refuses the rest.
            image: `registry.example.test/${"x".repeat(RESULT_LIMITS.referenceChars - 30)}:tag`,
            baseKey: "k".repeat(RESULT_LIMITS.referenceChars),
            failedInstruction: '"\u0001'.repeat(2000),
            message: '"\u0001'.repeat(2000),
            logTail: Array.from({ length: 40 }, (_, i) => hostileLine(i)),
            timings: Object.fromEntries(
              Array.from({ length: RESULT_LIMITS.timings }, (_, i) => [`${"s".repeat(30)}-${i}`, i]),
            ),
          }),
        ),
      );
      return new Promise((resolve) => run.signal.addEventListener("abort", () => resolve({ exitCode: 137 })));
    });
    const input = newInput(s);
    const statuses: unknown[] = [];
    const driver: OrchestrationDriver = driverFor(s, input, "V3", undefined, {
      onUpdate: (update) => statuses.push(update.customStatus),
    });
    driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    const instance = await driver.run();

    assert.equal(instance.runtimeStatus, "Completed", `instance output: ${JSON.stringify(instance.output)}`);
    const status = instance.output as BuildStatus;
    assert.equal(status.terminal, true);
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "BuildFailed");
    assert.ok(statuses.length > 0);
    // The driver fails an episode whose status breaks Azure's rule; this names the status that did.
    for (const seen of statuses) assert.equal(customStatusSizeError(seen), undefined);
    await assertRunCommandGone(s, input.buildId);
    assert.ok(runCommandDeletes(input.buildId) >= 1, "the run command was deleted");
    const stored = await leases.read(builderKey(s.vm));
    assert.equal(stored?.record.holder, undefined, "the lease is released");
    const rows = await leases.listBuilds(builderKey(s.vm));
    assert.ok(
      rows.some((row) => row.buildId === input.buildId && row.outcome === "failed"),
      "activity is recorded",
    );
  });

  it("takes poll results in the shape written before the tail digest (the tail in every one)", async () => {
    const s = scenario({ powerState: "running" });
    arm.setRunCommandExecutor((run) => {
      const buildId = run.parameters.FASTBUILD_BUILD_ID ?? "";
      const failure = { status: "failed", exitReason: "app-build", exitCode: 21, image: undefined };
      run.stdout(`error[E0425]: cannot find value \`x\`\n${resultLine(buildId, failure)}\n`);
      return Promise.resolve({ exitCode: 21 });
    });
    const inputs: ReadBuildInput[] = [];
    const input = newInput(s);
    // The activity as it was: no digest in its result, so the orchestrator never has one to send.
    const driver = driverFor(s, input, "V3", (activities) => {
      const readBuild = activities.get(ACTIVITIES.readBuild);
      assert.ok(readBuild);
      return new Map([
        ...activities,
        [
          ACTIVITIES.readBuild,
          async (value: unknown, context) => {
            inputs.push(value as ReadBuildInput);
            const { logTailDigest: _digest, ...progress } = (await readBuild(
              value,
              context,
            )) as BuildProgress;
            return progress;
          },
        ],
      ]);
    });
    driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    const instance = await driver.run();

    const status = instance.output as BuildStatus;
    assert.equal(status.phase, "failed");
    assert.equal(status.error?.code, "BuildFailed");
    assert.deepEqual(status.logTail, ["error[E0425]: cannot find value `x`"]);
    assert.ok(inputs.length > 0 && inputs.every((read) => read.logTailDigest === undefined));
  });

  it("keeps the history of a 240-minute build whose log changes at every poll within its bound", async (t) => {
    // Its own emulator, whose run commands show new output at once (Azure's handler: every 15 s).
    const emulator = await startArmEmulator({ runCommandFlushMs: 1 });
    t.after(() => emulator.stop());
    const s = scenario({ emulator, powerState: "running", builds: { buildTimeoutMinutes: 240 } });
    const compute = createComputeGateway(gatewayOptions(emulator));
    let vm: RunCommandRun | undefined;
    emulator.setRunCommandExecutor((run) => {
      vm = run;
      return new Promise((resolve) => run.signal.addEventListener("abort", () => resolve({ exitCode: 137 })));
    });
    let polls = 0;
    /** The "VM" prints a new line before every poll and the poll starts once the view shows it. */
    const printLine = async (handle: BuildCommandHandle) => {
      const line = hostileLine(++polls);
      vm?.stdout(`${line}\n`);
      for (;;) {
        const view = await compute.readBuildCommand(s.vm, handle);
        if (view.output.includes(line) || view.executionState !== "Running") return;
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    };
    const input = newInput(s, { deploy: false });
    const statuses: unknown[] = [];
    const driver = driverFor(
      s,
      input,
      "V3",
      (activities) => {
        const readBuild = activities.get(ACTIVITIES.readBuild);
        assert.ok(readBuild);
        return new Map([
          ...activities,
          [
            ACTIVITIES.readBuild,
            async (value: unknown, context) => {
              await printLine((value as ReadBuildInput).handle);
              return readBuild(value, context);
            },
          ],
        ]);
      },
      { onUpdate: (update) => statuses.push(update.customStatus) },
    );
    driver.raiseEvent(BUILD_EVENTS.sourceUploaded, {});
    const instance = await driver.run();

    assert.equal((instance.output as BuildStatus).phase, "timed-out");
    const history = driver.getHistory();
    const bytes = JSON.stringify(history).length;
    const reads = history.filter(
      (e) => e.EventType === HistoryEventType.TaskCompleted && e.Result?.includes('"executionState"'),
    );
    const changed = reads.filter((e) => e.Result?.includes('"logTail"')).length;
    t.diagnostic(JSON.stringify({ polls, events: history.length, bytes, changed, reads: reads.length }));
    assert.ok(changed >= reads.length - 1, `the log changed at every poll (${changed} of ${reads.length})`);
    assert.ok(history.length <= HISTORY_BOUND.events, `${history.length} events`);
    assert.ok(bytes <= HISTORY_BOUND.bytes, `${bytes} bytes`);
    for (const seen of statuses) assert.equal(customStatusSizeError(seen), undefined);
  });
});
