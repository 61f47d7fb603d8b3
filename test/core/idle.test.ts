import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decideRecovery, finishRecovery, leaseHoldingBuild } from "../../src/core/idle.js";
import {
  emptyRecord,
  IDLE_SHUTDOWN_HOLDER,
  RECOVERY_HOLDER,
  type BuilderRecord,
} from "../../src/core/lease.js";

const NOW = new Date("2030-01-01T12:00:00.000Z");
const held = (holder: string, expiresInMs: number): BuilderRecord => ({
  ...emptyRecord("builder"),
  holder,
  generation: 7,
  leaseExpiresAt: new Date(NOW.getTime() + expiresInMs).toISOString(),
  acquiredAt: new Date(NOW.getTime() - 6 * 60_000).toISOString(),
  lastActivityAt: new Date(NOW.getTime() - 6 * 60_000).toISOString(),
  queue: [{ buildId: "next", since: NOW.toISOString(), seenAt: NOW.toISOString() }],
  vmMinutesTotal: 10,
});

describe("recovering a builder from a build whose orchestration ended", () => {
  it("asks about a build only while it holds a fresh lease, never about the builder functions' own holds", () => {
    assert.equal(leaseHoldingBuild(held("build-1", 60_000), NOW), "build-1");
    assert.equal(leaseHoldingBuild(held("build-1", -1), NOW), undefined, "an expired lease frees itself");
    assert.equal(leaseHoldingBuild(held(IDLE_SHUTDOWN_HOLDER, 60_000), NOW), undefined);
    assert.equal(leaseHoldingBuild(held(RECOVERY_HOLDER, 60_000), NOW), undefined);
    assert.equal(leaseHoldingBuild(emptyRecord("builder"), NOW), undefined);
  });

  it("takes the lease under a new generation, counts the orphan's minutes, and gives it back as activity", () => {
    const taken = decideRecovery(held("build-1", 60_000), NOW, 20 * 60_000);
    assert.equal(taken.generation, 8);
    assert.equal(taken.record.holder, RECOVERY_HOLDER);
    assert.equal(taken.record.vmMinutesTotal, 16, "the orphan had the VM for 6 minutes");
    assert.deepEqual(
      taken.record.queue.map((entry) => entry.buildId),
      ["next"],
      "the queue waits behind it",
    );

    const later = new Date(NOW.getTime() + 30_000);
    const released = finishRecovery(taken.record, taken.generation, later);
    assert.equal(released.holder, undefined);
    assert.equal(released.vmMinutesTotal, 16, "the recovery's own half minute is not build time");
    assert.equal(released.lastActivityAt, later.toISOString(), "the idle clock starts from the orphan's end");
    // A later holder (the recovery's lease expired and a build took it) is left alone.
    const other = { ...taken.record, holder: "build-2", generation: 9 };
    assert.equal(finishRecovery(other, taken.generation, later).holder, "build-2");
  });
});
