/**
 * The idle timer's pass over every builder:
 * - **Orphans.** A fresh lease held by a build whose orchestration has ended (it crashed or was
 *   terminated, so its cleanup never ran) is taken back: the build's command is stopped by its
 *   name and the builder goes to the next build in the queue at once, not when the lease expires.
 * - **Idle shutdown.** Deallocates builders nobody has used for the configured idle time, or
 *   hibernates them where the environment says `idleShutdown: "hibernate"` (and deallocates after
 *   all when Azure refuses the hibernate: the builder must stop either way).
 * Both go through the builder lease by compare-and-set (src/core/idle.ts decides), so a build
 * taking the lease at the same moment either wins or queues behind them. The timer trigger
 * (src/functions/idleShutdown.ts) only calls {@link runIdleShutdown} and logs the outcomes.
 */
import {
  safeLog,
  type Config,
  type EnvironmentConfig,
  type IdleShutdownAction,
  type LogSink,
} from "../config/index.js";
import { ENDED_RUNTIME_STATUSES } from "../core/api.js";
import { RUN_COMMAND_PREFIX, builderKey, builderVm, runCommandName } from "../core/buildInput.js";
import { describeError } from "../core/errors.js";
import {
  decideIdleShutdown,
  decideRecovery,
  finishIdleShutdown,
  finishRecovery,
  leaseHoldingBuild,
  QUIET_SIGNALS,
  type IdlePolicy,
  type IdleSignals,
  type VmCommandsSignal,
} from "../core/idle.js";
import { warmBuilders, type WarmSetting } from "../core/warmHours.js";
import {
  IDLE_SHUTDOWN_HOLDER,
  RECOVERY_HOLDER,
  emptyRecord,
  mutateRecord,
  type LeaseStore,
  type StoredRecord,
} from "../core/lease.js";
import type { ComputeGateway, VmRef } from "../core/ports.js";
import { recordPower, type PowerDeps } from "./power.js";

/** Deallocation is a long-running ARM operation (minutes); the shutdown's lease must outlast it. */
const SHUTDOWN_LEASE_MS = 20 * 60_000;
/** A queued build re-asks for the lease well within this; one silent for longer has gone away. */
const QUEUE_STALE_MS = 10 * 60_000;
/**
 * build.sh posts a heartbeat every 30 s (FASTBUILD_HEARTBEAT_SECONDS); one younger than 5 minutes
 * (ten missed in a row, with room for instances' clocks to differ) says the build still runs. It
 * costs nothing when builds end normally: the idle window after the last build is longer.
 */
const HEARTBEAT_FRESH_MS = 5 * 60_000;

/** What the builder functions read: the environments, the idle time, the leases, the VMs, a clock. */
export interface BuildersDeps {
  config: {
    environments: Config["environments"];
    builds: Pick<Config["builds"], "idleShutdownMinutes">;
    arm: Pick<Config["arm"], "computeProfile">;
  };
  leases: LeaseStore;
  compute: Pick<
    ComputeGateway,
    "getVmStatus" | "deallocate" | "hibernate" | "removeBuildCommands" | "getVmSize" | "listBusyBuildCommands"
  >;
  /** Where deallocations and hibernations are recorded (the costs' disk minutes). */
  history: PowerDeps["history"];
  now(): Date;
}

/** The durable runtime status of a build's orchestration; undefined when there is no such instance. */
export type OrchestrationState = (buildId: string) => Promise<string | undefined>;

/** Where the builder functions log (an `InvocationContext` is one). */
export type BuildersLog = LogSink;

export type IdleOutcome =
  | { builder: string; action: "kept"; reason: string }
  | { builder: string; action: "hibernated" }
  /** `reason`: why it was deallocated although the environment asked for a hibernate. */
  | { builder: string; action: "deallocated"; reason?: string }
  | { builder: string; action: "recovered"; reason: string }
  | { builder: string; action: "skipped"; reason: string }
  | { builder: string; action: "failed"; reason: string };

export function idlePolicy(deps: { config: Pick<BuildersDeps["config"], "builds"> }): IdlePolicy {
  return {
    idleMs: deps.config.builds.idleShutdownMinutes * 60_000,
    shutdownLeaseMs: SHUTDOWN_LEASE_MS,
    queueStaleMs: QUEUE_STALE_MS,
    heartbeatFreshMs: HEARTBEAT_FRESH_MS,
  };
}

/** One builder, as the idle timer sees it. */
export interface IdleBuilder {
  key: string;
  vm: VmRef;
  idleShutdown: IdleShutdownAction;
  /** The warm settings of every environment on this builder. */
  warm: { environment: string; warm: WarmSetting | undefined }[];
}

