/**
 * ComputeGateway over `@azure/arm-compute`: power state, start/deallocate (waiting for the LRO),
 * and the build command as a managed Run Command (latest profile) or the action Run Command
 * (hybrid profile, resumable from the poller's serialized state).
 */
import {
  ComputeManagementClient,
  restorePoller,
  type InstanceViewStatus,
  type RunCommandResult,
  type VirtualMachineRunCommand,
} from "@azure/arm-compute";
import { NotFoundError, PermanentError } from "../core/errors.js";
import { isBuildCommandBusy } from "../core/idle.js";
import type {
  BusyCommand,
  BuildCommandHandle,
  BuildCommandSpec,
  BuildCommandView,
  ComputeGateway,
  ExecutionState,
  PowerState,
  RemovedCommands,
  VmRef,
  VmStatus,
} from "../core/ports.js";
import { callAzure, toTypedError } from "./errors.js";
import {
  audienceCredential,
  commonClientOptions,
  perSubscription,
  pollOptions,
  type ArmGatewayOptions,
} from "./clientOptions.js";
import { computeApiVersion, forceApiVersionPolicy } from "./hybridProfile.js";

export type { ArmGatewayOptions };

const POWER_STATES: readonly PowerState[] = [
  "starting",
  "running",
  "stopping",
  "stopped",
  "deallocating",
  "deallocated",
];
const EXECUTION_STATES: readonly ExecutionState[] = [
  "Unknown",
  "Pending",
  "Running",
  "Failed",
  "Succeeded",
  "TimedOut",
  "Canceled",
];
const TERMINAL: readonly ExecutionState[] = ["Failed", "Succeeded", "TimedOut", "Canceled"];

