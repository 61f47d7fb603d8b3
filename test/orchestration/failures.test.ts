/**
 * Issue 15: every terminal reason says what happened, what became of the builder, and what to do.
 * The ways a build can end that the e2e suites reach (build.e2e, atLeastOnce.e2e: BuildFailed,
 * BuildTimeout, Cancelled, DeployFailed, DeployTimeout, SourceNeverUploaded, ForgedResult,
 * LeaseLost, UnknownEnvironment, a 500 that outlasts the retries) assert it there with
 * `assertReason`; this table covers every code through the one function that forms the reason,
 * with the builder's fates, and the status budget.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ACTIVITIES } from "../../src/core/activityContract.js";
import type { BuildStatus } from "../../src/core/api.js";
import { RESULT_LIMITS } from "../../src/core/buildResult.js";
import { decodeActivityFailure, encodeActivityError } from "../../src/core/retry.js";
import { finished, fitStatus, initialStatus, projectStatus } from "../../src/core/status.js";
import { PermanentError, TransientError } from "../../src/core/errors.js";
import { toTypedError } from "../../src/azure/errors.js";
import { terminalError, type BuilderFate, type EndCause } from "../../src/orchestration/failures.js";

const VM = "builder-blue";
const given = (command: BuilderFate["command"], extra: Partial<BuilderFate> = {}): BuilderFate => ({
  builder: VM,
  lease: "given-back",
  command,
  leaseMinutes: 10,
  ...extra,
});
const deleted = given({ kind: "deleted", name: "fb-b1" });

/** An activity failure as the orchestrator decodes it: the gateway's typed error through the host. */
function fromAzure(status: number, code: string, headers: Record<string, string> = {}) {
  const sdk = Object.assign(new Error(`${code}: the server said no`), {
    name: "RestError",
    statusCode: status,
    code,
    response: { headers: { get: (name: string) => headers[name.toLowerCase()] } },
  });
  return decodeActivityFailure(encodeActivityError(toTypedError(sdk, "arm", "start VM rg/builder-blue")));
}

const activity = (name: string, failure: ReturnType<typeof fromAzure>): EndCause => ({
  kind: "activity",
  activity: name,
  failure,
});

interface Row {
  what: string;
  cause: EndCause;
  fate: BuilderFate;
  /** What the message says happened, then what became of the builder. */
  message: RegExp;
  hint: RegExp;
}

const ended = (code: string, message: string, hint?: string): EndCause => ({
  kind: "ended",
  error: { code, message, ...(hint ? { hint } : {}) },
});