/** The builders of all environments, once each (environments may share a builder). */
export function builders(environments: Readonly<Record<string, EnvironmentConfig>>): IdleBuilder[] {
  // Environments sharing a builder agree on its idleShutdown (config/index.ts refuses otherwise).
  const byKey = new Map<string, IdleBuilder>();
  for (const env of Object.values(environments)) {
    const vm = builderVm(env);
    const key = builderKey(vm);
    const warm = [...(byKey.get(key)?.warm ?? []), { environment: env.name, warm: env.warm }];
    byKey.set(key, { key, vm, idleShutdown: env.idleShutdown ?? "deallocate", warm });
  }
  return [...byKey.values()];
}

/** One pass over every builder; one builder's failure does not stop the others. */
export async function runIdleShutdown(
  deps: BuildersDeps,
  sink: BuildersLog,
  orchestrationState: OrchestrationState,
): Promise<IdleOutcome[]> {
  // Redacted, one line per message: an SDK error can quote a URL with a signature.
  const log = safeLog(sink);
  const policy = idlePolicy(deps);
  return Promise.all(
    builders(deps.config.environments).map(async (builder): Promise<IdleOutcome> => {
      const { key, vm } = builder;
      try {
        const stored = await deps.leases.read(key);
        const holder = leaseHoldingBuild(stored?.record ?? emptyRecord(key), deps.now());
        if (holder === undefined) {
          return await shutdownIfIdle(deps, builder, stored, policy, log, orchestrationState);
        }
        // A build holds the builder: nothing to shut down, but is that build still running?
        const state = await orchestrationState(holder);
        if (state !== undefined && !ENDED_RUNTIME_STATUSES.has(state)) {
          return { builder: vm.vmName, action: "kept", reason: `leased by ${holder}` };
        }
        return await recoverOrphan(deps, key, vm, stored!, state, log);
      } catch (error) {
        log.error(`[builder ${vm.vmName}] idle check failed: ${describeError(error)}`);
        return { builder: vm.vmName, action: "failed", reason: describeError(error) };
      }
    }),
  );
}

async function shutdownIfIdle(
  deps: BuildersDeps,
  { key, vm, idleShutdown, warm }: IdleBuilder,
  stored: StoredRecord | undefined,
  policy: IdlePolicy,
  log: BuildersLog,
  orchestrationState: OrchestrationState,
): Promise<IdleOutcome> {
  const { powerState } = await deps.compute.getVmStatus(vm);
  // The VM's own signals are read only for a VM that is up, and after the lease record (whose
  // ETag the shutdown's compare-and-set below is made against): a build that took or renewed the
  // lease since then makes that write lose, and a build whose lease lapsed unnoticed shows here.
  const signals =
    powerState === "deallocated" || powerState === "deallocating"
      ? undefined
      : await readIdleSignals(deps, key, vm, warm, stored, orchestrationState);
  const decision = decideIdleShutdown(
    stored?.record ?? emptyRecord(key),
    powerState,
    deps.now(),
    policy,
    signals ?? QUIET_SIGNALS,
  );
  if (decision.kind === "keep") return { builder: vm.vmName, action: "kept", reason: decision.reason };

  // Take the lease first; losing the compare-and-set means a build just got it.
  if (!(await deps.leases.write(decision.record, stored?.etag))) {
    return {
      builder: vm.vmName,
      action: "skipped",
      reason: "the builder record changed; the next run decides",
    };
  }
  let outcome: IdleOutcome;
  try {
    outcome = await stopIdle(deps, vm, idleShutdown, log);
    await recordPower(deps, vm, outcome.action === "hibernated" ? "hibernated" : "deallocated");
  } finally {
    // Give the lease back even when deallocation failed, so builds are not blocked until it expires.
    await mutateRecord(deps.leases, key, (record) => ({
      record: finishIdleShutdown(record, decision.generation, deps.now()),
      result: undefined,
    }));
  }
  log.info(`[builder ${vm.vmName}] ${outcome.action}`);
  return outcome;
}

/**
 * The VM's run commands, the builder's last heartbeat, and the warm hours. A failed read of the
 * run commands is a signal of its own (`unreadable`: keep the builder); a failed heartbeat read
 * throws, and the whole check fails and keeps the builder until the next tick.
 */
async function readIdleSignals(
  deps: BuildersDeps,
  key: string,
  vm: VmRef,
  warm: IdleBuilder["warm"],
  stored: StoredRecord | undefined,
  orchestrationState: OrchestrationState,
): Promise<IdleSignals> {
  // A build named on a lease that expired without a release: does its orchestration still run?
  // (After a restart of the function app its durable status is there, while no heartbeat has
  // arrived yet; on the hybrid profile that is what keeps a running build's builder.)
  const holder = stored?.record.holder;
  const expired =
    holder !== undefined && holder !== IDLE_SHUTDOWN_HOLDER && holder !== RECOVERY_HOLDER
      ? holder
      : undefined;
  const [commands, heartbeat, holderState] = await Promise.all([
    deps.compute.listBusyBuildCommands(vm, RUN_COMMAND_PREFIX).then(
      (busy): VmCommandsSignal => (busy === undefined ? { kind: "unsupported" } : { kind: "read", busy }),
      (error: unknown): VmCommandsSignal => ({ kind: "unreadable", reason: describeError(error) }),
    ),
    deps.leases.readHeartbeat(key),
    expired === undefined ? undefined : orchestrationState(expired),
  ]);
  return {
    commands,
    heartbeat,
    warm: warmBuilders(warm, deps.now()),
    ...(expired === undefined
      ? {}
      : {
          expiredHolder: {
            buildId: expired,
            running: holderState !== undefined && !ENDED_RUNTIME_STATUSES.has(holderState),
          },
        }),
  };
}

