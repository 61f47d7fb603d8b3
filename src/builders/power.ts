/**
 * The one way a builder's power transition is recorded (the start activity, `fast-build warm`,
 * the stop activity and the idle shutdown all call it): with the VM's size read from Azure, so a
 * resized builder's later minutes cost what the new size costs. The store adds a transition only
 * when it differs from the builder's last one, so a retried or repeated call records nothing more.
 */
import type { HistoryStore } from "../azure/history.js";
import { builderKey } from "../core/buildInput.js";
import type { PowerEvent } from "../core/history.js";
import type { ComputeGateway, VmRef } from "../core/ports.js";

export interface PowerDeps {
  history: Pick<HistoryStore, "recordPower" | "lastPowerState">;
  compute: Pick<ComputeGateway, "getVmSize">;
  now(): Date;
}

/** Records that `vm` went to `state` now; true when this added a transition. */
export async function recordPower(deps: PowerDeps, vm: VmRef, state: PowerEvent): Promise<boolean> {
  const key = builderKey(vm);
  // Already so (a retried start, a warm of a started builder): no ARM read for the size either.
  if ((await deps.history.lastPowerState(key)) === state) return false;
  // The size only prices the minutes: an unreadable size is recorded as such (its cost then says
  // "unknown rate"), it does not fail the start or the shutdown it is recorded for.
  const vmSize = await deps.compute.getVmSize(vm).catch(() => "unknown");
  return deps.history.recordPower({
    builderKey: key,
    builder: vm.vmName,
    state,
    at: deps.now().toISOString(),
    vmSize,
  });
}