/** Creates the compute gateway. SDK clients are made on first use (cold starts pay only for what they call). */
export function createComputeGateway(options: ArmGatewayOptions): ComputeGateway {
  const profile = options.profile ?? "latest";
  const pinned = computeApiVersion(profile);
  const locations = new Map<string, string>();
  const poll = pollOptions(options);
  const client = perSubscription(
    (subscriptionId) =>
      new ComputeManagementClient(audienceCredential(options), subscriptionId, {
        ...commonClientOptions(options),
        additionalPolicies: pinned ? [{ position: "perCall", policy: forceApiVersionPolicy(pinned) }] : [],
      }),
  );
  const name = (vm: VmRef) => `${vm.resourceGroup}/${vm.vmName}`;

  const locationOf = async (vm: VmRef): Promise<string> => {
    if (options.location) return options.location;
    const key = `${vm.subscriptionId}/${name(vm)}`.toLowerCase();
    const cached = locations.get(key);
    if (cached) return cached;
    const found = await callAzure("arm", `read VM ${name(vm)}`, () =>
      client(vm.subscriptionId).virtualMachines.get(vm.resourceGroup, vm.vmName),
    );
    locations.set(key, found.location);
    return found.location;
  };

  return {
    async getVmStatus(vm: VmRef): Promise<VmStatus> {
      const view = await callAzure("arm", `read power state of VM ${name(vm)}`, () =>
        client(vm.subscriptionId).virtualMachines.instanceView(vm.resourceGroup, vm.vmName),
      );
      const code = view.statuses?.find((s) => s.code?.startsWith("PowerState/"))?.code ?? "";
      const state = code.slice("PowerState/".length).toLowerCase();
      const powerState = (POWER_STATES as readonly string[]).includes(state)
        ? (state as PowerState)
        : "unknown";
      // Run Command needs the guest agent: "Ready" only while it reports in.
      const agentReady =
        powerState === "running" && (view.vmAgent?.statuses ?? []).some((s) => s.displayStatus === "Ready");
      // A hibernated VM reads PowerState/deallocated plus HibernationState/Hibernated
      // (MicrosoftDocs/azure-docs articles/virtual-machines/linux/hibernate-resume-linux.md, the
      // status check of its platform instructions).
      const hibernated = (view.statuses ?? []).some(
        (s) => s.code?.toLowerCase() === "hibernationstate/hibernated",
      );
      return hibernated ? { powerState, agentReady, hibernated: true } : { powerState, agentReady };
    },

    async start(vm: VmRef): Promise<void> {
      await callAzure("arm", `start VM ${name(vm)}`, () =>
        client(vm.subscriptionId).virtualMachines.start(vm.resourceGroup, vm.vmName, poll).pollUntilDone(),
      );
    },

    async beginStart(vm: VmRef): Promise<void> {
      // Start answers 202 with an empty body and Azure-AsyncOperation + Location, and the VM reads
      // PowerState/starting until the operation ends (../shared/azure-recordings/vm-start-deallocate.json:
      // 4 s for a stopped VM; from deallocated, allocation makes it longer). `submitted()` resolves
      // on that 202: a refusal (409 mid-transition, 403, 404) still throws here.
      await callAzure("arm", `start VM ${name(vm)}`, async () => {
        await client(vm.subscriptionId).virtualMachines.start(vm.resourceGroup, vm.vmName, poll).submitted();
      });
    },

    async getVmSize(vm: VmRef): Promise<string> {
      // Virtual Machines - Get: properties.hardwareProfile.vmSize (azure-rest-api-specs,
      // specification/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/*/virtualMachine.json).
      const found = await callAzure("arm", `read VM ${name(vm)}`, () =>
        client(vm.subscriptionId).virtualMachines.get(vm.resourceGroup, vm.vmName),
      );
      return found.hardwareProfile?.vmSize ?? "unknown";
    },

    async deallocate(vm: VmRef): Promise<void> {
      await callAzure("arm", `deallocate VM ${name(vm)}`, () =>
        client(vm.subscriptionId)
          .virtualMachines.deallocate(vm.resourceGroup, vm.vmName, poll)
          .pollUntilDone(),
      );
    },

    async hibernate(vm: VmRef): Promise<void> {
      // `hibernate` is a query parameter of the deallocate from Compute api-version 2021-03-01
      // (@azure/arm-compute 25.x `VirtualMachinesDeallocateOptionalParams.hibernate`); the hybrid
      // profile's 2020-06-01 has none, and would deallocate plainly: never send it there.
      if (pinned) {
        throw new PermanentError(`hibernate VM ${name(vm)}: the ${profile} profile cannot hibernate`, {
          code: "HibernationUnsupportedProfile",
          hint: 'Azure Stack Hub (api-version 2020-06-01) has no hibernation: set the environment\'s idleShutdown to "deallocate".',
        });
      }
      await callAzure("arm", `hibernate VM ${name(vm)}`, () =>
        client(vm.subscriptionId)
          .virtualMachines.deallocate(vm.resourceGroup, vm.vmName, { ...poll, hibernate: true })
          .pollUntilDone(),
      );
    },

    async startBuildCommand(vm: VmRef, spec: BuildCommandSpec): Promise<BuildCommandHandle> {
      const parameters = toParameters(spec.parameters);
      if (pinned) {
        // Hybrid: the action Run Command. It has no protected parameters, so those travel as ordinary
        // parameters (Azure does not echo action parameters back). We return as soon as Azure accepted
        // it; the serialized poller lets any later call (another activity, another host) read the result.
        const what = `start build command ${spec.name} (action Run Command) on VM ${name(vm)}`;
        const launcher = spec.launcher;
        if (!launcher) {
          throw new PermanentError(`${what}: no launcher script`, {
            code: "LauncherMissing",
            hint: "Deploy the function app with dockerfiles/launcher.sh.",
          });
        }
        return callAzure("arm", what, async () => {
          const poller = client(vm.subscriptionId).virtualMachines.runCommand(
            vm.resourceGroup,
            vm.vmName,
            { commandId: "RunShellScript", script: launcher.split("\n"), parameters: actionParameters(spec) },
            poll,
          );
          await poller.submitted();
          return { kind: "action", name: spec.name, resumeState: await poller.serialize() };
        });
      }
      const location = await locationOf(vm);
      const body: VirtualMachineRunCommand = {
        location,
        source: { script: spec.script },
        parameters,
        protectedParameters: toParameters(spec.protectedParameters),
        // Provisioning succeeds once the script starts; we follow executionState, not the LRO.
        asyncExecution: true,
        timeoutInSeconds: spec.timeoutInSeconds,
        outputBlobUri: spec.outputBlobUri,
        errorBlobUri: spec.errorBlobUri,
        ...(spec.blobManagedIdentity
          ? {
              outputBlobManagedIdentity: spec.blobManagedIdentity,
              errorBlobManagedIdentity: spec.blobManagedIdentity,
            }
          : {}),
        // A failed build is reported through executionState/exitCode, not as a failed deployment.
        treatFailureAsDeploymentFailure: false,
      };
      await callAzure("arm", `start build command ${spec.name} on VM ${name(vm)}`, () =>
        client(vm.subscriptionId)
          .virtualMachineRunCommands.createOrUpdate(vm.resourceGroup, vm.vmName, spec.name, body, poll)
          .pollUntilDone(),
      );
      return { kind: "managed", name: spec.name };
    },

    async findBuildCommand(vm: VmRef, commandName: string): Promise<BuildCommandHandle | undefined> {
      if (pinned) return undefined;
      try {
        const found = await client(vm.subscriptionId).virtualMachineRunCommands.getByVirtualMachine(
          vm.resourceGroup,
          vm.vmName,
          commandName,
        );
        // Failed provisioning: the handler never ran the script (download or blob set-up failed;
        // run-command-handler-linux `internal/cmds/cmds.go` `enable`), so a new PUT is the retry.
        // Creating/Updating/Succeeded/Deleting: a PUT was accepted; another would replace the
        // command, and the handler would run the script again from the start.
        return found.provisioningState === "Failed" ? undefined : { kind: "managed", name: commandName };
      } catch (error) {
        const typed = toTypedError(error, "arm", `read build command ${commandName} on VM ${name(vm)}`);
        if (typed instanceof NotFoundError) return undefined;
        throw typed;
      }
    },

    async readBuildCommand(vm: VmRef, handle: BuildCommandHandle): Promise<BuildCommandView> {
      if (handle.kind === "action") return readActionCommand(client(vm.subscriptionId), vm, handle, poll);
      const command = await callAzure("arm", `read build command ${handle.name} on VM ${name(vm)}`, () =>
        client(vm.subscriptionId).virtualMachineRunCommands.getByVirtualMachine(
          vm.resourceGroup,
          vm.vmName,
          handle.name,
          { expand: "instanceView" },
        ),
      );
      const view = command.instanceView;
      const reported = (EXECUTION_STATES as readonly string[]).includes(view?.executionState ?? "")
        ? (view!.executionState as ExecutionState)
        : "Unknown";
      const state = killedAtTimeout(reported, view, command.timeoutInSeconds) ? "TimedOut" : reported;
      return {
        executionState: state,
        // Azure reports exitCode 0 while a script is still running: only a finished one has an exit code.
        exitCode: TERMINAL.includes(state) ? view?.exitCode : undefined,
        output: view?.output ?? "",
        error: view?.error ?? "",
        executionMessage: view?.executionMessage || undefined,
        startTime: view?.startTime?.toISOString(),
        endTime: view?.endTime?.toISOString(),
      };
    },

    async cancelBuildCommand(
      vm: VmRef,
      handle: BuildCommandHandle,
      options: { untilGone?: boolean } = {},
    ): Promise<void> {
      // The hybrid profile starts only action Run Commands, also behind a handle made from the
      // build's name alone (a start that never answered): none of them can be cancelled.
      if (handle.kind === "action" || pinned) {
        throw new PermanentError(`build command ${handle.name} on VM ${name(vm)} cannot be cancelled`, {
          code: "RunCommandNotCancellable",
          hint: "The action Run Command (hybrid profile) runs to its end (90 minutes at most); deallocate the VM to stop it.",
        });
      }
      try {
        const poller = client(vm.subscriptionId).virtualMachineRunCommands.delete(
          vm.resourceGroup,
          vm.vmName,
          handle.name,
          poll,
        );
        // DELETE answers 202 with Azure-AsyncOperation and Location and no Retry-After
        // (../shared/azure-recordings/run-command-v2.json, whose operation was Succeeded at the
        // first poll), so following it costs at least one SDK poll interval (2 s by default:
        // @azure/core-lro `POLL_INTERVAL_IN_MS`, src/poller/constants.ts). A command whose script
        // has exited needs only the accepted DELETE; a running one must be gone (its script
        // stopped) before anything else uses the VM.
        if (options.untilGone === false) await poller.submitted();
        else await poller.pollUntilDone();
      } catch (error) {
        const typed = toTypedError(error, "arm", `cancel build command ${handle.name} on VM ${name(vm)}`);
        // Already gone is what we wanted.
        if (!(typed instanceof NotFoundError)) throw typed;
      }
    },

    async listBusyBuildCommands(vm: VmRef, prefix: string): Promise<BusyCommand[] | undefined> {
      // Azure Stack Hub (2020-06-01) runs builds as the action Run Command, which leaves no resource
      // behind to list: there the builder's heartbeat is the VM-side signal.
      if (pinned) return undefined;
      // Virtual Machine Run Commands - List By Virtual Machine takes `$expand` like the Get does
      // (@azure/arm-compute 25.x `VirtualMachineRunCommandsListByVirtualMachineOptionalParams.expand`,
      // src/api/virtualMachineRunCommands/options.ts; the spec's VirtualMachineRunCommand.tsp):
      // `instanceView` gives every command's execution state in one call.
      return callAzure("arm", `list run commands on VM ${name(vm)}`, async () => {
        const busy: BusyCommand[] = [];
        const list = client(vm.subscriptionId).virtualMachineRunCommands.listByVirtualMachine(
          vm.resourceGroup,
          vm.vmName,
          { expand: "instanceView" },
        );
        for await (const command of list) {
          const found = {
            name: command.name ?? "",
            executionState: (EXECUTION_STATES as readonly string[]).includes(
              command.instanceView?.executionState ?? "",
            )
              ? (command.instanceView!.executionState as ExecutionState)
              : undefined,
            provisioningState: command.provisioningState,
          };
          if (found.name.startsWith(prefix) && isBuildCommandBusy(found)) busy.push(found);
        }
        return busy;
      });
    },

    async removeBuildCommands(vm: VmRef, { prefix, keep }): Promise<RemovedCommands> {
      // The action Run Command (hybrid) leaves no resource behind.
      if (pinned) return { removed: [], failed: [] };
      const vmClient = client(vm.subscriptionId).virtualMachineRunCommands;
      const names: string[] = [];
      try {
        for await (const command of vmClient.listByVirtualMachine(vm.resourceGroup, vm.vmName)) {
          const found = command.name ?? "";
          if (found.startsWith(prefix) && found.toLowerCase() !== keep?.toLowerCase()) names.push(found);
        }
      } catch (error) {
        return {
          removed: [],
          failed: [`(list): ${toTypedError(error, "arm", `list run commands on VM ${name(vm)}`).message}`],
        };
      }
      // In parallel, and waiting for each to be gone: a command being deleted still counts.
      const outcomes = await Promise.allSettled(
        names.map((found) =>
          Promise.resolve().then(() =>
            vmClient.delete(vm.resourceGroup, vm.vmName, found, poll).pollUntilDone(),
          ),
        ),
      );
      const result: RemovedCommands = { removed: [], failed: [] };
      outcomes.forEach((outcome, i) => {
        const found = names[i]!;
        if (outcome.status === "fulfilled") result.removed.push(found);
        else {
          const typed = toTypedError(outcome.reason, "arm", `delete run command ${found} on VM ${name(vm)}`);
          if (typed instanceof NotFoundError) result.removed.push(found);
          else result.failed.push(`${found}: ${typed.message}`);
        }
      });
      return result;
    },
  };
}