/**
 * Hibernate when configured, else (or when Azure refuses the hibernate) deallocate. A refusal is
 * Azure's 409 `OperationNotAllowed` (hibernation not enabled on the VM, VM not running) or an
 * operation ending `VMHibernateNotSupported` (guest not set up, or just booted) / `VMHibernateFailed`
 * (MicrosoftDocs/azure-docs articles/virtual-machines/hibernate-resume-troubleshooting.md, "Common
 * error codes"). Whatever the hibernate's failure, the builder is then deallocated: the user asked
 * for it to stop when idle, and a stopped builder without its memory is only a slower next start,
 * while a running one costs money every minute. The reason is logged and reported.
 */
async function stopIdle(
  deps: BuildersDeps,
  vm: VmRef,
  idleShutdown: IdleShutdownAction,
  log: BuildersLog,
): Promise<IdleOutcome> {
  let fallback: string | undefined;
  if (idleShutdown === "hibernate") {
    log.info(`[builder ${vm.vmName}] idle: hibernating`);
    try {
      await deps.compute.hibernate(vm);
      return { builder: vm.vmName, action: "hibernated" };
    } catch (error) {
      fallback = `hibernate refused, deallocated instead: ${describeError(error)}`;
      log.warn(`[builder ${vm.vmName}] ${fallback}`);
      // A hibernate that failed after it began may still be winding down: deallocate once it ended.
      await settled(deps, vm);
    }
  } else {
    log.info(`[builder ${vm.vmName}] idle: deallocating`);
  }
  await deps.compute.deallocate(vm);
  return fallback
    ? { builder: vm.vmName, action: "deallocated", reason: fallback }
    : { builder: vm.vmName, action: "deallocated" };
}

/** Waits (briefly) while the VM is in a transition, so the deallocate is not refused as mid-operation. */
async function settled(deps: BuildersDeps, vm: VmRef): Promise<void> {
  for (let i = 0; i < 30; i++) {
    const { powerState } = await deps.compute.getVmStatus(vm);
    if (powerState !== "deallocating" && powerState !== "stopping" && powerState !== "starting") return;
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  }
}

/**
 * Frees a builder whose lease holder's orchestration ended without releasing it: takes the lease,
 * stops the orphaned build command by its name (managed Run Command: delete it; the hybrid
 * profile's action Run Command cannot be stopped but by deallocating the VM, nor can a command
 * whose delete failed), and gives the lease back so the queue moves on now.
 */
async function recoverOrphan(
  deps: BuildersDeps,
  key: string,
  vm: VmRef,
  stored: StoredRecord,
  state: string | undefined,
  log: BuildersLog,
): Promise<IdleOutcome> {
  const orphan = stored.record.holder!;
  const takeover = decideRecovery(stored.record, deps.now(), SHUTDOWN_LEASE_MS);
  if (!(await deps.leases.write(takeover.record, stored.etag))) {
    return {
      builder: vm.vmName,
      action: "skipped",
      reason: "the builder record changed; the next run decides",
    };
  }
  const ended = state === undefined ? "has no orchestration" : `ended (${state})`;
  log.warn(
    `[builder ${vm.vmName}] build ${orphan} ${ended} without giving the builder back: stopping its command`,
  );
  let stopped: string;
  try {
    const removed =
      deps.config.arm.computeProfile === "latest"
        ? await deps.compute.removeBuildCommands(vm, { prefix: runCommandName(orphan) })
        : undefined;
    if (removed && removed.failed.length === 0) {
      stopped = removed.removed.length > 0 ? "its run command was deleted" : "it had no run command left";
    } else {
      await deps.compute.deallocate(vm);
      await recordPower(deps, vm, "deallocated");
      stopped = removed
        ? `its run command could not be deleted (${removed.failed.join("; ")}), so the builder was deallocated`
        : "the builder was deallocated to stop its Run Command (the hybrid profile's cannot be cancelled)";
    }
  } finally {
    await mutateRecord(deps.leases, key, (record) => ({
      record: finishRecovery(record, takeover.generation, deps.now()),
      result: undefined,
    }));
  }
  const reason = `build ${orphan} ${ended} while holding the builder: ${stopped}, and the builder is free`;
  log.info(`[builder ${vm.vmName}] ${reason}`);
  return { builder: vm.vmName, action: "recovered", reason };
}