const rows: Row[] = [
  {
    what: "BuildFailed (published while the finished command is retired)",
    cause: ended("BuildFailed", "the build failed in step app (app-build, exit code 21)", "See the log."),
    fate: given({ kind: "retiring" }),
    message: /step app .*; its build command finished; builder builder-blue goes back to the queue once/,
    hint: /See the log/,
  },
  {
    what: "BuildTimeout",
    cause: ended("BuildTimeout", "the build did not finish within 30 minutes; it was stopped", "raise X"),
    fate: deleted,
    message:
      /30 minutes.*; its build command fb-b1 was deleted, which stops its script; builder builder-blue was given back$/,
    hint: /raise X/,
  },
  {
    what: "NoBuildResult",
    cause: ended("NoBuildResult", "the build command ended (Failed, exit code 1) without a result", "log"),
    fate: given({ kind: "kept" }),
    message:
      /without a result; its finished build command could not be deleted and stays on the VM \(not running\); builder builder-blue was given back$/,
    hint: /log/,
  },
  {
    what: "LeaseLost (the command stopped by name)",
    cause: ended("LeaseLost", "build b2 took the builder", "raise FASTBUILD_LEASE_MINUTES"),
    fate: { builder: VM, lease: "lost", command: { kind: "deleted", name: "fb-b1" } },
    message:
      /took the builder; its build command fb-b1 was deleted.*; its lease on builder builder-blue was lost/,
    hint: /FASTBUILD_LEASE_MINUTES/,
  },
  {
    what: "LeaseLost on the hybrid profile (nothing could stop the script)",
    cause: ended("LeaseLost", "build b2 took the builder", "raise FASTBUILD_LEASE_MINUTES"),
    fate: {
      builder: VM,
      lease: "lost",
      command: {
        kind: "not-stopped",
        note: "the build script could not be stopped (the hybrid profile's Run Command cannot be cancelled) and the builder lease was lost, so builder builder-blue was left running",
      },
    },
    message: /was left running; its lease on builder builder-blue was lost/,
    hint: /FASTBUILD_LEASE_MINUTES/,
  },
  {
    what: "DeployFailed",
    cause: ended(
      "DeployFailed",
      "revision app--b1 is Failed/Unhealthy; the previous revision keeps serving",
      "logs",
    ),
    fate: given({ kind: "retired" }, { beforeDeploy: true }),
    message:
      /keeps serving; builder builder-blue was given back when its build command finished, before the deploy$/,
    hint: /logs/,
  },
  {
    what: "DeployTimeout",
    cause: ended("DeployTimeout", "revision app--b1 was not healthy within 10 minutes", "raise Y"),
    fate: given({ kind: "retired" }, { beforeDeploy: true }),
    message: /before the deploy$/,
    hint: /raise Y/,
  },
  {
    what: "SourceNeverUploaded",
    cause: ended("SourceNeverUploaded", "source never uploaded", "Upload the archive"),
    fate: given({ kind: "not-started" }),
    message: /; no build command was started; builder builder-blue was given back$/,
    hint: /Upload the archive/,
  },
  {
    what: "ForgedResult",
    cause: ended("ForgedResult", "the build's result was refused, nothing was deployed: x", "Only an image"),
    fate: given({ kind: "retired" }, { beforeDeploy: true }),
    message: /nothing was deployed.*before the deploy$/,
    hint: /Only an image/,
  },
  {
    what: "Cancelled while queued",
    cause: ended("Cancelled", "cancelled: tired of waiting"),
    fate: { builder: VM, lease: "never-held", command: { kind: "not-started" } },
    message:
      /tired of waiting; it never held builder builder-blue \(it left the builder's queue\) and nothing ran on it$/,
    hint: /Start the build again when you want it/,
  },
  {
    what: "Cancelled on the hybrid profile (deallocated to stop the script)",
    cause: ended("Cancelled", "cancelled on request"),
    fate: given({
      kind: "not-stopped",
      note: "builder builder-blue was deallocated to stop the build script (the hybrid profile's Run Command cannot be cancelled); the next build starts it again",
    }),
    message: /was deallocated to stop the build script .*; the lease was given back$/,
    hint: /Start the build again/,
  },
  {
    what: "NoImage",
    cause: ended("NoImage", "the build succeeded but reported no image"),
    fate: given({ kind: "retiring" }),
    message: /no image; its build command finished/,
    hint: /build\.sh/,
  },
  {
    what: "BuilderNotReady, the lease not given back",
    cause: ended("BuilderNotReady", "builder builder-blue is starting after 10 minutes", "Check the VM"),
    fate: given({ kind: "not-started" }, { lease: "release-failed" }),
    message:
      /no build command was started; giving builder builder-blue back failed: its lease expires by itself within 10 minutes$/,
    hint: /Check the VM/,
  },
  {
    what: "a 500 that outlasts the retries, starting the command (a version 1 build)",
    cause: activity(ACTIVITIES.startBuild, fromAzure(500, "InternalServerError")),
    fate: given({ kind: "unknown" }),
    message:
      /^could not start the build command on the builder: it still failed after every retry \(start VM .*500 InternalServerError.*\); its build command may still be running/,
    hint: /Azure kept failing \(InternalServerError\) through every retry: start the build again in a few minutes; if it keeps failing, check https:\/\/azure\.status\.microsoft/,
  },
  {
    what: "a 503 that outlasts the retries, reading the build",
    cause: activity(ACTIVITIES.readBuild, fromAzure(503, "ServiceUnavailable")),
    fate: deleted,
    message:
      /^could not read the build command's progress: it still failed after every retry.*; its build command fb-b1 was deleted/,
    hint: /ServiceUnavailable.*azure\.status\.microsoft/,
  },
  {
    what: "throttling that outlasts the retries",
    cause: activity(
      ACTIVITIES.startVm,
      fromAzure(429, "SubscriptionRequestsThrottled", { "retry-after": "17" }),
    ),
    fate: given({ kind: "not-started" }),
    message:
      /^could not start the builder VM: .*; no build command was started; builder builder-blue was given back$/,
    hint: /throttling this subscription's requests: start the build again in a few minutes, or run fewer builds at once/,
  },
  {
    what: "a reset connection that outlasts the retries",
    cause: {
      kind: "activity",
      activity: ACTIVITIES.deployImage,
      failure: decodeActivityFailure(
        encodeActivityError(
          toTypedError(
            Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }),
            "arm",
            "update app",
          ),
        ),
      ),
    },
    fate: given({ kind: "retired" }, { beforeDeploy: true }),
    message: /^could not update the container app: it still failed after every retry.*before the deploy$/,
    hint: /Azure kept failing \(ECONNRESET\)/,
  },
  {
    what: "AllocationFailed through every VM-start retry",
    cause: activity(ACTIVITIES.startVm, {
      code: "AllocationFailed",
      message: "start VM failed: AllocationFailed: no capacity",
      retryable: true,
      hint: "Azure is short of capacity: retry with backoff.",
    }),
    fate: given({ kind: "not-started" }),
    message: /no build command was started; builder builder-blue was given back$/,
    hint: /no capacity for the builder's VM size in its region right now: start the build again later/,
  },
  {
    what: "the lease table failing through every retry",
    cause: activity(ACTIVITIES.acquireLease, {
      code: "StorageUnavailable",
      message: "acquire failed: no response",
      retryable: true,
    }),
    fate: { builder: VM, lease: "never-held", command: { kind: "not-started" } },
    message: /^could not take the builder's lease: .*; it never held builder builder-blue/,
    hint: /^Azure Storage kept failing \(StorageUnavailable\)/,
  },
  {
    what: "a permanent ARM failure with the gateway's hint (AuthorizationFailed)",
    cause: activity(ACTIVITIES.startVm, fromAzure(403, "AuthorizationFailed")),
    fate: given({ kind: "not-started" }),
    message:
      /^could not start the builder VM: start VM .* 403 AuthorizationFailed.*; no build command was started/,
    hint: /lacks a role on this resource/,
  },
  {
    what: "a permanent failure without a hint",
    cause: activity(
      ACTIVITIES.readApp,
      decodeActivityFailure(encodeActivityError(new PermanentError("bad", { code: "Odd" }))),
    ),
    fate: given({ kind: "retired" }, { beforeDeploy: true }),
    message: /^could not read the container app: bad; builder/,
    hint: /Azure refused the request and will refuse it again/,
  },
  {
    what: "an unknown environment (nothing resolved)",
    cause: activity(ACTIVITIES.resolveEnvironment, {
      code: "UnknownEnvironment",
      message: "unknown environment 'nope'",
      retryable: false,
      hint: "Use one of: blue, green.",
    }),
    fate: { builder: undefined, lease: "never-held", command: { kind: "not-started" } },
    message: /unknown environment 'nope'; no builder was used$/,
    hint: /Use one of/,
  },
  {
    what: "InternalError (a bug of ours)",
    cause: { kind: "internal" },
    fate: deleted,
    message: /^the build orchestration hit an unexpected error; its build command fb-b1 was deleted/,
    hint: /report it with the build id/,
  },
  {
    what: "InvalidInput",
    cause: ended("InvalidInput", "invalid build input: buildId: Required"),
    fate: { builder: undefined, lease: "never-held", command: { kind: "not-started" } },
    message: /Required; no builder was used$/,
    hint: /not valid/,
  },
  {
    what: "an unexpected activity error (not one of ours: retried, then out)",
    cause: activity(
      ACTIVITIES.getVmStatus,
      decodeActivityFailure(encodeActivityError(new TypeError("x is undefined"))),
    ),
    fate: given({ kind: "not-started" }),
    message:
      /^could not read the builder VM's state: it still failed after every retry \(TypeError: x is undefined\)/,
    hint: /kept failing \(Unexpected\)/,
  },
];