async function readActionCommand(
  client: ComputeManagementClient,
  vm: VmRef,
  handle: BuildCommandHandle,
  poll: { updateIntervalInMs?: number },
): Promise<BuildCommandView> {
  if (!handle.resumeState) {
    throw new PermanentError(`build command ${handle.name} has no poller state to resume from`, {
      code: "MissingResumeState",
      hint: "Pass the handle returned by startBuildCommand unchanged.",
    });
  }
  const what = `read build command ${handle.name} (action Run Command) on VM ${vm.resourceGroup}/${vm.vmName}`;
  const poller = restorePoller(client, handle.resumeState, client.virtualMachines.runCommand, poll);
  const empty = { output: "", error: "", exitCode: undefined, startTime: undefined, endTime: undefined };
  try {
    await poller.poll();
  } catch (error) {
    const typed = toTypedError(error, "arm", what);
    // The operation itself failed: that is the command's outcome, not an error reading it.
    if (/long-running operation has failed/.test(error instanceof Error ? error.message : "")) {
      return { ...empty, executionState: "Failed", executionMessage: typed.message };
    }
    throw typed;
  }
  const status = poller.operationState?.status;
  if (status === "failed") {
    return { ...empty, executionState: "Failed", executionMessage: poller.operationState?.error?.message };
  }
  if (status === "canceled") return { ...empty, executionState: "Canceled", executionMessage: undefined };
  if (!poller.isDone) return { ...empty, executionState: "Running", executionMessage: undefined };
  const { output, error } = splitActionOutput(poller.result);
  // The action Run Command reports no exit code: the build script's result line carries it.
  return { ...empty, executionState: "Succeeded", output, error, executionMessage: undefined };
}

