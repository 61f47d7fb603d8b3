import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  decideAcquire,
  decideRelease,
  emptyRecord,
  isWaiting,
  type BuilderRecord,
  type QueueScope,
} from "../../src/core/lease.js";
import { isProductionName, supersedeEnabled } from "../../src/core/supersede.js";

const LEASE_MS = 60_000;
const TIMING = { leaseMs: LEASE_MS, queueStaleMs: 3 * LEASE_MS };
const T0 = Date.UTC(2030, 0, 1);
const at = (s: number) => new Date(T0 + s * 1000);
const scope = (branch: string, environment = "dev", supersede = true): QueueScope => ({
  environment,
  branch,
  supersede,
});

/** A builder held by `holder` (fresh lease) with nobody queued. */
function held(holder: string): BuilderRecord {
  const record = decideAcquire(emptyRecord("b"), holder, at(0), TIMING, scope("main")).record;
  assert.equal(record.holder, holder);
  return record;
}

function ask(record: BuilderRecord, buildId: string, s: number, sc?: QueueScope) {
  return decideAcquire(record, buildId, at(s), TIMING, sc);
}

describe("supersede in the builder queue (decideAcquire)", () => {
  it("marks an older queued build of the same environment and branch superseded by the new one", () => {
    let record = held("holder");
    record = ask(record, "old", 1, scope("feature")).record;
    const joined = ask(record, "new", 2, scope("feature"));
    assert.equal(joined.kind, "queued");
    assert.equal(joined.kind === "queued" && joined.position, 1, "the superseded build counts for no one");
    assert.deepEqual(
      joined.record.queue.map((e) => [e.buildId, e.supersededBy]),
      [
        ["old", "new"],
        ["new", undefined],
      ],
    );
    const late = ask(joined.record, "old", 3, scope("feature"));
    assert.equal(late.kind, "superseded");
    assert.equal(late.kind === "superseded" && late.by, "new");
    assert.deepEqual(
      late.record.queue.map((e) => e.buildId),
      ["new"],
      "the superseded build left the queue",
    );
  });

  it("never supersedes the build holding the builder, even of the same branch", () => {
    const record = held("holder");
    const joined = ask(record, "new", 1, scope("main"));
    assert.equal(joined.record.holder, "holder");
    assert.equal(joined.kind === "queued" && joined.position, 1);
    assert.equal(ask(joined.record, "holder", 2, scope("main")).kind, "acquired");
  });

  it("leaves builds of another branch, another environment or without a branch queued", () => {
    let record = held("holder");
    record = ask(record, "other-branch", 1, scope("a")).record;
    record = ask(record, "other-env", 2, scope("b", "staging")).record;
    record = ask(record, "no-branch", 3).record;
    const joined = ask(record, "new", 4, scope("b"));
    assert.equal(joined.kind === "queued" && joined.position, 4);
    assert.ok(joined.record.queue.every((e) => e.supersededBy === undefined));
  });

  it("supersedes nothing when the environment's setting is off", () => {
    let record = held("holder");
    record = ask(record, "old", 1, scope("main", "prod", false)).record;
    const joined = ask(record, "new", 2, scope("main", "prod", false));
    assert.equal(joined.kind === "queued" && joined.position, 2);
    assert.equal(ask(joined.record, "old", 3, scope("main", "prod", false)).kind, "queued");
  });

  it("a build without a branch supersedes nothing", () => {
    let record = held("holder");
    record = ask(record, "old", 1, scope("main")).record;
    const joined = ask(record, "new", 2);
    assert.equal(joined.kind === "queued" && joined.position, 2);
  });

  it("a superseded build that never asks again does not hold the queue up", () => {
    let record = held("holder");
    record = ask(record, "old", 1, scope("feature")).record;
    record = ask(record, "new", 2, scope("feature")).record;
    record = decideRelease(record, "holder", record.generation, at(3)).record;
    const next = ask(record, "new", 4, scope("feature"));
    assert.equal(next.kind, "acquired", "the newer build takes the builder past the superseded entry");
  });

  it("a superseded build asking after the builder was freed still learns it, and never takes it", () => {
    let record = held("holder");
    record = ask(record, "old", 1, scope("feature")).record;
    record = ask(record, "new", 2, scope("feature")).record;
    record = decideRelease(record, "holder", record.generation, at(3)).record;
    const late = ask(record, "old", 4, scope("feature"));
    assert.equal(late.kind, "superseded");
    assert.equal(late.record.holder, undefined);
  });

  it("keeps queue order, supersedes only older waiting entries of the joiner's scope, never the holder (property)", () => {
    const joinArb = fc.record({
      branch: fc.constantFrom("a", "b", undefined),
      environment: fc.constantFrom("dev", "qa"),
    });
    fc.assert(
      fc.property(fc.array(joinArb, { minLength: 1, maxLength: 12 }), (joins) => {
        let record = held("holder");
        const scopes = new Map<string, QueueScope | undefined>();
        joins.forEach((join, i) => {
          const id = `b${i}`;
          const sc = join.branch === undefined ? undefined : scope(join.branch, join.environment);
          scopes.set(id, sc);
          const before = record.queue;
          const decision = ask(record, id, i + 1, sc);
          assert.equal(decision.kind, "queued");
          record = decision.record;
          assert.equal(record.holder, "holder", "the holder keeps the builder");
          // Order preserved: the old entries in the same order, the new one last.
          assert.deepEqual(
            record.queue.map((e) => e.buildId),
            [...before.map((e) => e.buildId), id],
          );
          for (const [k, entry] of record.queue.entries()) {
            const prior = before[k];
            if (!prior || prior.supersededBy !== undefined) continue;
            const entryScope = scopes.get(entry.buildId);
            const expected =
              sc !== undefined &&
              entryScope !== undefined &&
              entryScope.branch === sc.branch &&
              entryScope.environment === sc.environment;
            assert.equal(entry.supersededBy, expected ? id : undefined, `${entry.buildId} vs ${id}`);
          }
          const position = decision.kind === "queued" ? decision.position : 0;
          assert.equal(position, record.queue.filter(isWaiting).length, "only waiting builds count");
        });
        // At most one waiting build per environment and branch, and it is the newest.
        for (const sc of new Set(
          [...scopes.values()].filter((s) => s).map((s) => `${s!.environment}/${s!.branch}`),
        )) {
          const waiting = record.queue.filter(
            (e) => isWaiting(e) && e.branch !== undefined && `${e.environment}/${e.branch}` === sc,
          );
          assert.equal(waiting.length, 1);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("supersede under concurrent writers (model of the CAS protocol)", () => {
  it("a superseded build never takes the builder, the holder is never superseded, never two holders (property)", () => {
    // Builds of two branches ask, hold and release in random interleavings; each reads the record,
    // then writes its decision by compare-and-set on the version it read (as the Table store does).
    const stepArb = fc.record({
      actor: fc.integer({ min: 0, max: 5 }),
      dt: fc.integer({ min: 0, max: 20_000 }),
    });
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 40, maxLength: 150, size: "max" }), (steps) => {
        let now = T0;
        let stored = { record: emptyRecord("b"), version: 1 };
        const cas = (record: BuilderRecord, version: number): boolean => {
          if (stored.version !== version) return false;
          stored = { record, version: version + 1 };
          return true;
        };
        interface Actor {
          id: string;
          scope: QueueScope;
          phase: "idle" | "asking" | "holding" | "done";
          snapshot: { record: BuilderRecord; version: number } | undefined;
          supersededBy: string | undefined;
          generation: number;
        }
        const actors = [0, 1, 2, 3, 4, 5].map((i): Actor => ({
          id: `b${i}`,
          scope: scope(i % 2 === 0 ? "main" : "feature"),
          phase: "idle",
          snapshot: undefined,
          supersededBy: undefined,
          generation: 0,
        }));
        for (const { actor: index, dt } of steps) {
          now += dt;
          const actor = actors[index]!;
          if (actor.phase === "done") continue;
          if (!actor.snapshot) {
            actor.snapshot = { ...stored };
            continue;
          }
          const { record, version } = actor.snapshot;
          actor.snapshot = undefined;
          const date = new Date(now);
          if (actor.phase === "holding") {
            // Renew-free model (its lease outlasts the run): a holder keeps the builder for a few
            // of its turns, so others queue behind it, then releases.
            if (dt % 4 !== 0) continue;
            if (cas(decideRelease(record, actor.id, actor.generation, date).record, version))
              actor.phase = "done";
            continue;
          }
          const decision = decideAcquire(
            record,
            actor.id,
            date,
            { leaseMs: 3_600_000, queueStaleMs: 3_600_000 },
            actor.scope,
          );
          if (!cas(decision.record, version)) continue;
          if (decision.kind === "acquired") {
            assert.equal(
              actor.supersededBy,
              undefined,
              `${actor.id} took the builder after it was superseded`,
            );
            actor.phase = "holding";
            actor.generation = decision.generation;
          } else if (decision.kind === "superseded") {
            actor.phase = "done";
            actor.supersededBy = decision.by;
            const by = actors.find((a) => a.id === decision.by)!;
            assert.equal(by.scope.branch, actor.scope.branch, "only by a build of its branch");
          } else {
            actor.phase = "asking";
          }
          const holders = actors.filter((a) => a.phase === "holding");
          assert.ok(holders.length <= 1, `two holders: ${holders.map((a) => a.id).join(", ")}`);
          for (const entry of stored.record.queue) {
            assert.notEqual(entry.buildId, stored.record.holder, "the holder is not in the queue");
          }
          // Every entry marked superseded names a build that joined after it, of its branch.
          const order = stored.record.queue.map((e) => e.buildId);
          for (const entry of stored.record.queue) {
            if (entry.supersededBy === undefined) continue;
            const by = actors.find((a) => a.id === entry.supersededBy)!;
            assert.equal(by.scope.branch, entry.branch);
            const at = order.indexOf(entry.supersededBy);
            assert.ok(at < 0 || at > order.indexOf(entry.buildId), "superseded only by a newer build");
          }
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe("supersede setting's default (supersedeEnabled)", () => {
  for (const [name, production] of [
    ["dev", false],
    ["staging", false],
    ["product-demo", false],
    ["prod", true],
    ["eu-prod", true],
    ["Production_2", true],
    ["prd", true],
    ["live", true],
  ] as const) {
    it(`${name}: ${production ? "off" : "on"} unless set`, () => {
      assert.equal(isProductionName(name), production);
      assert.equal(supersedeEnabled(name, undefined), !production);
      assert.equal(supersedeEnabled(name, true), true);
      assert.equal(supersedeEnabled(name, false), false);
    });
  }
});
