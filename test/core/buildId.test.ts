import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { createBuildId, createCallbackToken, secretsEqual } from "../../src/core/buildId.js";
import { buildIdSchema, buildInputSchema } from "../../src/core/buildInput.js";

describe("build ids and callback tokens", () => {
  it("makes ids that the orchestration input accepts and that sort by creation time", () => {
    fc.assert(
      fc.property(
        fc.date({ min: new Date("2000-01-01"), max: new Date("2999-12-31"), noInvalidDate: true }),
        fc.date({ min: new Date("2000-01-01"), max: new Date("2999-12-31"), noInvalidDate: true }),
        (a, b) => {
          const [first, second] = a <= b ? [a, b] : [b, a];
          const idA = createBuildId(first);
          const idB = createBuildId(second);
          assert.ok(buildIdSchema.safeParse(idA).success, idA);
          if (Math.floor(first.getTime() / 1000) < Math.floor(second.getTime() / 1000)) assert.ok(idA < idB);
        },
      ),
    );
  });

  it("makes tokens the orchestration input accepts", () => {
    const token = createCallbackToken();
    const parsed = buildInputSchema.shape.callbackToken.safeParse(token);
    assert.ok(parsed.success, token);
    assert.notEqual(createCallbackToken(), token);
  });

  it("compares secrets exactly", () => {
    const token = createCallbackToken();
    assert.ok(secretsEqual(token, token));
    assert.ok(!secretsEqual(`${token}x`, token));
    assert.ok(!secretsEqual(token.slice(1), token));
    assert.ok(!secretsEqual("", token));
  });
});
