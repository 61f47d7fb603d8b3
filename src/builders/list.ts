/**
 * The builder listing behind `GET /api/builders`: each environment's builder with its power state,
 * lease holder, queue, last activity and when the idle timer would deallocate it.
 */
import { logLine } from "../config/index.js";
import type { BuilderInfo } from "../core/api.js";
import { builderKey, builderVm } from "../core/buildInput.js";
import { idleShutdownAt } from "../core/idle.js";
import { emptyRecord, isLeaseFresh, isWaiting } from "../core/lease.js";
import { idlePolicy, type BuildersDeps, type BuildersLog } from "./idleShutdown.js";

/** One entry per environment (environments sharing a builder each show it). */
export async function describeBuilders(
  deps: Omit<BuildersDeps, "compute"> & { compute: Pick<BuildersDeps["compute"], "getVmStatus"> },
  sink: Pick<BuildersLog, "warn">,
): Promise<BuilderInfo[]> {
  // Redacted and on one line: the SDK's error text can quote a URL.
  const log = { warn: (message: string) => sink.warn(logLine(message)) };
  const now = deps.now();
  const { idleMs } = idlePolicy(deps);
  return Promise.all(
    Object.values(deps.config.environments).map(async (env): Promise<BuilderInfo> => {
      const vm = builderVm(env);
      const key = builderKey(vm);
      const [stored, { powerState, hibernated }] = await Promise.all([
        deps.leases.read(key),
        deps.compute.getVmStatus(vm).then(
          (status) => ({ powerState: status.powerState, hibernated: status.hibernated }),
          (error: unknown) => {
            // One unreachable VM should not hide the others: show it as unknown.
            log.warn(`[builder ${vm.vmName}] power state unavailable: ${String(error)}`);
            return { powerState: "unknown", hibernated: undefined };
          },
        ),
      ]);
      const record = stored?.record ?? emptyRecord(key);
      const fresh = isLeaseFresh(record, now);
      const shutdownAt = powerState === "deallocated" ? undefined : idleShutdownAt(record, idleMs, now);
      return {
        name: env.builderVm,
        environment: env.name,
        powerState,
        ...(fresh && record.holder ? { leaseHolder: record.holder } : {}),
        ...(fresh && record.leaseExpiresAt ? { leaseExpiresAt: record.leaseExpiresAt } : {}),
        // A superseded entry waits for nothing; it stays only until its build learns it (one queue poll).
        queue: record.queue.filter(isWaiting).map((entry) => entry.buildId),
        ...(record.lastActivityAt ? { lastActivityAt: record.lastActivityAt } : {}),
        ...(shutdownAt ? { idleShutdownAt: shutdownAt } : {}),
        ...(hibernated ? { hibernated } : {}),
        ...(env.idleShutdown === "hibernate" ? { idleShutdown: "hibernate" as const } : {}),
      };
    }),
  );
}
