/** Step 3: the builder VM runs with its agent ready (started if it was off). */
import type { Task } from "durable-functions";
import { ACTIVITIES, type ResolvedEnvironment, type VmStatus } from "../core/activityContract.js";
import { RETRY } from "../core/retry.js";
import type { RunContext } from "./context.js";
import { BuildEnded } from "./failures.js";
import type { BuilderLease } from "./lease.js";
import { POLLS, pollUntil } from "./poll.js";

/** Starts the builder if needed and waits (renewing the lease) until its VM agent is ready. */
export function* ensureBuilderReady(
  run: RunContext,
  env: ResolvedEnvironment,
  lease: BuilderLease,
): Generator<Task, void, unknown> {
  // The lease is renewed during the retries too: AllocationFailed backs off for minutes.
  let vm = yield* run.call(ACTIVITIES.startVm, { vm: env.vm }, RETRY.vmStart, true, lease);
  const deadline = run.now() + env.limits.vmReadyTimeoutMs;
  yield* pollUntil(run, {
    policy: POLLS.builderReady,
    lease,
    probe: function* (attempt) {
      if (attempt > 0) {
        vm =
          vm.powerState === "deallocated" || vm.powerState === "stopped"
            ? // Someone stopped it again while we waited (a manual stop): start it once more.
              yield* run.call(ACTIVITIES.startVm, { vm: env.vm }, RETRY.vmStart, true, lease)
            : yield* run.call(ACTIVITIES.getVmStatus, { vm: env.vm }, RETRY.arm, true, lease);
      }
      run.status = { ...run.status, builder: { ...run.status.builder, powerState: vm.powerState } };
      run.publish();
      return vm.powerState === "running" && vm.agentReady ? vm : undefined;
    },
    deadline: {
      at: deadline,
      expired: (): VmStatus => {
        throw new BuildEnded("failed", {
          code: "BuilderNotReady",
          message: `builder ${env.vm.vmName} is ${vm.powerState}${vm.powerState === "running" ? " but its VM agent is not ready" : ""} after ${Math.round(env.limits.vmReadyTimeoutMs / 60_000)} minutes`,
          hint: "Check the VM in the Azure portal (boot diagnostics, VM agent status), then start the build again.",
        });
      },
    },
  });
}
