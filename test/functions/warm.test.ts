/**
 * `POST /api/environments/{env}/warm` on the test cloud (Azurite's builder records, the ARM
 * emulator's VMs through the real compute SDK): a deallocated builder is started and the answer
 * comes once Azure accepted the start; a running one is left alone; a build's lease and the idle
 * shutdown's are respected; and the idle timer counts the warm as use, through the same record.
 */
import { call, SUB, startTestCloud, timerContext, type TestCloud } from "./support.js";
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import type { ErrorResponse, WarmResponse } from "../../src/core/api.js";
import { builderKey } from "../../src/core/buildInput.js";
import { QUIET_SIGNALS, decideIdleShutdown, idleShutdownAt } from "../../src/core/idle.js";
import { emptyRecord, IDLE_SHUTDOWN_HOLDER } from "../../src/core/lease.js";
import { TableLeaseStore } from "../../src/azure/tables.js";
import { idlePolicy, runIdleShutdown } from "../../src/builders/idleShutdown.js";
import { setDeps, type Deps } from "../../src/functions/deps.js";
import { warmBuilderHandler } from "../../src/functions/warmBuilder.js";
import { waitFor } from "../azure/armHelpers.js";

const DEV = { subscriptionId: SUB, resourceGroup: "rg-builds", vmName: "builder-dev" };
const IDLE_MS = 30 * 60_000;

