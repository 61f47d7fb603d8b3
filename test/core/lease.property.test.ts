import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  QUIET_SIGNALS,
  decideIdleShutdown,
  decideWarm,
  finishIdleShutdown,
  idleShutdownAt,
} from "../../src/core/idle.js";
import {
  decideAcquire,
  decideRelease,
  decideRenew,
  emptyRecord,
  isLeaseFresh,
  type BuilderRecord,
} from "../../src/core/lease.js";

const LEASE_MS = 60_000;
const TIMING = { leaseMs: LEASE_MS, queueStaleMs: 3 * LEASE_MS };
const POLICY = {
  idleMs: 5 * 60_000,
  shutdownLeaseMs: LEASE_MS,
  queueStaleMs: 3 * LEASE_MS,
  heartbeatFreshMs: 5 * 60_000,
};
const KEY = "builder";

/**
 * Each actor reads the record, then (in a later step, so other actors can interleave) writes its
 * decision with compare-and-set on the version it read — the protocol the Table store enforces.
 */
type Phase = "want" | "holding" | "done";
interface Actor {
  id: string;
  kind: "build" | "idle";
  phase: Phase;
  snapshot: { record: BuilderRecord; version: number } | undefined;
  generation: number;
  /** Until when this actor may use the VM (its own view of its lease). */
  until: number;
}

