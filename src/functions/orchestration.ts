/**
 * Registers the build orchestrator and its activities with the Functions host. Thin: the
 * orchestrator lives in src/orchestration/build.ts and the activities in src/activities/, built on
 * first use from the app's dependencies (see deps.ts), so loading the app stays cheap.
 */
import * as df from "durable-functions";
import type { InvocationContext } from "@azure/functions";
import { ACTIVITIES } from "../core/activityContract.js";
import { BUILD_ORCHESTRATOR } from "../core/buildInput.js";
import type { ContainerAppsGateway } from "../core/ports.js";
import { buildOrchestrator } from "../orchestration/build.js";
import { getDeps, type Deps } from "./deps.js";

type Activities = ReadonlyMap<string, (input: unknown) => Promise<unknown>>;
let activities: Promise<Activities> | undefined;

/** The activity handlers over the app's dependencies (rebuilt if building them failed). */
export function getActivities(): Promise<Activities> {
  activities ??= (async () => {
    const deps: Deps & { apps?: ContainerAppsGateway } = await getDeps();
    const [{ makeActivities }, apps] = await Promise.all([
      import("../activities/index.js"),
      deps.apps ?? defaultContainerApps(deps),
    ]);
    return makeActivities({ ...deps, apps });
  })().catch((error: unknown) => {
    activities = undefined;
    throw error;
  });
  return activities;
}

async function defaultContainerApps(deps: Deps): Promise<ContainerAppsGateway> {
  const [{ createCredential }, { createContainerAppsGateway }] = await Promise.all([
    import("../azure/credentials.js"),
    import("../azure/containerApps.js"),
  ]);
  return createContainerAppsGateway({
    endpoint: deps.config.arm.endpoint,
    credential: createCredential({ managedIdentityClientId: deps.config.credentials.managedIdentityClientId }),
    profile: deps.config.arm.computeProfile,
  });
}

df.app.orchestration(BUILD_ORCHESTRATOR, buildOrchestrator);

for (const name of Object.values(ACTIVITIES)) {
  df.app.activity(name, {
    handler: async (input: unknown, _context: InvocationContext) => {
      const handler = (await getActivities()).get(name);
      if (!handler) throw new Error(`activity ${name} has no handler`);
      return handler(input);
    },
  });
}
