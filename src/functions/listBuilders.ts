/** `GET /api/builders`: every environment's builder: power state, lease, queue, idle shutdown time. */
import type { HttpRequest, HttpResponseInit, InvocationContext } from "@azure/functions";
import type { BuilderInfo } from "../core/api.js";
import { builderKey, builderVm } from "../core/buildInput.js";
import { idleShutdownAt } from "../core/idle.js";
import { emptyRecord, isLeaseFresh } from "../core/lease.js";
import { getDeps } from "./deps.js";
import { apiHandler, json } from "./http.js";
import { idlePolicy } from "./idleShutdown.js";

async function run(_request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const deps = await getDeps();
  const now = deps.now();
  const { idleMs } = idlePolicy(deps);
  const infos = await Promise.all(
    Object.values(deps.config.environments).map(async (env): Promise<BuilderInfo> => {
      const vm = builderVm(env);
      const key = builderKey(vm);
      const [stored, powerState] = await Promise.all([
        deps.leases.read(key),
        deps.compute.getVmStatus(vm).then(
          (status) => status.powerState as string,
          (error: unknown) => {
            // One unreachable VM should not hide the others: show it as unknown.
            context.warn(`[builder ${vm.vmName}] power state unavailable: ${String(error)}`);
            return "unknown";
          },
        ),
      ]);
      const record = stored?.record ?? emptyRecord(key);
      const fresh = isLeaseFresh(record, now);
      const shutdownAt = powerState === "deallocated" ? undefined : idleShutdownAt(record, idleMs);
      return {
        name: env.builderVm,
        environment: env.name,
        powerState,
        ...(fresh && record.holder ? { leaseHolder: record.holder } : {}),
        ...(fresh && record.leaseExpiresAt ? { leaseExpiresAt: record.leaseExpiresAt } : {}),
        queue: record.queue.map((entry) => entry.buildId),
        ...(record.lastActivityAt ? { lastActivityAt: record.lastActivityAt } : {}),
        ...(shutdownAt ? { idleShutdownAt: shutdownAt } : {}),
      };
    }),
  );
  return json(200, infos);
}

/** The handler `register.ts` routes to (tests call it with their own request and context). */
export const listBuilders = apiHandler(run);