describe("builder lease and idle shutdown (model of the CAS protocol)", () => {
  it("never lets a deallocation overlap a build, nor two builds share the VM (property)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ actor: fc.integer({ min: 0, max: 3 }), dt: fc.integer({ min: 0, max: 40_000 }) }),
          {
            minLength: 1,
            maxLength: 120,
          },
        ),
        (steps) => {
          let now = Date.UTC(2030, 0, 1);
          let stored: { record: BuilderRecord; version: number } = {
            record: { ...emptyRecord(KEY), lastActivityAt: new Date(now - 3_600_000).toISOString() },
            version: 1,
          };
          const cas = (record: BuilderRecord, version: number): boolean => {
            if (stored.version !== version) return false;
            stored = { record, version: version + 1 };
            return true;
          };
          const actors: Actor[] = [
            ...["b1", "b2", "b3"].map((id): Actor => ({
              id,
              kind: "build",
              phase: "want",
              snapshot: undefined,
              generation: 0,
              until: 0,
            })),
            { id: "idle", kind: "idle", phase: "want", snapshot: undefined, generation: 0, until: 0 },
          ];
          for (const { actor: index, dt } of steps) {
            now += dt;
            const actor = actors[index]!;
            if (actor.phase === "done") continue;
            if (!actor.snapshot) {
              actor.snapshot = { record: stored.record, version: stored.version };
              continue;
            }
            const { record, version } = actor.snapshot;
            actor.snapshot = undefined;
            const at = new Date(now);
            if (actor.kind === "build" && actor.phase === "want") {
              const decision = decideAcquire(record, actor.id, at, TIMING);
              if (cas(decision.record, version) && decision.kind === "acquired") {
                actor.phase = "holding";
                actor.generation = decision.generation;
                actor.until = Date.parse(decision.expiresAt);
              }
            } else if (actor.kind === "build") {
              // A holding build renews while its lease lasts; once it lapsed it stops using the VM
              // and releases (the orchestrator ends the build on a failed renew).
              if (now < actor.until && dt % 3 !== 0) {
                const renewed = decideRenew(record, actor.id, actor.generation, at, LEASE_MS);
                if (renewed.kind === "renewed" && cas(renewed.record, version))
                  actor.until = Date.parse(renewed.expiresAt);
              } else {
                actor.until = 0;
                if (cas(decideRelease(record, actor.id, actor.generation, at).record, version))
                  actor.phase = "done";
              }
            } else if (actor.phase === "want") {
              const decision = decideIdleShutdown(record, "running", at, POLICY, QUIET_SIGNALS);
              if (decision.kind === "deallocate" && cas(decision.record, version)) {
                actor.phase = "holding";
                actor.generation = decision.generation;
                actor.until = Date.parse(decision.record.leaseExpiresAt!);
              }
            } else {
              actor.until = 0;
              if (cas(finishIdleShutdown(record, actor.generation, at), version)) actor.phase = "want";
            }
            const users = actors.filter((a) => a.phase === "holding" && now < a.until);
            assert.ok(
              users.length <= 1,
              `two users of the builder at once: ${users.map((a) => a.id).join(", ")}`,
            );
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it("never deallocates within the idle window of a warm, nor lets a warm start a VM being deallocated (property)", () => {
    fc.assert(
      fc.property(
        fc.array(
          // 0: a build, 1: the idle timer, 2: `fast-build warm`.
          fc.record({ actor: fc.integer({ min: 0, max: 2 }), dt: fc.integer({ min: 0, max: 200_000 }) }),
          { minLength: 1, maxLength: 120 },
        ),
        (steps) => {
          let now = Date.UTC(2030, 0, 1);
          let stored: { record: BuilderRecord; version: number } = {
            record: { ...emptyRecord(KEY), lastActivityAt: new Date(now - 3_600_000).toISOString() },
            version: 1,
          };
          const cas = (record: BuilderRecord, version: number): boolean => {
            if (stored.version !== version) return false;
            stored = { record, version: version + 1 };
            return true;
          };
          const actor = (id: string, kind: Actor["kind"]): Actor => ({
            id,
            kind,
            phase: "want",
            snapshot: undefined,
            generation: 0,
            until: 0,
          });
          const [build, idle] = [actor("b1", "build"), actor("idle", "idle")];
          let warmSnapshot: typeof stored | undefined;
          let lastWarm = Number.NEGATIVE_INFINITY;
          for (const { actor: index, dt } of steps) {
            now += dt;
            const at = new Date(now);
            if (index === 2) {
              // The warm: read, then compare-and-set what it decided; it starts the VM only
              // after its write won.
              if (!warmSnapshot) {
                warmSnapshot = stored;
                continue;
              }
              const decision = decideWarm(warmSnapshot.record, at);
              if (decision.kind === "recorded" && cas(decision.record, warmSnapshot.version)) {
                lastWarm = now;
                assert.ok(
                  !(idle.phase === "holding" && now < idle.until),
                  "a warm started the VM while the idle shutdown deallocated it",
                );
              }
              warmSnapshot = undefined;
              continue;
            }
            const a = index === 0 ? build : idle;
            if (a.phase === "done") continue;
            if (!a.snapshot) {
              a.snapshot = stored;
              continue;
            }
            const { record, version } = a.snapshot;
            a.snapshot = undefined;
            if (a === build && a.phase === "want") {
              const decision = decideAcquire(record, a.id, at, TIMING);
              if (cas(decision.record, version) && decision.kind === "acquired") {
                a.phase = "holding";
                a.generation = decision.generation;
                a.until = Date.parse(decision.expiresAt);
              }
            } else if (a === build) {
              if (cas(decideRelease(record, a.id, a.generation, at).record, version)) {
                a.phase = "want";
                a.until = 0;
              }
            } else if (a.phase === "want") {
              const decision = decideIdleShutdown(record, "running", at, POLICY, QUIET_SIGNALS);
              if (decision.kind === "deallocate" && cas(decision.record, version)) {
                assert.ok(now >= lastWarm + POLICY.idleMs, "deallocated within the idle window of a warm");
                a.phase = "holding";
                a.generation = decision.generation;
                a.until = Date.parse(decision.record.leaseExpiresAt!);
              }
            } else if (cas(finishIdleShutdown(record, a.generation, at), version)) {
              a.phase = "want";
              a.until = 0;
            }
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it("does not deallocate a builder whose lease is still fresh", () => {
    const now = new Date(Date.UTC(2030, 0, 1));
    const record = {
      ...emptyRecord(KEY),
      holder: "b1",
      generation: 1,
      leaseExpiresAt: new Date(now.getTime() + 1).toISOString(),
    };
    assert.equal(decideIdleShutdown(record, "running", now, POLICY, QUIET_SIGNALS).kind, "keep");
  });

  it("deallocates only after the idle window since the last activity", () => {
    const last = Date.UTC(2030, 0, 1);
    const record = { ...emptyRecord(KEY), lastActivityAt: new Date(last).toISOString() };
    assert.equal(
      decideIdleShutdown(record, "running", new Date(last + POLICY.idleMs - 1), POLICY, QUIET_SIGNALS).kind,
      "keep",
    );
    assert.equal(
      decideIdleShutdown(record, "running", new Date(last + POLICY.idleMs), POLICY, QUIET_SIGNALS).kind,
      "deallocate",
    );
    assert.equal(idleShutdownAt(record, POLICY.idleMs), new Date(last + POLICY.idleMs).toISOString());
  });

  it("keeps a builder up while a live build waits in its queue", () => {
    const now = new Date(Date.UTC(2030, 0, 1, 1));
    const queued = decideAcquire(
      {
        ...emptyRecord(KEY),
        holder: "b1",
        generation: 1,
        leaseExpiresAt: new Date(now.getTime() + 10).toISOString(),
      },
      "b2",
      now,
      TIMING,
    );
    assert.equal(queued.kind, "queued");
    const later = new Date(now.getTime() + 20);
    const released = decideRelease(queued.record, "b1", 1, later).record;
    const idleLater = new Date(later.getTime() + POLICY.idleMs + 1);
    assert.equal(
      decideIdleShutdown(released, "running", new Date(later.getTime() + 1000), POLICY, QUIET_SIGNALS).kind,
      "keep",
    );
    assert.equal(isLeaseFresh(released, idleLater), false);
  });

  it("serves the queue in order: a later build cannot jump a live earlier one", () => {
    const now = new Date(Date.UTC(2030, 0, 1));
    let record: BuilderRecord = {
      ...emptyRecord(KEY),
      holder: "b0",
      generation: 1,
      leaseExpiresAt: new Date(now.getTime() + 5).toISOString(),
    };
    record = decideAcquire(record, "b1", now, TIMING).record;
    record = decideAcquire(record, "b2", now, TIMING).record;
    const free = new Date(now.getTime() + 10);
    const jump = decideAcquire(record, "b2", free, TIMING);
    assert.deepEqual([jump.kind, jump.kind === "queued" ? jump.position : 0], ["queued", 2]);
    const first = decideAcquire(jump.record, "b1", free, TIMING);
    assert.equal(first.kind, "acquired");
  });
});
