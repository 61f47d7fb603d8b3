import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { initialStatus } from "../../src/core/status.js";
import {
  buildCost,
  decodeCursor,
  encodeCursor,
  historyRecord,
  historyRowKey,
  splitByDay,
  unknownRateNote,
  usageByDay,
  type PowerTransition,
} from "../../src/core/history.js";
import { InvalidInputError } from "../../src/core/errors.js";

const RATES = { Standard_D4s_v5: { perHour: 0.192, diskPerHour: 0.0065 } };
const at = (iso: string) => Date.parse(iso);
const transition = (
  state: PowerTransition["state"],
  iso: string,
  vmSize = "Standard_D4s_v5",
): PowerTransition => ({
  builderKey: "sub~rg~builder-dev",
  builder: "builder-dev",
  state,
  at: iso,
  vmSize,
});

describe("builder minutes per day", () => {
  it("splits a running interval across midnight into both days", () => {
    const usage = usageByDay(
      [
        transition("started", "2030-01-01T23:30:00.000Z"),
        transition("deallocated", "2030-01-02T00:45:00.000Z"),
      ],
      at("2030-01-01T00:00:00.000Z"),
      at("2030-01-02T01:00:00.000Z"),
      RATES,
    );
    assert.deepEqual(
      usage.days.map((d) => [d.day, d.runningMinutes, d.stoppedMinutes]),
      [
        ["2030-01-01", 30, 0],
        ["2030-01-02", 45, 15],
      ],
    );
    assert.equal(usage.total.runningMinutes, 75);
    // 75 min × 0.192/h + 15 min × 0.0065/h
    assert.equal(usage.total.cost, Math.round(((75 / 60) * 0.192 + (15 / 60) * 0.0065) * 10_000) / 10_000);
  });

  it("counts an open interval until now, and the state the window starts in from the transition before it", () => {
    const usage = usageByDay(
      [transition("started", "2029-12-30T10:00:00.000Z")],
      at("2030-01-01T00:00:00.000Z"),
      at("2030-01-01T02:00:00.000Z"),
      RATES,
    );
    assert.equal(usage.total.runningMinutes, 120);
    assert.equal(usage.days.length, 1);
  });

  it("counts hibernated and deallocated time as disk minutes", () => {
    const usage = usageByDay(
      [
        transition("hibernated", "2030-01-01T00:00:00.000Z"),
        transition("started", "2030-01-01T01:00:00.000Z"),
      ],
      at("2030-01-01T00:00:00.000Z"),
      at("2030-01-01T01:30:00.000Z"),
      RATES,
    );
    assert.deepEqual([usage.total.stoppedMinutes, usage.total.runningMinutes], [60, 30]);
  });

  it("gives no cost for a size without a rate, and names it", () => {
    const usage = usageByDay(
      [transition("started", "2030-01-01T00:00:00.000Z", "Standard_E8s_v5")],
      at("2030-01-01T00:00:00.000Z"),
      at("2030-01-01T00:10:00.000Z"),
      RATES,
    );
    assert.equal(usage.total.cost, undefined);
    assert.deepEqual(usage.total.unknownRates, ["Standard_E8s_v5"]);
    assert.equal(
      unknownRateNote("Standard_E8s_v5"),
      "unknown rate for Standard_E8s_v5: add it to FASTBUILD_VM_RATES",
    );
    assert.equal(buildCost(10, ["Standard_E8s_v5"], RATES), undefined);
    assert.equal(buildCost(30, ["Standard_D4s_v5"], RATES), 0.096);
  });

  it("never counts more minutes than the window, and the days add up to the total (property)", () => {
    const from = at("2030-01-01T00:00:00.000Z");
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            offset: fc.integer({ min: -86_400_000, max: 3 * 86_400_000 }),
            state: fc.constantFrom("started" as const, "deallocated" as const, "hibernated" as const),
          }),
          { maxLength: 20 },
        ),
        fc.integer({ min: 1, max: 3 * 86_400_000 }),
        (events, span) => {
          const to = from + span;
          const usage = usageByDay(
            events.map((e) => transition(e.state, new Date(from + e.offset).toISOString())),
            from,
            to,
            RATES,
          );
          const total = usage.total.runningMinutes + usage.total.stoppedMinutes;
          assert.ok(total <= span / 60_000 + 0.01);
          const sum = usage.days.reduce((s, d) => s + d.runningMinutes + d.stoppedMinutes, 0);
          assert.ok(Math.abs(sum - total) < 0.01 * (usage.days.length + 1));
        },
      ),
    );
  });

  it("splits at every UTC midnight", () => {
    assert.deepEqual(splitByDay(at("2030-01-01T12:00:00.000Z"), at("2030-01-03T06:00:00.000Z")), [
      ["2030-01-01", 12 * 3_600_000],
      ["2030-01-02", 24 * 3_600_000],
      ["2030-01-03", 6 * 3_600_000],
    ]);
  });
});

