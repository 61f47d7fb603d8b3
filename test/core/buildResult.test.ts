import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  buildResultSchema,
  RESULT_LIMITS,
  truncateText,
  type BuildResult,
} from "../../src/core/buildResult.js";

const result = (extra: Record<string, unknown>) => ({
  fastbuild: "result",
  version: 1,
  buildId: "build-00000001",
  status: "failed",
  exitReason: "app-build",
  exitCode: 21,
  skipped: false,
  timings: { app: 1200 },
  ...extra,
});

describe("builder result bounds", () => {
  const long = (n: number) => "a".repeat(n);
  // field | value sent | what is kept (a texts shown to people is cut with an ellipsis)
  const cut: [keyof BuildResult, string, number][] = [
    ["message", long(50_000), RESULT_LIMITS.messageChars],
    ["failedInstruction", long(5_000), RESULT_LIMITS.failedInstructionChars],
    ["failedStep", long(500), RESULT_LIMITS.nameChars],
    ["exitReason", long(500), RESULT_LIMITS.nameChars],
  ];
  for (const [field, value, max] of cut) {
    it(`cuts an over-long ${field} to ${max} characters and an ellipsis`, () => {
      const parsed = buildResultSchema.parse(result({ [field]: value }));
      assert.equal(parsed[field], `${value.slice(0, max)}…`);
    });
  }

  it("keeps the last log lines, each cut to the line limit", () => {
    const lines = Array.from({ length: 40 }, (_, i) => `${i} ${long(500)}`);
    const parsed = buildResultSchema.parse(result({ logTail: lines }));
    assert.equal(parsed.logTail?.length, RESULT_LIMITS.logTailLines);
    assert.ok(parsed.logTail?.[0]?.startsWith("20 "));
    assert.ok(parsed.logTail?.every((line) => line.length === RESULT_LIMITS.logLineChars + 1));
  });

  // field | value | the refusal names it: a cut value would name another image, key or tag
  const refused: [string, unknown, RegExp][] = [
    ["image", `r.example.test/${long(RESULT_LIMITS.referenceChars)}`, /image reference longer than 512/],
    ["digest", `sha256:${long(RESULT_LIMITS.referenceChars)}`, /digest longer/],
    ["baseKey", long(RESULT_LIMITS.referenceChars + 1), /base key longer/],
    ["baseImage", long(RESULT_LIMITS.referenceChars + 1), /base image reference longer/],
    ["tags", Array.from({ length: RESULT_LIMITS.tags + 1 }, (_, i) => `t${i}`), /more than 16 tags/],
    ["tags", [long(RESULT_LIMITS.referenceChars + 1)], /tag longer/],
    [
      "timings",
      Object.fromEntries(Array.from({ length: RESULT_LIMITS.timings + 1 }, (_, i) => [`s${i}`, i])),
      /more than 32 step timings/,
    ],
    ["timings", { [long(RESULT_LIMITS.nameChars + 1)]: 1 }, /a step name longer than 40/],
  ];
  for (const [field, value, problem] of refused) {
    it(`refuses a result whose ${field} is out of bounds, saying why (${problem.source})`, () => {
      const parsed = buildResultSchema.safeParse(result({ [field]: value }));
      assert.equal(parsed.success, false);
      assert.match(parsed.error?.issues.map((issue) => issue.message).join("; ") ?? "", problem);
    });
  }

  it("accepts what build.sh sends at its limits (a 4,000-character message, 40 lines of 500)", () => {
    const parsed = buildResultSchema.safeParse(
      result({ message: long(4000), logTail: Array.from({ length: 40 }, () => long(500)) }),
    );
    assert.equal(parsed.success, true);
  });

  it("never cuts an astral-plane character in two", () => {
    const text = "\u{1F600}".repeat(10);
    for (let max = 1; max < text.length; max++) {
      assert.doesNotMatch(JSON.stringify(truncateText(text, max)), /\\ud[89a-f]/i, String(max));
    }
  });
});