describe("every terminal reason says what happened to the builder and what to do (issue 15)", () => {
  for (const row of rows) {
    it(row.what, () => {
      const error = terminalError(row.cause, row.fate);
      assert.match(error.message, row.message);
      assert.ok(error.hint, "a hint");
      assert.match(error.hint ?? "", row.hint);
      assert.ok(error.message.length <= RESULT_LIMITS.messageChars + 1, "within the message limit");
    });
  }

  it("keeps the builder's fate when what happened is longer than the message limit", () => {
    const error = terminalError(
      ended("BuildFailed", `the build failed: ${"x".repeat(5_000)}`, "log"),
      deleted,
    );
    assert.ok(error.message.length <= RESULT_LIMITS.messageChars + 1);
    assert.match(
      error.message,
      /…; its build command fb-b1 was deleted, which stops its script; builder builder-blue was given back$/,
    );
    // Published as it is: the status budget keeps it whole.
    const status: BuildStatus = finished(
      initialStatus("b1", "blue", VM, "2030-01-01T00:00:00.000Z"),
      "failed",
      "2030-01-01T00:01:00.000Z",
      error,
    );
    assert.deepEqual(fitStatus(status).error, error);
  });

  it("keeps the code the failure had (the soak counts transient exhaustion by it)", () => {
    const failure = decodeActivityFailure(
      encodeActivityError(new TransientError("x", { code: "SubscriptionRequestsThrottled" })),
    );
    assert.equal(
      terminalError(activity(ACTIVITIES.startVm, failure), deleted).code,
      "SubscriptionRequestsThrottled",
    );
  });

  for (const runtimeStatus of ["Failed", "Terminated", "Completed"]) {
    it(`an orchestration that ended ${runtimeStatus} without its cleanup says what becomes of the builder`, () => {
      const status = projectStatus("b1", "blue", {
        runtimeStatus,
        customStatus: initialStatus("b1", "blue", VM, "2030-01-01T00:00:00.000Z"),
        output: null,
        createdTime: "2030-01-01T00:00:00.000Z",
        lastUpdatedTime: "2030-01-01T00:01:00.000Z",
      });
      assert.ok(status.error?.hint);
      assert.match(
        status.error?.message ?? "",
        /the idle check stops its build command and gives the builder back/,
      );
    });
  }
});