describe("POST /api/environments/{env}/warm", () => {
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
  // Each test starts from builder records of its own and a running builder-dev.
  beforeEach(() => {
    deps = {
      ...cloud.deps,
      leases: new TableLeaseStore({
        tableName: `warmbuilders${++tables}`,
        connectionString: cloud.azurite.connectionString,
      }),
    };
    setDeps(deps);
    cloud.arm.addVm(DEV, { powerState: "running" });
  });

  const warm = (env: string) =>
    call(cloud.rpc, warmBuilderHandler, "warmBuilder", {
      method: "POST",
      path: `environments/${env}/warm`,
      params: { env },
    });
  const record = async () => (await deps.leases.read(builderKey(DEV)))?.record;

  it("starts a deallocated builder: 202 with `starting` once Azure accepted the start, and the VM comes up", async () => {
    cloud.arm.addVm(DEV, { powerState: "deallocated" });

    const res = await warm("dev");

    assert.equal(res.status, 202, res.text);
    const body = res.body as WarmResponse;
    assert.equal(body.action, "started");
    assert.equal(body.builder, "builder-dev");
    assert.equal(body.environment, "dev");
    assert.equal(body.powerStateBefore, "deallocated");
    assert.equal(body.powerState, "starting");
    assert.ok(body.lastActivityAt);
    assert.equal(body.idleShutdownAt, new Date(Date.parse(body.lastActivityAt) + IDLE_MS).toISOString());
    assert.equal(
      (await record())?.lastActivityAt,
      body.lastActivityAt,
      "the warm is the builder's last activity",
    );
    assert.equal((await record())?.holder, undefined, "the warm takes no lease");
    await waitFor(
      () => Promise.resolve(cloud.arm.getVm(DEV)?.powerState),
      (state) => state === "running",
    );
  });

  it("answers 200 with nothing to do for a running builder, and still counts as use", async () => {
    const res = await warm("dev");

    assert.equal(res.status, 200, res.text);
    const body = res.body as WarmResponse;
    assert.equal(body.action, "none");
    assert.equal(body.powerState, "running");
    assert.equal(body.reason, "already running");
    assert.equal((await record())?.lastActivityAt, body.lastActivityAt);
  });

  it("refuses an unknown environment with 404 and the environments it knows", async () => {
    const res = await warm("staging");

    assert.equal(res.status, 404, res.text);
    const { error } = res.body as ErrorResponse;
    assert.equal(error.code, "UnknownEnvironment");
    assert.equal(error.message, 'unknown environment "staging"');
    assert.equal(error.hint, "Use one of: dev, prod.");
  });

  it("leaves a builder a build holds alone: no start, no write, the holder named", async () => {
    cloud.arm.addVm(DEV, { powerState: "deallocated" });
    const held = {
      ...emptyRecord(builderKey(DEV)),
      holder: "20260101000000-aaaaaaaaaa",
      generation: 3,
      leaseExpiresAt: new Date(Date.now() + 600_000).toISOString(),
      acquiredAt: new Date().toISOString(),
      lastActivityAt: new Date().toISOString(),
    };
    await deps.leases.write(held, undefined);
    const before = await deps.leases.read(builderKey(DEV));

    const res = await warm("dev");

    assert.equal(res.status, 200, res.text);
    const body = res.body as WarmResponse;
    assert.equal(body.action, "none");
    assert.equal(body.leaseHolder, held.holder);
    assert.match(body.reason ?? "", /^in use by build 20260101000000-aaaaaaaaaa/);
    assert.equal(cloud.arm.getVm(DEV)?.powerState, "deallocated", "the build starts it, not the warm");
    assert.equal((await deps.leases.read(builderKey(DEV)))?.etag, before?.etag, "the record is not written");
  });

  it("refuses with 409 while the idle shutdown holds the builder, and does not start it", async () => {
    cloud.arm.addVm(DEV, { powerState: "deallocated" });
    await deps.leases.write(
      {
        ...emptyRecord(builderKey(DEV)),
        holder: IDLE_SHUTDOWN_HOLDER,
        generation: 1,
        leaseExpiresAt: new Date(Date.now() + 600_000).toISOString(),
        acquiredAt: new Date().toISOString(),
      },
      undefined,
    );

    const res = await warm("dev");

    assert.equal(res.status, 409, res.text);
    const { error } = res.body as ErrorResponse;
    assert.equal(error.code, "BuilderShuttingDown");
    assert.match(error.hint ?? "", /fast-build warm/);
    assert.equal(cloud.arm.getVm(DEV)?.powerState, "deallocated");
  });

  it("passes Azure's refusal of the start on, with what it said, and the activity stays recorded", async () => {
    cloud.arm.addVm(DEV, { powerState: "deallocated" });
    cloud.arm.inject({
      method: "POST",
      path: /\/virtualMachines\/builder-dev\/start$/i,
      response: {
        status: 409,
        body: { error: { code: "OperationNotAllowed", message: "Operation 'start' is not allowed." } },
      },
    });

    const res = await warm("dev");

    assert.equal(res.status, 409, res.text);
    const { error } = res.body as ErrorResponse;
    assert.equal(error.code, "OperationNotAllowed");
    assert.match(error.message, /start VM rg-builds\/builder-dev/);
    assert.equal(cloud.arm.getVm(DEV)?.powerState, "deallocated");
    assert.ok((await record())?.lastActivityAt, "the warm was recorded before the start was asked for");
  });

  it("the idle timer keeps a just-warmed builder for the idle window and deallocates it after", async () => {
    // Last used three hours ago: without the warm, the timer would deallocate it now.
    const old = new Date(Date.now() - 3 * 3600_000).toISOString();
    await deps.leases.write({ ...emptyRecord(builderKey(DEV)), lastActivityAt: old }, undefined);
    const body = (await warm("dev")).body as WarmResponse;
    const warmedAt = Date.parse(body.lastActivityAt ?? "");
    const idleAt = (offsetMs: number) =>
      runIdleShutdown(
        { ...deps, now: () => new Date(warmedAt + offsetMs) },
        timerContext("idleShutdown", []),
        () => Promise.resolve(undefined),
      );

    const soon = await idleAt(IDLE_MS - 60_000);
    assert.deepEqual(
      soon.find((o) => o.builder === "builder-dev"),
      { builder: "builder-dev", action: "kept", reason: "recently used" },
    );
    assert.equal(cloud.arm.getVm(DEV)?.powerState, "running");

    const later = await idleAt(IDLE_MS + 60_000);
    assert.deepEqual(
      later.find((o) => o.builder === "builder-dev"),
      { builder: "builder-dev", action: "deallocated" },
    );
    assert.equal(cloud.arm.getVm(DEV)?.powerState, "deallocated");
    assert.equal((await record())?.lastActivityAt, body.lastActivityAt, "a shutdown is not activity");
  });

  it("an idle decision made on the record from before the warm loses its compare-and-set", async () => {
    const old = new Date(Date.now() - 3 * 3600_000).toISOString();
    await deps.leases.write({ ...emptyRecord(builderKey(DEV)), lastActivityAt: old }, undefined);
    // The idle timer read the record and decided to deallocate …
    const stale = await deps.leases.read(builderKey(DEV));
    const decision = decideIdleShutdown(
      stale!.record,
      "running",
      new Date(),
      idlePolicy(deps),
      QUIET_SIGNALS,
    );
    assert.equal(decision.kind, "deallocate");
    // … then the warm recorded its activity, before the timer took the lease.
    const body = (await warm("dev")).body as WarmResponse;

    assert.equal(
      decision.kind === "deallocate" && (await deps.leases.write(decision.record, stale!.etag)),
      false,
    );
    const now = await record();
    assert.equal(now?.holder, undefined);
    assert.equal(idleShutdownAt(now!, IDLE_MS), body.idleShutdownAt);
  });
});