/**
 * Reads stdout/stderr from an action Run Command result: the `ComponentStatus/StdOut|StdErr` pair,
 * or Linux's single ProvisioningState status whose message holds `[stdout]` and `[stderr]` sections.
 */
export function splitActionOutput(result: RunCommandResult | undefined): { output: string; error: string } {
  const statuses: InstanceViewStatus[] = result?.value ?? [];
  const stdout = statuses.find((s) => s.code?.includes("/StdOut/"));
  const stderr = statuses.find((s) => s.code?.includes("/StdErr/"));
  if (stdout || stderr) return { output: stdout?.message ?? "", error: stderr?.message ?? "" };
  const message = statuses[0]?.message ?? "";
  const match = /\[stdout\]\n([\s\S]*?)\n\[stderr\]\n([\s\S]*)$/.exec(message);
  return match ? { output: match[1] ?? "", error: match[2] ?? "" } : { output: message, error: "" };
}

/**
 * Linux has no `TimedOut`: at `timeoutInSeconds` the handler kills bash and reports `Failed` with
 * exit code -1 (Go's status for a signalled process; run-command-handler-linux
 * `internal/exec/exec.go`), the same message as any other exit. A script killed by something else
 * (the OOM killer) also ends -1, so the command must also have run for its whole timeout. The
 * instance view's times have whole seconds: allow one second of rounding.
 */
