import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { TableHistoryStore } from "../../src/azure/history.js";
import { InvalidInputError } from "../../src/core/errors.js";
import type { BuildHistoryRecord } from "../../src/core/history.js";

let azurite: Azurite;
let store: TableHistoryStore;
before(async () => {
  azurite = await startAzurite();
  store = new TableHistoryStore({ connectionString: azurite.connectionString, tableName: "historytest" });
});
after(async () => {
  await azurite.stop();
});

const record = (n: number, environment: string): BuildHistoryRecord => {
  const createdAt = new Date(Date.UTC(2030, 0, 1, 0, 0, n)).toISOString();
  return {
    buildId: `20300101000${String(n).padStart(3, "0")}-${environment.padEnd(10, "a")}`,
    environment,
    createdAt,
    endedAt: createdAt,
    outcome: "succeeded",
    reason: "ok",
    durationMs: 1000,
    phasesMs: {},
    vmMinutes: 1,
  };
};

describe("build history store (Azurite)", () => {
  before(async () => {
    for (let n = 0; n < 7; n++) await store.recordBuild(record(n, n % 2 === 0 ? "dev" : "prod"));
  });

  it("lists every environment newest first, a page at a time, to the end", async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await store.listBuilds({ limit: 3, ...(cursor ? { cursor } : {}) });
      seen.push(...page.builds.map((b) => b.createdAt));
      cursor = page.next;
      pages++;
    } while (cursor);
    assert.equal(pages, 3);
    assert.equal(seen.length, 7);
    assert.deepEqual(seen, [...seen].sort().reverse());
  });

  it("lists one environment's builds only", async () => {
    const page = await store.listBuilds({ environment: "prod", limit: 10 });
    assert.deepEqual(
      page.builds.map((b) => b.environment),
      ["prod", "prod", "prod"],
    );
    assert.equal(page.next, undefined);
  });

  it("keeps one row for a build written twice (a retried activity)", async () => {
    const again = { ...record(3, "prod"), reason: "written again" };
    await store.recordBuild(again);
    const page = await store.listBuilds({ environment: "prod", limit: 10 });
    assert.equal(page.builds.length, 3);
    assert.equal(page.builds.find((b) => b.buildId === again.buildId)?.reason, "written again");
  });

  it("refuses another environment's cursor and a forged one", async () => {
    const first = await store.listBuilds({ environment: "dev", limit: 1 });
    assert.ok(first.next);
    await assert.rejects(
      store.listBuilds({ environment: "prod", limit: 1, cursor: first.next }),
      (error) => error instanceof InvalidInputError && error.code === "InvalidCursor",
    );
    await assert.rejects(
      store.listBuilds({ limit: 1, cursor: "eyJ2IjoxfQ" }),
      (error) => error instanceof InvalidInputError && error.code === "InvalidCursor",
    );
  });

  it("records a power transition once however often it is reported, and reads the window with the state before it", async () => {
    const t = (state: "started" | "deallocated", minute: number) => ({
      builderKey: "sub~rg~builder/x",
      builder: "builder-x",
      state,
      at: new Date(Date.UTC(2030, 0, 1, 0, minute)).toISOString(),
      vmSize: "Standard_D4s_v5",
    });
    assert.equal(await store.recordPower(t("started", 0)), true);
    assert.equal(await store.recordPower(t("started", 1)), false, "already started");
    assert.equal(await store.recordPower(t("deallocated", 10)), true);
    assert.equal(await store.recordPower(t("started", 20)), true);
    const window = await store.powerSince("sub~rg~builder/x", new Date(Date.UTC(2030, 0, 1, 0, 15)));
    assert.deepEqual(window.map((w) => [w.state, w.at.slice(11, 16)]).sort(), [
      ["deallocated", "00:10"],
      ["started", "00:20"],
    ]);
  });

  it("reads the builds created since a time", async () => {
    const since = await store.buildsSince(new Date(Date.UTC(2030, 0, 1, 0, 0, 5)), undefined, 100);
    assert.deepEqual(
      since.map((b) => b.createdAt.slice(17, 19)),
      ["06", "05"],
    );
  });
});
