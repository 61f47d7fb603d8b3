/**
 * Timer `idleShutdown` (every 5 minutes): runs the idle shutdown (src/builders/idleShutdown.ts)
 * over every builder and logs what it did.
 */
import type { InvocationContext, Timer } from "@azure/functions";
import { runIdleShutdown } from "../builders/idleShutdown.js";
import { logLine } from "../config/index.js";
import { getDeps } from "./deps.js";

/** The timer handler `register.ts` schedules. */
export async function idleShutdown(_timer: Timer, context: InvocationContext): Promise<void> {
  const outcomes = await runIdleShutdown(await getDeps(), context);
  for (const outcome of outcomes) {
    if (outcome.action !== "deallocated")
      context.info(
        logLine(
          `[builder ${outcome.builder}] ${outcome.action}: ${"reason" in outcome ? outcome.reason : ""}`,
        ),
      );
  }
}
