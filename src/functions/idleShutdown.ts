/**
 * Timer `idleShutdown` (every minute): frees builders held by builds whose orchestration ended
 * and deallocates idle ones (src/builders/idleShutdown.ts), and logs what it did. Its durable
 * client input reads the lease holders' orchestrations.
 */
import type { InvocationContext, Timer } from "@azure/functions";
import { runIdleShutdown } from "../builders/idleShutdown.js";
import { logLine } from "../config/index.js";
import { getDeps } from "./deps.js";
import { buildInstances } from "./instances.js";

/** The timer handler `register.ts` schedules. */
export async function idleShutdown(_timer: Timer, context: InvocationContext): Promise<void> {
  const instances = buildInstances(context);
  const outcomes = await runIdleShutdown(
    await getDeps(),
    context,
    async (buildId) => (await instances.get(buildId))?.runtimeStatus,
  );
  for (const outcome of outcomes) {
    // runIdleShutdown already logged each stop (and a hibernate's fallback, with its reason).
    if (outcome.action !== "deallocated" && outcome.action !== "hibernated")
      context.info(
        logLine(
          `[builder ${outcome.builder}] ${outcome.action}: ${"reason" in outcome ? outcome.reason : ""}`,
        ),
      );
  }
}
