/**
 * durable-functions 3.5.0 ships its replay wrapper (what `df.app.orchestration` registers)
 * without declarations; the function app registers the orchestrator through it (see
 * src/functions/orchestration.ts). Only that entry point is declared here; the version is pinned
 * in package.json because the path is internal.
 */
declare module "durable-functions/lib/src/util/testingUtils.js" {
  import type { OrchestrationHandler } from "durable-functions";

  export function createOrchestrator(
    fn: OrchestrationHandler,
  ): (input: unknown, context: unknown) => Promise<unknown>;
}
