/**
 * The function app's registrations, as the Functions host would receive them: routes, methods,
 * auth levels, durable client inputs and the timer's schedule (through the local host, which
 * captures them from the app's own entry).
 */
// The host module goes first: it installs our @azure/functions-core before anything registers.
import { startLocalHost, type LocalHost } from "@fast-build/local-cloud/host";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { LocalDurableEngine } from "@fast-build/local-cloud/durable/localEngine";
import { ACTIVITIES, BUILD_ORCHESTRATOR } from "../../src/core/activityContract.js";

describe("the function app's registrations", () => {
  let host: LocalHost;
  before(async () => {
    host = await startLocalHost({
      entry: new URL("../../src/functions/index.ts", import.meta.url).href,
      // These tests start no orchestration: an engine with nothing registered.
      engine: new LocalDurableEngine({ orchestrators: new Map(), activities: new Map() }),
      functionKey: "test-function-key-123",
      log: () => {},
    });
  });
  after(() => host.stop());

  it("captures the app's HTTP triggers with the routes, methods and auth levels Azure would get", () => {
    const routes = Object.fromEntries(
      host.registrations.http.map((r) => [r.name, `${r.methods.join(",")} ${r.route} ${r.authLevel}`]),
    );
    assert.deepEqual(
      {
        startBuild: routes.startBuild,
        sourceUploaded: routes.sourceUploaded,
        getBuild: routes.getBuild,
        getLogs: routes.getLogs,
        cancelBuild: routes.cancelBuild,
        buildCallback: routes.buildCallback,
        listBuilders: routes.listBuilders,
        findImages: routes.findImages,
        warmBuilder: routes.warmBuilder,
      },
      {
        startBuild: "POST builds function",
        sourceUploaded: "POST builds/{id}/source function",
        getBuild: "GET builds/{id} function",
        getLogs: "GET builds/{id}/logs function",
        cancelBuild: "POST builds/{id}/cancel function",
        buildCallback: "POST builds/{id}/callback anonymous",
        listBuilders: "GET builders function",
        findImages: "GET environments/{env}/images function",
        warmBuilder: "POST environments/{env}/warm function",
      },
    );
  });

  it("gives every function that talks to orchestrations a durable client input", () => {
    for (const name of [
      "startBuild",
      "sourceUploaded",
      "getBuild",
      "getLogs",
      "cancelBuild",
      "buildCallback",
    ]) {
      const registration = host.registrations.get(name);
      assert.ok(registration, name);
      assert.deepEqual(
        registration.extraInputs.map((input) => input.type),
        ["durableClient"],
        `${name} has a durable client input`,
      );
    }
    assert.deepEqual(host.registrations.get("listBuilders")?.extraInputs, []);
    assert.deepEqual(host.registrations.get("findImages")?.extraInputs, []);
    assert.deepEqual(host.registrations.get("warmBuilder")?.extraInputs, []);
  });

  it("registers the idle timer every minute with a durable client, the orchestrator and its activities", () => {
    const idle = host.registrations.timers.find((timer) => timer.name === "idleShutdown");
    assert.equal(idle?.schedule, "0 * * * * *");
    assert.deepEqual(
      idle?.extraInputs.map((input) => input.type),
      ["durableClient"],
      "it reads the lease holders' orchestrations",
    );
    assert.equal(idle?.trigger.type, "timerTrigger");
    assert.ok(host.registrations.activities.some((activity) => activity.name === ACTIVITIES.startBuild));
    assert.ok(host.registrations.get(BUILD_ORCHESTRATOR));
  });
});
