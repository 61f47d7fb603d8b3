/**
 * `GET /api/builds` (the history, newest first, paged) and `GET /api/costs` over Azurite and the
 * ARM emulator: pages and their cursor, every refused query (400 with what to send, 404 for an
 * unknown environment), minutes and cost from recorded power transitions, and the idle
 * shutdown's deallocation recorded with the VM's size.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { TableHistoryStore } from "../../src/azure/history.js";
import { runIdleShutdown } from "../../src/builders/idleShutdown.js";
import type { ErrorResponse } from "../../src/core/api.js";
import { builderKey } from "../../src/core/buildInput.js";
import type { BuildHistoryRecord, CostsResponse, HistoryPage } from "../../src/core/history.js";
import { emptyRecord } from "../../src/core/lease.js";
import { setDeps, type Deps } from "../../src/functions/deps.js";
import { costsHandler, listHistoryHandler } from "../../src/functions/history.js";
import { call, SUB, startTestCloud, timerContext, type TestCloud } from "./support.js";

const DEV = { subscriptionId: SUB, resourceGroup: "rg-builds", vmName: "builder-dev" };
const NOW = new Date("2030-01-02T00:30:00.000Z");

const record = (n: number, environment: string, vmMinutes = 2): BuildHistoryRecord => {
  const createdAt = new Date(NOW.getTime() - (10 - n) * 60_000).toISOString();
  return {
    buildId: `20300101000${String(n).padStart(3, "0")}-${environment.padEnd(10, "x")}`,
    environment,
    createdAt,
    endedAt: createdAt,
    outcome: n % 3 === 0 ? "failed" : "succeeded",
    reason: "ok",
    durationMs: 60_000,
    phasesMs: { lease: 10, builder: 20 },
    vmMinutes,
  };
};

describe("GET /api/builds and GET /api/costs", () => {
  let cloud: TestCloud;
  let deps: Deps;
  let tables = 0;

  before(async () => {
    cloud = await startTestCloud();
  });
  after(async () => {
    setDeps(undefined);
    await cloud.stop();
  });
  beforeEach(async () => {
    deps = {
      ...cloud.deps,
      config: {
        ...cloud.deps.config,
        history: {
          table: "unused",
          vmRates: { Standard_D4s_v5: { perHour: 0.192, diskPerHour: 0.0065 } },
          currency: "USD",
        },
      },
      history: new TableHistoryStore({
        tableName: `historyapi${++tables}`,
        connectionString: cloud.azurite.connectionString,
      }),
      now: () => NOW,
    };
    setDeps(deps);
    for (let n = 0; n < 5; n++) await deps.history.recordBuild(record(n, n < 3 ? "dev" : "prod"));
  });

  const get = (handler: typeof listHistoryHandler, route: string, query: string) =>
    call(cloud.rpc, handler, route === "builds" ? "listHistory" : "getCosts", {
      method: "GET",
      path: `${route}${query}`,
    });
  const builds = (query = "") => get(listHistoryHandler, "builds", query);
  const costs = (query = "") => get(costsHandler, "costs", query);

  it("lists every environment's builds newest first, a page at a time", async () => {
    const first = await builds("?limit=2");
    assert.equal(first.status, 200);
    const page = first.body as HistoryPage;
    assert.deepEqual(
      page.builds.map((b) => b.buildId.slice(11, 14)),
      ["004", "003"],
    );
    assert.ok(page.next);
    const second = (await builds(`?limit=2&cursor=${page.next}`)).body as HistoryPage;
    assert.deepEqual(
      second.builds.map((b) => b.buildId.slice(11, 14)),
      ["002", "001"],
    );
    const last = (await builds(`?limit=2&cursor=${second.next}`)).body as HistoryPage;
    assert.equal(last.builds.length, 1);
    assert.equal(last.next, undefined);
  });

  it("lists one environment with ?env and 20 builds by default", async () => {
    const res = await builds("?env=prod");
    assert.equal(res.status, 200);
    assert.deepEqual(
      (res.body as HistoryPage).builds.map((b) => b.environment),
      ["prod", "prod"],
    );
  });

  const refused: [string, string, number, string, RegExp][] = [
    ["limit=0", "?limit=0", 400, "InvalidQuery", /limit must be a whole number from 1 to 200, got "0"/],
    ["limit=201", "?limit=201", 400, "InvalidQuery", /from 1 to 200/],
    ["limit=abc", "?limit=abc", 400, "InvalidQuery", /got "abc"/],
    ["a forged cursor", "?cursor=AAAA", 400, "InvalidCursor", /not one this API gave out/],
    ["an unknown parameter", "?limt=3", 400, "InvalidQuery", /unknown query parameter "limt"/],
    ["an unknown environment", "?env=staging", 404, "UnknownEnvironment", /unknown environment "staging"/],
  ];
  for (const [what, query, status, code, message] of refused) {
    it(`GET /api/builds refuses ${what} (${status} ${code})`, async () => {
      const res = await builds(query);
      assert.equal(res.status, status);
      const { error } = res.body as ErrorResponse;
      assert.equal(error.code, code);
      assert.match(error.message, message);
      assert.ok(error.hint, "says what to send instead");
    });
  }

  it("GET /api/builds refuses another environment's cursor", async () => {
    const dev = (await builds("?env=dev&limit=1")).body as HistoryPage;
    const res = await builds(`?env=prod&cursor=${dev.next}`);
    assert.equal(res.status, 400);
    assert.match((res.body as ErrorResponse).error.message, /another environment's list/);
  });

  for (const [query, got] of [
    ["?days=0", "0"],
    ["?days=91", "91"],
    ["?days=-1", "-1"],
  ] as const) {
    it(`GET /api/costs refuses ${query}`, async () => {
      const res = await costs(query);
      assert.equal(res.status, 400);
      assert.match(
        (res.body as ErrorResponse).error.message,
        new RegExp(`days must be a whole number from 1 to 90, got "${got}"`),
      );
    });
  }

  it("GET /api/costs counts running and disk minutes per day across midnight, and prices them", async () => {
    const t = (state: "started" | "deallocated", iso: string) =>
      deps.history.recordPower({
        builderKey: builderKey(DEV),
        builder: "builder-dev",
        state,
        at: iso,
        vmSize: "Standard_D4s_v5",
      });
    await t("started", "2030-01-01T23:30:00.000Z");
    await t("deallocated", "2030-01-02T00:15:00.000Z");
    const res = await costs("?env=dev&days=1");
    assert.equal(res.status, 200);
    const answer = res.body as CostsResponse;
    assert.deepEqual(
      answer.perDay.map((d) => [d.day, d.runningMinutes, d.stoppedMinutes]),
      [
        ["2030-01-01", 30, 0],
        ["2030-01-02", 15, 15],
      ],
    );
    assert.equal(answer.total.cost, Math.round(((45 / 60) * 0.192 + (15 / 60) * 0.0065) * 10_000) / 10_000);
    assert.deepEqual(answer.builds, { count: 3, vmMinutes: 6, averageVmMinutes: 2, averageCost: 0.0064 });
    assert.equal(answer.environment, "dev");
  });

  it("GET /api/costs refuses an unknown environment with 404", async () => {
    const res = await costs("?env=staging");
    assert.equal(res.status, 404);
    assert.equal((res.body as ErrorResponse).error.code, "UnknownEnvironment");
  });

  it("the idle shutdown records the deallocation with the VM's size", async () => {
    cloud.arm.addVm(DEV, { powerState: "running" });
    const old = new Date(Date.now() - 3 * 3600_000).toISOString();
    await deps.leases
      .write({ ...emptyRecord(builderKey(DEV)), lastActivityAt: old }, undefined)
      .catch(() => false);
    const outcomes = await runIdleShutdown(
      { ...deps, now: () => new Date() },
      timerContext("idleShutdown", []),
      () => Promise.resolve(undefined),
    );
    assert.equal(outcomes.find((o) => o.builder === "builder-dev")?.action, "deallocated");
    const power = await deps.history.powerSince(builderKey(DEV), new Date(Date.now() - 60_000));
    assert.deepEqual(
      power.map((p) => [p.state, p.vmSize]),
      [["deallocated", "Standard_D4s_v5"]],
    );
  });
});