function killedAtTimeout(
  state: ExecutionState,
  view: { exitCode?: number; startTime?: Date; endTime?: Date } | undefined,
  timeoutInSeconds: number | undefined,
): boolean {
  if (state !== "Failed" || view?.exitCode !== -1 || !timeoutInSeconds) return false;
  if (!view.startTime || !view.endTime) return false;
  const ranMs = view.endTime.getTime() - view.startTime.getTime();
  return ranMs >= (timeoutInSeconds - 1) * 1000;
}

/**
 * The action Run Command on Linux writes its parameters into the script as unquoted
 * `export NAME=value` lines (run with /bin/sh), so a value with a space or `&` breaks the script.
 * Each value (and build.sh itself) therefore travels base64url-encoded, padded, whose alphabet
 * survives unquoted; dockerfiles/launcher.sh decodes them and runs build.sh with bash.
 */
function actionParameters(spec: BuildCommandSpec): { name: string; value: string }[] {
  const values = { ...spec.parameters, ...spec.protectedParameters };
  return [
    ...Object.entries(values).map(([key, value]) => ({
      name: `FASTBUILD_B64_${key}`,
      value: base64url(value),
    })),
    { name: "FASTBUILD_BUILD_SCRIPT_B64", value: base64url(spec.script) },
  ];
}

function base64url(text: string): string {
  const encoded = Buffer.from(text, "utf8").toString("base64url");
  return encoded + "=".repeat((4 - (encoded.length % 4)) % 4);
}

function toParameters(values: Readonly<Record<string, string>>): { name: string; value: string }[] {
  return Object.entries(values).map(([key, value]) => ({ name: key, value }));
}
