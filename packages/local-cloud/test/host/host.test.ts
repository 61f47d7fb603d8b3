// The host module goes first: it installs our @azure/functions-core before anything registers.
import { activityHandlers, startLocalHost, type HostLogEntry, type LocalHost } from "../../src/host/index.js";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { OrchestrationHandler } from "durable-functions";
import { LocalDurableEngine } from "../../src/durable/localEngine.js";

const KEY = "test-function-key-123";

describe("local functions host", () => {
  let host: LocalHost;
  let engine: LocalDurableEngine;
  let timerRuns: { isPastDue: boolean; next: string }[];
  const logs: HostLogEntry[] = [];

  before(async () => {
    let orchestrator: OrchestrationHandler | undefined;
    host = await startLocalHost({
      register: async () => {
        const fixture = await import("./fixtures/app.js");
        timerRuns = fixture.timerRuns;
        orchestrator = fixture.hostOrchestrator;
      },
      // Activities resolved by name from what the app registered, as the local runtime does.
      engine: (registrations) => {
        engine = new LocalDurableEngine({
          orchestrators: new Map([["hostOrchestrator", orchestrator!]]),
          activities: activityHandlers(registrations),
        });
        return engine;
      },
      functionKey: KEY,
      log: (entry) => logs.push(entry),
    });
  });
  after(() => host.stop());

  const api = (path: string, init: RequestInit = {}, key: string | null = KEY) =>
    fetch(`${host.url}/api/${path}`, {
      ...init,
      headers: { ...(key ? { "x-functions-key": key } : {}), ...(init.headers as Record<string, string>) },
    });

  describe("registrations", () => {
    it("captures HTTP triggers with their routes, methods and auth levels, and the durable client input", () => {
      const echo = host.registrations.get("echo");
      assert.ok(echo);
      assert.equal(
        host.registrations.http.some((r) => r.name === "echo"),
        true,
      );
      assert.deepEqual(
        host.registrations.get("durable")?.extraInputs.map((input) => input.type),
        ["durableClient"],
      );
    });

    it("captures timers with their schedule, and durable triggers by kind", () => {
      const tick = host.registrations.timers.find((timer) => timer.name === "tick");
      assert.equal(tick?.schedule, "0 */5 * * * *");
      assert.equal(tick?.trigger.type, "timerTrigger");
      assert.ok(host.registrations.activities.some((activity) => activity.name === "hostActivity"));
    });
  });

  describe("HTTP", () => {
    it("routes to the handler with route parameters, query, headers and body", async () => {
      const res = await api("echo/42/a/b%20c?x=1", {
        method: "POST",
        body: "hello",
        headers: { "x-test": "yes" },
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-echo"), "1");
      assert.deepEqual(await res.json(), {
        method: "POST",
        params: { id: "42", rest: "a/b c" },
        query: { x: "1" },
        header: "yes",
        body: "hello",
        functionName: "echo",
      });
      assert.ok(logs.some((entry) => entry.functionName === "echo" && entry.message === "echo 42"));
    });

    it("answers 401 without the function key, and accepts it as ?code=", async () => {
      assert.equal((await api("echo/1/x", {}, null)).status, 401);
      assert.equal((await api("echo/1/x", {}, "wrong-key-wrong-key-1")).status, 401);
      assert.equal((await api(`echo/1/x?code=${KEY}`, {}, null)).status, 200);
    });

    it("serves anonymous functions without a key", async () => {
      const res = await api("open", {}, null);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "open");
    });

    it("answers 404 for unknown routes and for methods a function does not accept", async () => {
      assert.equal((await api("nothing/here")).status, 404);
      assert.equal((await api("open", { method: "DELETE" }, null)).status, 404);
      assert.equal((await fetch(`${host.url}/echo/1/x`)).status, 404);
    });

    it("turns an unhandled exception into a 500 that reveals nothing of it", async () => {
      const res = await api("crash", {}, null);
      assert.equal(res.status, 500);
      assert.doesNotMatch(await res.text(), /secret internal detail/);
      assert.ok(
        logs.some((entry) => entry.functionName === "crash" && /secret internal detail/.test(entry.message)),
      );
    });
  });

  describe("durable client", () => {
    /** Polls the app's own status endpoint (a generous give-up, no timing assertion). */
    async function statusWhen(id: string, done: (body: Record<string, unknown>) => boolean) {
      for (let i = 0; ; i++) {
        const body = (await (await api(`durable/status/${id}`)).json()) as Record<string, unknown>;
        if (done(body)) return body;
        if (i > 500) throw new Error(`instance ${id} never reached the state: ${JSON.stringify(body)}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }

    it("runs an orchestration started, read and signalled through the real durable client", async () => {
      const start = await api("durable/start/inst-1", { method: "POST", body: JSON.stringify({ n: 1 }) });
      assert.equal(start.status, 202);
      assert.deepEqual(await start.json(), { id: "inst-1" });

      const waiting = await statusWhen("inst-1", (body) => body.customStatus !== null);
      assert.deepEqual(waiting, {
        runtimeStatus: "Running",
        input: { n: 1 },
        customStatus: { phase: "waiting", echoed: { echoed: { n: 1 } } },
      });

      assert.equal(
        (await api("durable/raise/inst-1", { method: "POST", body: JSON.stringify({ k: "v" }) })).status,
        202,
      );
      const done = await engine.waitForCompletion("inst-1", 30_000);
      assert.equal(done.runtimeStatus, "Completed");
      assert.deepEqual(done.output, { echoed: { echoed: { n: 1 } }, poke: { k: "v" } });
      assert.equal((await statusWhen("inst-1", () => true)).runtimeStatus, "Completed");
    });

    it("terminates an orchestration through the durable client", async () => {
      await api("durable/start/inst-t", { method: "POST", body: JSON.stringify({ n: 2 }) });
      await statusWhen("inst-t", (body) => body.customStatus !== null);
      assert.equal((await api("durable/terminate/inst-t", { method: "POST" })).status, 202);
      assert.equal((await engine.waitForCompletion("inst-t", 30_000)).runtimeStatus, "Terminated");
    });

    it("reports an unknown instance as the client's 404 error", async () => {
      const res = await api("durable/status/nobody");
      assert.equal(res.status, 404);
      assert.match(((await res.json()) as { message: string }).message, /404/);
    });

    it("lists instances", async () => {
      const res = await api("durable/list/x");
      assert.ok(((await res.json()) as string[]).includes("inst-1"));
    });

    it("keeps the durable endpoint off the public port", async () => {
      assert.notEqual(new URL(host.rpcBaseUrl).port, new URL(host.url).port);
      assert.equal((await api("../durabletask/instances/inst-1")).status, 404);
    });
  });

  describe("timers", () => {
    it("fires a timer on demand with a Timer whose next occurrence is on the schedule", async () => {
      await host.triggerTimer("tick");
      assert.equal(timerRuns.length, 1);
      const next = new Date(timerRuns[0]!.next);
      assert.equal(next.getUTCSeconds(), 0);
      assert.equal(next.getUTCMinutes() % 5, 0);
      assert.equal(timerRuns[0]!.isPastDue, false);
    });

    it("runs timers marked runOnStartup when a host runs timers, and stops them with the host", async () => {
      const { startupRuns } = await import("./fixtures/app.js");
      assert.equal(startupRuns.length, 0, "the first host does not run timers");
      const timed = await startLocalHost({
        engine: new LocalDurableEngine({ orchestrators: new Map(), activities: new Map() }),
        functionKey: KEY,
        runTimers: true,
        log: () => undefined,
      });
      try {
        for (let i = 0; startupRuns.length === 0; i++) {
          if (i > 500) throw new Error("the startup timer never ran");
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      } finally {
        await timed.stop();
      }
      assert.equal(startupRuns.length, 1);
    });

    it("names the known timers when asked for an unknown one", async () => {
      await assert.rejects(host.triggerTimer("nope"), /no timer trigger named "nope".*tick/);
    });
  });
});
