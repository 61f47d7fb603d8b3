/**
 * Types for the parts of durable-functions 3.5.0 that ship without declarations: its replay
 * engine's test entry point. Only what the local driver uses is declared; the shapes were read
 * from `lib/src/util/testingUtils.js` and `lib/src/orchestrations/OrchestratorState.js`.
 */
declare module "durable-functions/lib/src/util/testingUtils.js" {
  import type { InvocationContext } from "@azure/functions";
  import type { OrchestrationContext, OrchestrationHandler } from "durable-functions";

  /** What one replay returns: the actions scheduled so far, and the state of the generator. */
  export interface ReplayState {
    isDone: boolean;
    /** V1: one inner array per yield; V3: one inner array holding every action (compound ones nested). */
    actions: unknown[][];
    output?: unknown;
    error?: string;
    customStatus?: unknown;
    schemaVersion: number;
  }

  export class DummyOrchestrationContext extends InvocationContext implements OrchestrationContext {
    constructor(
      functionName?: string,
      invocationId?: string,
      logHandler?: (level: string, ...args: unknown[]) => void,
    );
    df: OrchestrationContext["df"];
  }

  export class DurableOrchestrationInput {
    constructor(
      instanceId?: string,
      history?: unknown[],
      input?: unknown,
      longRunningTimerIntervalDuration?: string,
      maximumShortTimerDuration?: string,
      defaultHttpAsyncRequestSleepTimeMillseconds?: number,
      schemaVersion?: number,
      isReplaying?: boolean,
      parentInstanceId?: string,
    );
  }

  export function createOrchestrator(
    fn: OrchestrationHandler,
  ): (input: DurableOrchestrationInput, context: DummyOrchestrationContext) => Promise<ReplayState>;
}
