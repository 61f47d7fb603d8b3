import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { TableLeaseStore } from "../../src/azure/tables.js";
import { decideAcquire, emptyRecord, mutateRecord } from "../../src/core/lease.js";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { RECENT_BUILDS } from "../../src/core/expectedDuration.js";

let azurite: Azurite;
let store: TableLeaseStore;
before(async () => {
  azurite = await startAzurite();
  store = new TableLeaseStore({ connectionString: azurite.connectionString, tableName: "leasetest" });
});
after(async () => {
  await azurite.stop();
});

describe("table lease store (Azurite)", () => {
  it("creates a record once and refuses a second create", async () => {
    const record = emptyRecord("k-create");
    assert.equal(await store.write(record, undefined), true);
    assert.equal(await store.write(record, undefined), false);
    assert.deepEqual((await store.read("k-create"))?.record, record);
  });

  it("keeps heartbeats on a row of their own: recording one never changes the lease record's ETag", async () => {
    await store.write(emptyRecord("k-beat"), undefined);
    const before = (await store.read("k-beat"))!;
    assert.equal(await store.readHeartbeat("k-beat"), undefined);

    await store.recordHeartbeat("k-beat", { buildId: "b1", at: "2030-01-09T12:00:00.000Z" });
    await store.recordHeartbeat("k-beat", { buildId: "b1", at: "2030-01-09T12:00:30.000Z" });

    assert.deepEqual(await store.readHeartbeat("k-beat"), { buildId: "b1", at: "2030-01-09T12:00:30.000Z" });
    assert.equal(
      (await store.read("k-beat"))?.etag,
      before.etag,
      "the lease's compare-and-set is unaffected",
    );
    assert.deepEqual(
      (await store.list()).map((r) => r.key).filter((k) => k === "k-beat"),
      ["k-beat"],
      "a heartbeat row is not listed as a builder",
    );
  });

  it("refuses a write based on a stale ETag", async () => {
    await store.write(emptyRecord("k-cas"), undefined);
    const first = (await store.read("k-cas"))!;
    assert.equal(await store.write({ ...first.record, generation: 1, holder: "a" }, first.etag), true);
    assert.equal(await store.write({ ...first.record, generation: 1, holder: "b" }, first.etag), false);
    assert.equal((await store.read("k-cas"))?.record.holder, "a");
  });

  it("gives the lease to exactly one of many builds asking at once", async () => {
    const timing = { leaseMs: 60_000, queueStaleMs: 60_000 };
    const results = await Promise.all(
      ["b1", "b2", "b3", "b4", "b5"].map((buildId) =>
        mutateRecord(store, "k-race", (record) => {
          const decision = decideAcquire(record, buildId, new Date(), timing);
          return { record: decision.record, result: decision.kind };
        }),
      ),
    );
    assert.equal(results.filter((kind) => kind === "acquired").length, 1);
    const stored = (await store.read("k-race"))!.record;
    assert.equal(stored.queue.length, 4);
    assert.equal(stored.generation, 1);
  });

  it("records one activity row per build, idempotently", async () => {
    const row = {
      builderKey: "k-act",
      buildId: "build-0001",
      environment: "dev",
      startedAt: "2030-01-01T00:00:00.000Z",
      endedAt: "2030-01-01T00:05:00.000Z",
      outcome: "succeeded",
      reason: "ok",
      vmMinutes: 5.5,
    };
    await store.recordBuild(row);
    await store.recordBuild(row);
    assert.deepEqual(await store.listBuilds("k-act"), [row]);
    // Without `base` (the builder did not build it) it is no one's expected duration.
    assert.deepEqual(await store.recentBuilds("dev"), []);
  });

  it("keeps an environment's recent builds that the builder built: once each, bounded, races kept", async () => {
    const env = "team/a#b?c"; // characters a Table key may not hold
    const row = (n: number, outcome = "succeeded") => ({
      builderKey: "k-recent",
      buildId: `build-${String(n).padStart(4, "0")}`,
      environment: env,
      startedAt: "2030-01-01T00:00:00.000Z",
      endedAt: new Date(Date.UTC(2030, 0, 1, 0, n)).toISOString(),
      outcome,
      reason: "ok",
      vmMinutes: 1,
      base: n % 2 ? ("hit" as const) : ("miss" as const),
      durationMs: 1000 * n,
    });
    await store.recordBuild(row(1));
    await store.recordBuild(row(1)); // re-delivered: still one entry
    await store.recordBuild(row(2, "failed"));
    assert.deepEqual(
      (await store.recentBuilds(env)).map((b) => [b.buildId, b.base, b.durationMs]),
      [["build-0001", "hit", 1000]],
    );
    assert.deepEqual(
      await store.listBuilds("k-recent").then((rows) => rows.find((r) => r.buildId === "build-0001")),
      row(1),
    );
    // Recorded at once: every compare-and-set that loses reads again, so none is lost.
    await Promise.all([3, 4, 5, 6].map((n) => store.recordBuild(row(n))));
    assert.deepEqual(
      (await store.recentBuilds(env)).map((b) => b.buildId),
      ["build-0001", "build-0003", "build-0004", "build-0005", "build-0006"],
    );
    for (let n = 7; n < 7 + RECENT_BUILDS.keep; n++) await store.recordBuild(row(n));
    const kept = await store.recentBuilds(env);
    assert.equal(kept.length, RECENT_BUILDS.keep);
    assert.equal(kept.at(-1)?.buildId, `build-${String(6 + RECENT_BUILDS.keep).padStart(4, "0")}`);
    assert.deepEqual(await store.recentBuilds("another"), []);
  });
});