describe("the history's keys and cursor", () => {
  it("sorts newer builds first", () => {
    const older = historyRowKey("2030-01-01T00:00:00.000Z", "20300101000000-aaaaaaaaaa");
    const newer = historyRowKey("2030-01-01T00:00:01.000Z", "20300101000001-bbbbbbbbbb");
    assert.ok(newer < older);
  });

  it("gives back the row key of a cursor it made for the same list", () => {
    const key = historyRowKey("2030-01-01T00:00:00.000Z", "20300101000000-aaaaaaaaaa");
    assert.equal(decodeCursor(encodeCursor("builds", key), "builds"), key);
  });

  for (const [name, cursor] of [
    ["not base64url", "abc$"],
    ["not JSON", Buffer.from("{oops").toString("base64url")],
    [
      "a forged key",
      Buffer.from(JSON.stringify({ v: 1, l: "builds", k: "' or 1 eq 1" })).toString("base64url"),
    ],
    [
      "another environment's list",
      encodeCursor("builds~prod", historyRowKey("2030-01-01T00:00:00.000Z", "20300101000000-aaaaaaaaaa")),
    ],
    ["too long", "a".repeat(401)],
  ] as const) {
    it(`refuses a cursor that is ${name}`, () => {
      assert.throws(
        () => decodeCursor(cursor, "builds"),
        (error) => error instanceof InvalidInputError && error.code === "InvalidCursor",
      );
    });
  }
});

describe("the history record of a build", () => {
  it("has the duration of each step that ran, the image, revision and who started it", () => {
    const status = initialStatus(
      "20300101000000-aaaaaaaaaa",
      "dev",
      "builder-dev",
      "2030-01-01T00:00:00.000Z",
    );
    status.steps = [
      {
        name: "lease",
        state: "succeeded",
        startedAt: "2030-01-01T00:00:00.000Z",
        endedAt: "2030-01-01T00:00:05.000Z",
      },
      {
        name: "builder",
        state: "succeeded",
        startedAt: "2030-01-01T00:00:05.000Z",
        endedAt: "2030-01-01T00:00:35.000Z",
      },
      { name: "source", state: "failed", startedAt: "2030-01-01T00:00:35.000Z" },
      { name: "build", state: "pending" },
      { name: "deploy", state: "pending" },
    ];
    status.image = { reference: "reg/app:src-1", digest: "sha256:abc" };
    const record = historyRecord(
      status,
      {
        buildId: "20300101000000-aaaaaaaaaa",
        environment: "dev",
        createdAt: "2030-01-01T00:00:00.000Z",
        commit: "abcdef1",
        branch: "main",
        dirty: true,
        author: { name: "Dev", email: "dev@example.com" },
      },
      {
        outcome: "failed",
        reason: "SourceTimeout: no upload",
        endedAt: "2030-01-01T00:01:00.000Z",
        vmMinutes: 1,
      },
    );
    assert.deepEqual(record.phasesMs, { lease: 5000, builder: 30_000, source: 25_000 });
    assert.equal(record.durationMs, 60_000);
    assert.deepEqual(
      [record.commit, record.branch, record.dirty, record.author?.email],
      ["abcdef1", "main", true, "dev@example.com"],
    );
    assert.equal(record.image?.digest, "sha256:abc");
  });
});
