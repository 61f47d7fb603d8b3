/**
 * `POST /api/environments/{env}/warm` (`fast-build warm <env>`): start an environment's builder now,
 * e.g. from a pre-push hook, so the VM's start is off the next build's path. The warm records
 * activity on the builder record first (src/core/idle.ts `decideWarm`: the one definition of "last
 * activity", by compare-and-set, never taking the lease), and only then looks at the VM, so the idle
 * timer cannot deallocate it between the look and the start, nor for the idle window after.
 */
import type { EnvironmentConfig } from "../config/index.js";
import type { WarmResponse } from "../core/api.js";
import { builderKey, builderVm } from "../core/buildInput.js";
import { ConflictError } from "../core/errors.js";
import { decideWarm, idleShutdownAt, type WarmDecision } from "../core/idle.js";
import { mutateRecord } from "../core/lease.js";
import type { ComputeGateway, PowerState } from "../core/ports.js";
import { idlePolicy, type BuildersDeps } from "./idleShutdown.js";
import { recordPower } from "./power.js";

export type WarmDeps = Omit<BuildersDeps, "compute"> & {
  compute: Pick<ComputeGateway, "getVmStatus" | "beginStart" | "getVmSize">;
};

/** Starts the builder if it is off (`started`), or says why nothing was done (`none`). */
export async function warmBuilder(deps: WarmDeps, env: EnvironmentConfig): Promise<WarmResponse> {
  const vm = builderVm(env);
  const key = builderKey(vm);
  const { idleMs } = idlePolicy(deps);
  const { decision, record } = await mutateRecord(deps.leases, key, (current) => {
    const decided: WarmDecision = decideWarm(current, deps.now());
    return {
      record: decided.kind === "recorded" ? decided.record : undefined,
      result: { decision: decided, record: decided.kind === "recorded" ? decided.record : current },
    };
  });
  const base = { environment: env.name, builder: vm.vmName };

  if (decision.kind === "shutting-down") {
    // Starting now would race the deallocation the idle timer holds the lease for.
    throw new ConflictError(`builder ${vm.vmName} is being deallocated by the idle shutdown right now`, {
      code: "BuilderShuttingDown",
      hint: "Run `fast-build warm` again in a few minutes, or just start the build: it waits for the shutdown and starts the builder again.",
    });
  }
  // A hibernated builder reads `deallocated` and is started the same way: the start resumes it.
  const { powerState, hibernated } = await deps.compute.getVmStatus(vm);
  if (decision.kind === "in-use") {
    return {
      ...base,
      action: "none",
      powerStateBefore: powerState,
      powerState,
      reason: `in use by build ${decision.holder}: it starts the builder if needed`,
      leaseHolder: decision.holder,
    };
  }
  const shutdownAt = idleShutdownAt(record, idleMs, deps.now());
  const activity = {
    ...(record.lastActivityAt ? { lastActivityAt: record.lastActivityAt } : {}),
    ...(shutdownAt ? { idleShutdownAt: shutdownAt } : {}),
  };
  if (powerState === "running" || powerState === "starting") {
    return {
      ...base,
      action: "none",
      powerStateBefore: powerState,
      powerState,
      reason: `already ${powerState}`,
      ...activity,
    };
  }
  if (powerState !== "deallocated" && powerState !== "stopped") {
    throw new ConflictError(`builder ${vm.vmName} is ${powerState}: it cannot be started now`, {
      code: "BuilderBusy",
      hint:
        powerState === "unknown"
          ? "Azure reports no power state for it; check the VM in the portal."
          : "Something outside fast-build is stopping it; run `fast-build warm` again once it has stopped.",
    });
  }
  try {
    await deps.compute.beginStart(vm);
  } catch (error) {
    // A build that took the lease after our record write may have started it first (ARM answers 409
    // to a second start while the VM is starting): that is the warm's outcome too.
    const now = await deps.compute.getVmStatus(vm).catch(() => undefined);
    if (!(error instanceof ConflictError) || !isUp(now?.powerState)) throw error;
    return {
      ...base,
      action: "none",
      powerStateBefore: powerState,
      powerState: now!.powerState,
      reason: `already ${now!.powerState}`,
      ...activity,
    };
  }
  await recordPower(deps, vm, "started");
  return {
    ...base,
    action: "started",
    powerStateBefore: powerState,
    powerState: "starting",
    ...activity,
    ...(hibernated ? { hibernated } : {}),
  };
}

function isUp(state: PowerState | undefined): boolean {
  return state === "starting" || state === "running";
}
