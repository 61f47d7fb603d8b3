import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PermanentError, TransientError } from "../../src/core/errors.js";
import { decodeActivityFailure, encodeActivityError, nextRetryDelayMs, RETRY } from "../../src/core/retry.js";
import { activityFailure, activityTimeout } from "@fast-build/local-cloud/durable/hostRules";

describe("activity failures across the durable boundary", () => {
  it("keeps code, hint, retryability and Retry-After of a typed error", () => {
    const thrown = encodeActivityError(
      new TransientError("throttled", { code: "TooManyRequests", hint: "wait", retryAfterMs: 7000 }),
    );
    // What the orchestrator sees: the host's text around the message.
    const seen = new Error(`Activity function 'x' failed: ${thrown.message} \n stack…`);
    assert.deepEqual(decodeActivityFailure(seen), {
      code: "TooManyRequests",
      message: "throttled",
      hint: "wait",
      retryable: true,
      retryAfterMs: 7000,
    });
  });

  it("fails fast on a permanent error and backs off (honouring Retry-After) on a transient one", () => {
    const permanent = decodeActivityFailure(encodeActivityError(new PermanentError("no", { code: "Nope" })));
    assert.equal(nextRetryDelayMs(RETRY.arm, 1, permanent), undefined);
    const transient = { code: "T", message: "t", retryable: true, retryAfterMs: 50_000 };
    assert.equal(nextRetryDelayMs(RETRY.arm, 1, transient), 50_000);
    assert.equal(nextRetryDelayMs(RETRY.arm, 2, { ...transient, retryAfterMs: undefined }), 4_000);
    assert.equal(nextRetryDelayMs(RETRY.arm, RETRY.arm.maxAttempts, transient), undefined);
  });
});

describe("activity failures in the shapes Azure's host writes them (the local driver's hostRules)", () => {
  // The orchestrator sees `new Error(reason)`; reasons as the extension writes them for an
  // out-of-proc activity that threw, and for one that ran past host.json's functionTimeout.
  const typed = encodeActivityError(
    new PermanentError("the identity may not start the VM", {
      code: "AuthorizationFailed",
      hint: "grant it",
    }),
  );
  const cases: [string, string, Partial<ReturnType<typeof decodeActivityFailure>>][] = [
    [
      "a typed failure inside `Activity function 'X' failed:  …`",
      activityFailure("fb_StartVm", typed).reason,
      { code: "AuthorizationFailed", retryable: false, hint: "grant it" },
    ],
    [
      "a transient failure inside the same shape",
      activityFailure("fb_StartVm", encodeActivityError(new TransientError("busy", { code: "ServerBusy" })))
        .reason,
      { code: "ServerBusy", retryable: true },
    ],
    [
      "the host's timeout (no tag: retried, the text kept)",
      activityTimeout("fb_StartBuild", 10 * 60_000).reason,
      {
        code: "Unexpected",
        retryable: true,
        message:
          "Activity function 'fb_StartBuild' failed: Timeout value of 00:10:00 was exceeded by function: Functions.fb_StartBuild",
      },
    ],
  ];
  for (const [what, reason, expected] of cases) {
    it(`decodes ${what}`, () => {
      const failure = decodeActivityFailure(new Error(reason));
      for (const [key, value] of Object.entries(expected)) {
        assert.deepEqual(failure[key as keyof typeof failure], value, `${key} of ${reason}`);
      }
    });
  }
});
