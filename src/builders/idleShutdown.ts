/**
 * Idle shutdown: deallocates builders nobody has used for the configured idle time. The decision
 * is `decideIdleShutdown` (src/core/idle.ts); it goes through the builder lease by compare-and-set,
 * so a build taking the lease at the same moment either wins (no shutdown) or queues behind the
 * shutdown and starts the VM again. Never while a lease is fresh. The timer trigger
 * (src/functions/idleShutdown.ts) only calls {@link runIdleShutdown} and logs the outcomes.
 */
import { safeLog, type Config, type EnvironmentConfig, type LogSink } from "../config/index.js";
import { builderKey, builderVm } from "../core/buildInput.js";
import { describeError } from "../core/errors.js";
import { decideIdleShutdown, finishIdleShutdown, type IdlePolicy } from "../core/idle.js";
import { emptyRecord, mutateRecord, type LeaseStore } from "../core/lease.js";
import type { ComputeGateway, VmRef } from "../core/ports.js";

/** Deallocation is a long-running ARM operation (minutes); the shutdown's lease must outlast it. */
const SHUTDOWN_LEASE_MS = 20 * 60_000;
/** A queued build re-asks for the lease well within this; one silent for longer has gone away. */
const QUEUE_STALE_MS = 10 * 60_000;

/** What the builder functions read: the environments, the idle time, the leases, the VMs, a clock. */
export interface BuildersDeps {
  config: { environments: Config["environments"]; builds: Pick<Config["builds"], "idleShutdownMinutes"> };
  leases: LeaseStore;
  compute: Pick<ComputeGateway, "getVmStatus" | "deallocate">;
  now(): Date;
}

/** Where the builder functions log (an `InvocationContext` is one). */
export type BuildersLog = LogSink;

export type IdleOutcome =
  | { builder: string; action: "kept"; reason: string }
  | { builder: string; action: "deallocated" }
  | { builder: string; action: "skipped"; reason: string }
  | { builder: string; action: "failed"; reason: string };

export function idlePolicy(deps: { config: Pick<BuildersDeps["config"], "builds"> }): IdlePolicy {
  return {
    idleMs: deps.config.builds.idleShutdownMinutes * 60_000,
    shutdownLeaseMs: SHUTDOWN_LEASE_MS,
    queueStaleMs: QUEUE_STALE_MS,
  };
}

/** The builders of all environments, once each (environments may share a builder). */
export function builders(
  environments: Readonly<Record<string, EnvironmentConfig>>,
): { key: string; vm: VmRef }[] {
  const byKey = new Map<string, VmRef>();
  for (const env of Object.values(environments)) {
    const vm = builderVm(env);
    byKey.set(builderKey(vm), vm);
  }
  return [...byKey].map(([key, vm]) => ({ key, vm }));
}

/** One pass over every builder; one builder's failure does not stop the others. */
export async function runIdleShutdown(deps: BuildersDeps, sink: BuildersLog): Promise<IdleOutcome[]> {
  // Redacted, one line per message: an SDK error can quote a URL with a signature.
  const log = safeLog(sink);
  const policy = idlePolicy(deps);
  return Promise.all(
    builders(deps.config.environments).map(async ({ key, vm }): Promise<IdleOutcome> => {
      try {
        return await shutdownIfIdle(deps, key, vm, policy, log);
      } catch (error) {
        log.error(`[builder ${vm.vmName}] idle check failed: ${describeError(error)}`);
        return { builder: vm.vmName, action: "failed", reason: describeError(error) };
      }
    }),
  );
}

async function shutdownIfIdle(
  deps: BuildersDeps,
  key: string,
  vm: VmRef,
  policy: IdlePolicy,
  log: BuildersLog,
): Promise<IdleOutcome> {
  const stored = await deps.leases.read(key);
  const { powerState } = await deps.compute.getVmStatus(vm);
  const decision = decideIdleShutdown(stored?.record ?? emptyRecord(key), powerState, deps.now(), policy);
  if (decision.kind === "keep") return { builder: vm.vmName, action: "kept", reason: decision.reason };

  // Take the lease first; losing the compare-and-set means a build just got it.
  if (!(await deps.leases.write(decision.record, stored?.etag))) {
    return {
      builder: vm.vmName,
      action: "skipped",
      reason: "the builder record changed; the next run decides",
    };
  }
  log.info(`[builder ${vm.vmName}] idle: deallocating`);
  try {
    await deps.compute.deallocate(vm);
  } finally {
    // Give the lease back even when deallocation failed, so builds are not blocked until it expires.
    await mutateRecord(deps.leases, key, (record) => ({
      record: finishIdleShutdown(record, decision.generation, deps.now()),
      result: undefined,
    }));
  }
  log.info(`[builder ${vm.vmName}] deallocated`);
  return { builder: vm.vmName, action: "deallocated" };
}
