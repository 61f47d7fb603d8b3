import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PermanentError, TransientError } from "../../src/core/errors.js";
import { decodeActivityFailure, encodeActivityError, nextRetryDelayMs, RETRY } from "../../src/core/retry.js";

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
