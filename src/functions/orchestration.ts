/**
 * Registers the build orchestrator and its activities with the Functions host. Thin: the
 * orchestrator lives in src/orchestration/build.ts and the activities in src/activities/.
 *
 * Registration goes through `app.generic` with the same trigger types and wrapper that
 * `df.app.orchestration` / `df.app.activity` use, but loads durable-functions and the orchestrator on
 * the first invocation: durable-functions pulls in ~200 ms of modules (axios, lodash,
 * OpenTelemetry) that a cold start serving an HTTP request never needs.
 */
import { app, trigger, type InvocationContext } from "@azure/functions";
import { ACTIVITIES, BUILD_ORCHESTRATOR, DEPLOY_ORCHESTRATOR } from "../core/activityContract.js";
import { getDeps } from "./deps.js";

type Handler = (input: unknown) => Promise<unknown>;
type Listener = (orchestrationTrigger: unknown, context: InvocationContext) => Promise<unknown>;

let activities: Promise<ReadonlyMap<string, Handler>> | undefined;
let orchestrator: Promise<Listener> | undefined;

/** The activity handlers over the app's dependencies (rebuilt if building them failed). */
export function getActivities(): Promise<ReadonlyMap<string, Handler>> {
  activities ??= (async () => {
    const [deps, { createActivities }] = await Promise.all([getDeps(), import("../wiring.js")]);
    return createActivities(deps);
  })().catch((error: unknown) => {
    activities = undefined;
    throw error;
  });
  return activities;
}

function getOrchestrator(): Promise<Listener> {
  // durable-functions' own replay wrapper (what df.app.orchestration registers); the version is
  // pinned in package.json because this path is internal.
  orchestrator ??= Promise.all([
    import("durable-functions/lib/src/util/testingUtils.js"),
    import("../orchestration/build.js"),
  ]).then(
    ([{ createOrchestrator }, { buildOrchestrator }]) => createOrchestrator(buildOrchestrator) as Listener,
  );
  return orchestrator;
}

app.generic(BUILD_ORCHESTRATOR, {
  trigger: trigger.generic({ type: "orchestrationTrigger" }),
  handler: async (input, context) => (await getOrchestrator())(input, context),
});

let deployOrchestrator: Promise<Listener> | undefined;

/** The deploy orchestration of promotions and rollbacks (src/orchestration/promote.ts), loaded alike. */
function getDeployOrchestrator(): Promise<Listener> {
  deployOrchestrator ??= Promise.all([
    import("durable-functions/lib/src/util/testingUtils.js"),
    import("../orchestration/promote.js"),
  ]).then(([{ createOrchestrator }, module]) => createOrchestrator(module.deployOrchestrator) as Listener);
  return deployOrchestrator;
}

app.generic(DEPLOY_ORCHESTRATOR, {
  trigger: trigger.generic({ type: "orchestrationTrigger" }),
  handler: async (input, context) => (await getDeployOrchestrator())(input, context),
});

for (const name of Object.values(ACTIVITIES)) {
  app.generic(name, {
    trigger: trigger.generic({ type: "activityTrigger" }),
    handler: async (input) => {
      const handler = (await getActivities()).get(name);
      if (!handler) throw new Error(`activity ${name} has no handler`);
      return handler(input);
    },
  });
}
