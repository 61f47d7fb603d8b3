/**
 * Microsoft.Compute as the emulator serves it: VMs with a power-state machine, long-running
 * start/deallocate/powerOff, managed Run Commands (v2) and the action Run Command. Shapes follow
 * the spec examples and the recorded exchanges (202 with empty body and both `Azure-AsyncOperation`
 * and `Location` for actions; 201/200 with body and `Azure-AsyncOperation` only for run-command PUT/PATCH).
 */
import type { PowerState, RunCommandExecutor, VmIdentity, VmInit, VmRef, VmView } from "./types.js";
import type { AppendBlobWriter } from "./runCommandBlobs.js";
import { BlobSetupError, createOrReplaceAppendBlob, type BlobManagedIdentity } from "./runCommandBlobs.js";
import {
  ArmHttpError,
  armTime,
  badRequest,
  isRecord,
  newId,
  normaliseLocation,
  methodNotAllowed,
  missingResource,
  requireMethod,
  notFound,
  tail,
  type ArmRequest,
  type Reply,
  type Timers,
} from "./http.js";

export interface ComputeContext {
  endpoint(): string;
  timing: {
    vmStartMs: number;
    vmDeallocateMs: number;
    /** Start of a hibernated VM (a resume): shorter than `vmStartMs`. */
    vmResumeMs: number;
    vmHibernateMs: number;
    vmPowerOffMs: number;
    provisioningMs: number;
    /** How often running output reaches the blobs and the instance view. */
    flushMs: number;
  };
  storageCa: string | undefined;
  executor(): RunCommandExecutor;
  takeOperationFault(
    operation: "start" | "deallocate" | "powerOff" | "hibernate",
    vmName: string,
  ): { code: string; message: string } | undefined;
  timers: Timers;
}

type OperationStatus = "InProgress" | "Succeeded" | "Failed" | "Canceled";

interface ComputeOperation {
  id: string;
  subscriptionId: string;
  location: string;
  startTime: string;
  endTime?: string;
  status: OperationStatus;
  error?: { code: string; message: string };
  /** Final result of the action Run Command (`{value: [...]}`); other operations end with an empty body. */
  result?: { value: InstanceViewStatus[] };
}

interface InstanceViewStatus {
  code: string;
  level: "Info" | "Warning" | "Error";
  displayStatus: string;
  message?: string;
  time?: string;
}

type ExecutionState = "Unknown" | "Pending" | "Running" | "Failed" | "Succeeded" | "TimedOut" | "Canceled";

interface RunCommandState {
  name: string;
  location: string;
  tags: Record<string, string> | undefined;
  /** What the caller sent (minus secrets), echoed back. */
  source: Record<string, unknown>;
  parameters: { name: string; value: string }[];
  protectedParameters: { name: string; value: string }[];
  asyncExecution: boolean;
  treatFailureAsDeploymentFailure: boolean | undefined;
  runAsUser: string | undefined;
  timeoutInSeconds: number;
  outputBlobUri: string | undefined;
  errorBlobUri: string | undefined;
  outputBlobManagedIdentity: BlobManagedIdentity | undefined;
  errorBlobManagedIdentity: BlobManagedIdentity | undefined;
  provisioningState: "Creating" | "Updating" | "Succeeded" | "Failed" | "Deleting";
  view: {
    executionState: ExecutionState;
    exitCode: number;
    executionMessage: string;
    output: string;
    error: string;
    startTime: string | undefined;
    endTime: string | undefined;
  };
  abort: AbortController | undefined;
}

interface VmState {
  ref: VmRef;
  location: string;
  vmId: string;
  powerState: PowerState;
  identity: VmIdentity | undefined;
  /** `additionalCapabilities.hibernationEnabled`. */
  hibernationEnabled: boolean;
  /** Deallocated by a hibernate (`HibernationState/Hibernated`): the next start is a resume. */
  hibernated: boolean;
  provisioningTime: string;
  runCommands: Map<string, RunCommandState>;
  actionRunning: boolean;
  /** Stops the running action Run Command's script when the VM goes down (it cannot be cancelled otherwise). */
  actionAbort: AbortController | undefined;
  vmSize: string;
}

const ID = "([^/]+)";
const VM_BASE = `^/subscriptions/${ID}/resourceGroups/${ID}/providers/Microsoft\\.Compute/virtualMachines/${ID}`;
const routes = {
  vm: new RegExp(`${VM_BASE}$`, "i"),
  instanceView: new RegExp(`${VM_BASE}/instanceView$`, "i"),
  action: new RegExp(`${VM_BASE}/(start|deallocate|powerOff)$`, "i"),
  actionRunCommand: new RegExp(`${VM_BASE}/runCommand$`, "i"),
  runCommands: new RegExp(`${VM_BASE}/runCommands$`, "i"),
  runCommand: new RegExp(`${VM_BASE}/runCommands/${ID}$`, "i"),
  operation: new RegExp(
    `^/subscriptions/${ID}/providers/Microsoft\\.Compute/locations/${ID}/operations/${ID}$`,
    "i",
  ),
};

const DISPLAY: Record<PowerState, string> = {
  starting: "VM starting",
  running: "VM running",
  stopping: "VM stopping",
  stopped: "VM stopped",
  deallocating: "VM deallocating",
  deallocated: "VM deallocated",
  unknown: "VM status unknown",
};

/** A new Linux run command has no script: what Azure reported in the recording (kept as is). */
const NO_SCRIPT_MESSAGE =
  "Execution failed: failed to get configuration: invalid configuration: Either 'source.script' or 'source.scriptUri' has to be specified";

/** Managed run commands a VM may hold (MicrosoftDocs/azure-docs issue 117976). */
const MAX_MANAGED_RUN_COMMANDS = 25;

export class ComputeProvider {
  private readonly vms = new Map<string, VmState>();
  private readonly operations = new Map<string, ComputeOperation>();

  constructor(private readonly ctx: ComputeContext) {}

  hasResourceGroup(subscriptionId: string, resourceGroup: string): boolean {
    const prefix = `${subscriptionId}/${resourceGroup}/`.toLowerCase();
    return [...this.vms.keys()].some((key) => key.startsWith(prefix));
  }

  addVm(ref: VmRef, init: VmInit = {}): void {
    this.vms.set(key(ref), {
      ref,
      location: init.location ?? "westus",
      vmId: newId(),
      powerState: init.hibernated ? "deallocated" : (init.powerState ?? "deallocated"),
      identity: init.identity,
      hibernationEnabled: init.hibernationEnabled === true,
      hibernated: init.hibernated === true && init.hibernationEnabled === true,
      provisioningTime: armTime(),
      runCommands: new Map(),
      actionRunning: false,
      actionAbort: undefined,
      vmSize: init.vmSize ?? "Standard_D4s_v5",
    });
  }

  getVm(ref: VmRef): VmView | undefined {
    const vm = this.vms.get(key(ref));
    return (
      vm && {
        powerState: vm.powerState,
        location: vm.location,
        agentReady: vm.powerState === "running",
        hibernated: vm.hibernated,
      }
    );
  }

  /** Answers the request when it is a compute route; undefined otherwise. */
  handle(req: ArmRequest, rgExists: (sub: string, rg: string) => boolean): Reply | undefined {
    const match = (re: RegExp) => re.exec(req.path);
    let m: RegExpExecArray | null;
    if ((m = match(routes.operation))) return this.operationStatus(req, m[3]!);
    const vmOf = (mm: RegExpExecArray): VmState => {
      const ref = { subscriptionId: mm[1]!, resourceGroup: mm[2]!, vmName: mm[3]! };
      const vm = this.vms.get(key(ref));
      if (vm) return vm;
      throw missingResource(
        rgExists(ref.subscriptionId, ref.resourceGroup),
        "Microsoft.Compute/virtualMachines",
        ref.vmName,
        ref.resourceGroup,
      );
    };
    if ((m = match(routes.vm))) {
      requireMethod(req, ["GET"]);
      const vm = vmOf(m);
      const expand = req.query.get("$expand");
      return { status: 200, body: this.vmJson(vm, expand === "instanceView") };
    }
    if ((m = match(routes.instanceView))) {
      requireMethod(req, ["GET"]);
      return { status: 200, body: instanceView(vmOf(m)) };
    }
    if ((m = match(routes.action))) {
      requireMethod(req, ["POST"]);
      return this.powerAction(req, vmOf(m), m[4]!.toLowerCase() as "start" | "deallocate" | "poweroff");
    }
    if ((m = match(routes.actionRunCommand))) {
      requireMethod(req, ["POST"]);
      return this.actionRunCommand(req, vmOf(m));
    }
    if ((m = match(routes.runCommands))) {
      requireMethod(req, ["GET"]);
      const vm = vmOf(m);
      const expand = req.query.get("$expand") === "instanceView";
      return {
        status: 200,
        body: { value: [...vm.runCommands.values()].map((rc) => runCommandJson(vm, rc, expand)) },
      };
    }
    if ((m = match(routes.runCommand))) {
      const vm = vmOf(m);
      const name = m[4]!;
      switch (req.method) {
        case "GET": {
          const rc = vm.runCommands.get(name.toLowerCase());
          if (!rc)
            throw notFound(
              `Microsoft.Compute/virtualMachines/${vm.ref.vmName}/runCommands`,
              name,
              vm.ref.resourceGroup,
            );
          return { status: 200, body: runCommandJson(vm, rc, req.query.get("$expand") === "instanceView") };
        }
        case "PUT":
        case "PATCH":
          return this.putRunCommand(req, vm, name);
        case "DELETE":
          return this.deleteRunCommand(req, vm, name);
        default:
          throw methodNotAllowed(req);
      }
    }
    return undefined;
  }

  // ---- long-running operations -------------------------------------------------------------

  private startOperation(
    vm: VmState,
    apiVersion: string,
  ): { op: ComputeOperation; headers: Record<string, string> } {
    const op: ComputeOperation = {
      id: newId(),
      subscriptionId: vm.ref.subscriptionId,
      location: normaliseLocation(vm.location),
      startTime: armTime(),
      status: "InProgress",
    };
    this.operations.set(op.id, op);
    const base =
      `${this.ctx.endpoint()}/subscriptions/${vm.ref.subscriptionId}/providers/Microsoft.Compute/locations/` +
      `${op.location}/operations/${op.id}?p=${vm.vmId}`;
    return {
      op,
      headers: {
        "Azure-AsyncOperation": `${base}&api-version=${apiVersion}`,
        Location: `${base}&monitor=true&api-version=${apiVersion}`,
        "Azure-AsyncNotification": "Enabled",
      },
    };
  }

  private finish(op: ComputeOperation, error?: { code: string; message: string }): void {
    op.endTime = armTime();
    op.status = error ? "Failed" : "Succeeded";
    if (error) op.error = error;
  }

  private operationStatus(req: ArmRequest, id: string): Reply {
    requireMethod(req, ["GET"]);
    const op = this.operations.get(id.toLowerCase()) ?? this.operations.get(id);
    if (!op) throw new ArmHttpError(404, "NotFound", `Operation '${id}' was not found.`);
    if (req.query.get("monitor") === "true") {
      // The `Location` (monitor) URL: 202 while running, then the operation's result.
      if (op.status === "InProgress")
        return { status: 202, headers: { Location: this.monitorUrl(op, req.apiVersion) } };
      if (op.status === "Failed" && op.error)
        return new ArmHttpError(409, op.error.code, op.error.message).toReply();
      return { status: 200, body: op.result };
    }
    const body: Record<string, unknown> = { startTime: op.startTime };
    if (op.endTime) body.endTime = op.endTime;
    body.status = op.status;
    if (op.result && op.status === "Succeeded") body.properties = { output: op.result };
    if (op.error) body.error = op.error;
    body.name = op.id;
    return { status: 200, body };
  }

  private monitorUrl(op: ComputeOperation, apiVersion: string): string {
    return (
      `${this.ctx.endpoint()}/subscriptions/${op.subscriptionId}/providers/Microsoft.Compute/locations/` +
      `${op.location}/operations/${op.id}?monitor=true&api-version=${apiVersion}`
    );
  }

  // ---- power state -------------------------------------------------------------------------

  private powerAction(req: ArmRequest, vm: VmState, action: "start" | "deallocate" | "poweroff"): Reply {
    const busy: PowerState[] = ["starting", "stopping", "deallocating"];
    if (busy.includes(vm.powerState)) {
      throw new ArmHttpError(
        409,
        "OperationNotAllowed",
        `Operation '${action}' is not allowed on VM '${vm.ref.vmName}' since the VM is ${vm.powerState}.`,
      );
    }
    if (action === "deallocate" && wantsHibernate(req)) return this.hibernate(req, vm);
    const { op, headers } = this.startOperation(vm, req.apiVersion);
    const { timing } = this.ctx;
    if (action === "start") {
      const fault = this.ctx.takeOperationFault("start", vm.ref.vmName);
      if (vm.powerState === "running" && !fault) {
        this.finish(op);
      } else {
        const before = vm.powerState;
        // A hibernated VM is started with the ordinary start, which resumes it: its memory comes
        // back from the OS disk instead of a boot (MicrosoftDocs/azure-docs
        // articles/virtual-machines/hibernate-resume.md "How hibernation works";
        // hibernate-resume-troubleshooting.md "Unable to resume a VM": "Starting a hibernated VM
        // is similar to starting a stopped VM"). A failed start leaves it hibernated.
        const resuming = vm.hibernated;
        vm.powerState = "starting";
        this.ctx.timers.after(resuming ? timing.vmResumeMs : timing.vmStartMs, () => {
          vm.powerState = fault ? before : "running";
          if (!fault) vm.hibernated = false;
          vm.provisioningTime = armTime();
          this.finish(op, fault);
        });
      }
    } else {
      const fault = this.ctx.takeOperationFault(
        action === "poweroff" ? "powerOff" : "deallocate",
        vm.ref.vmName,
      );
      const target: PowerState = action === "poweroff" ? "stopped" : "deallocated";
      const already = action === "poweroff" ? ["stopped", "deallocated"] : ["deallocated"];
      // Stop-deallocating a hibernated VM discards the saved memory: it is plainly deallocated
      // (hibernate-resume.md FAQ: a hibernated VM can be stop(deallocated) to change its disks).
      if (!fault && action === "deallocate") vm.hibernated = false;
      if (already.includes(vm.powerState) && !fault) {
        this.finish(op);
      } else {
        const before = vm.powerState;
        vm.powerState = action === "poweroff" ? "stopping" : "deallocating";
        // A VM going down takes its running scripts with it.
        for (const rc of vm.runCommands.values()) rc.abort?.abort("vm-stopped");
        vm.actionAbort?.abort("vm-stopped");
        const ms = action === "poweroff" ? timing.vmPowerOffMs : timing.vmDeallocateMs;
        this.ctx.timers.after(ms, () => {
          vm.powerState = fault ? before : target;
          vm.provisioningTime = armTime();
          this.finish(op, fault);
        });
      }
    }
    return { status: 202, headers };
  }

  /**
   * `POST …/deallocate?hibernate=true` as Azure answers it (MicrosoftDocs/azure-docs
   * articles/virtual-machines/hibernate-resume-troubleshooting.md, "Common error codes"): only a
   * running VM with `additionalCapabilities.hibernationEnabled` may hibernate, else 409
   * `OperationNotAllowed` with Azure's message; a guest that cannot hibernate yet (right after boot)
   * fails the operation with `VMHibernateNotSupported` (inject an operation fault `hibernate`).
   * Hibernated: `PowerState/deallocated` plus `HibernationState/Hibernated` in the instance view
   * (articles/virtual-machines/linux/hibernate-resume-linux.md, the platform instructions' status check).
   */
  private hibernate(req: ArmRequest, vm: VmState): Reply {
    if (!vm.hibernationEnabled) {
      throw new ArmHttpError(
        409,
        "OperationNotAllowed",
        "The Hibernate-Deallocate Operation can only be triggered on a VM that is enabled for hibernation. Enable the property additionalCapabilities.hibernationEnabled during VM creation, or after stopping and deallocating the VM.",
      );
    }
    if (vm.powerState !== "running") {
      throw new ArmHttpError(
        409,
        "OperationNotAllowed",
        "The Hibernate-Deallocate Operation can only be triggered on a VM that is successfully provisioned and is running.",
      );
    }
    const { op, headers } = this.startOperation(vm, req.apiVersion);
    const fault = this.ctx.takeOperationFault("hibernate", vm.ref.vmName);
    vm.powerState = "deallocating";
    // The guest suspends to disk, so its processes are not killed; a managed Run Command's script
    // would resume with the VM. The emulator's executors are host processes that cannot be frozen,
    // so they stop here as at a deallocate (the idle shutdown hibernates only idle builders).
    if (!fault) {
      for (const rc of vm.runCommands.values()) rc.abort?.abort("vm-stopped");
      vm.actionAbort?.abort("vm-stopped");
    }
    this.ctx.timers.after(this.ctx.timing.vmHibernateMs, () => {
      vm.powerState = fault ? "running" : "deallocated";
      if (!fault) vm.hibernated = true;
      vm.provisioningTime = armTime();
      this.finish(op, fault);
    });
    return { status: 202, headers };
  }

  private vmJson(vm: VmState, withInstanceView: boolean): Record<string, unknown> {
    const { subscriptionId, resourceGroup, vmName } = vm.ref;
    const id = `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/virtualMachines/${vmName}`;
    const properties: Record<string, unknown> = {
      vmId: vm.vmId,
      hardwareProfile: { vmSize: vm.vmSize },
      ...(vm.hibernationEnabled ? { additionalCapabilities: { hibernationEnabled: true } } : {}),
      storageProfile: {
        imageReference: {
          publisher: "Canonical",
          offer: "ubuntu-24_04-lts",
          sku: "server",
          version: "latest",
        },
        osDisk: {
          osType: "Linux",
          name: `${vmName}_OsDisk_1`,
          createOption: "FromImage",
          caching: "ReadWrite",
          managedDisk: {
            storageAccountType: "Premium_LRS",
            id: `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/disks/${vmName}_OsDisk_1`,
          },
          deleteOption: "Delete",
          diskSizeGB: 64,
        },
        dataDisks: [],
      },
      osProfile: {
        computerName: vmName,
        adminUsername: "azureuser",
        linuxConfiguration: { disablePasswordAuthentication: true, provisionVMAgent: true },
        secrets: [],
        allowExtensionOperations: true,
      },
      networkProfile: {
        networkInterfaces: [
          {
            id: `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Network/networkInterfaces/${vmName}-nic`,
          },
        ],
      },
      provisioningState: "Succeeded",
    };
    if (withInstanceView) properties.instanceView = instanceView(vm);
    properties.timeCreated = vm.provisioningTime;
    return {
      name: vmName,
      id,
      type: "Microsoft.Compute/virtualMachines",
      location: vm.location,
      tags: {},
      etag: '"1"',
      properties,
    };
  }

  // ---- managed run commands ----------------------------------------------------------------

  private putRunCommand(req: ArmRequest, vm: VmState, name: string): Reply {
    const existing = vm.runCommands.get(name.toLowerCase());
    if (req.method === "PATCH" && !existing) {
      throw notFound(
        `Microsoft.Compute/virtualMachines/${vm.ref.vmName}/runCommands`,
        name,
        vm.ref.resourceGroup,
      );
    }
    if (!existing && vm.runCommands.size >= MAX_MANAGED_RUN_COMMANDS) {
      // The message Azure sends (MicrosoftDocs/azure-docs issue 117976). The issue quotes only the
      // message, not the code or status: 409 `OperationNotAllowed` is CRP's usual shape for a
      // refused operation on a VM, the closest documented one.
      throw new ArmHttpError(
        409,
        "OperationNotAllowed",
        `The maximum number of managed Run commands (max=${MAX_MANAGED_RUN_COMMANDS}, current=${vm.runCommands.size}) has been exceeded. Use fewer Run commands and retry the request. To list Run commands, refer: https://aka.ms/RunCommandManaged#list-all-deployed-runcommand-resources-on-a-vm-1 and then delete a Run command: https://aka.ms/RunCommandManaged#delete-runcommand-resource-from-the-vm-1`,
      );
    }
    if (!isRecord(req.body))
      throw badRequest("InvalidRequestContent", "The request content was invalid: expected a JSON object.");
    const props = req.body.properties;
    if (!isRecord(props)) {
      throw badRequest("InvalidParameter", "Required parameter 'properties' is missing (null).");
    }
    if (req.method === "PUT" && !existing && typeof req.body.location !== "string") {
      throw badRequest("LocationRequired", "The location property is required for this definition.");
    }
    if (!isRecord(props.source) && !(req.method === "PATCH" && existing)) {
      throw badRequest("InvalidParameter", "Required parameter 'source' is missing (null).");
    }
    const parameters =
      props.parameters === undefined
        ? (existing?.parameters ?? [])
        : parseParameters(props.parameters, "parameters");
    const protectedParameters =
      props.protectedParameters === undefined
        ? (existing?.protectedParameters ?? [])
        : parseParameters(props.protectedParameters, "protectedParameters");
    const timeout = props.timeoutInSeconds ?? existing?.timeoutInSeconds ?? 0;
    if (typeof timeout !== "number" || !Number.isInteger(timeout) || timeout < 0) {
      throw badRequest("InvalidParameter", "'timeoutInSeconds' must be a non-negative integer.");
    }
    for (const field of ["outputBlobUri", "errorBlobUri", "runAsUser"] as const) {
      if (props[field] !== undefined && typeof props[field] !== "string") {
        throw badRequest("InvalidParameter", `'${field}' must be a string.`);
      }
    }
    for (const field of ["asyncExecution", "treatFailureAsDeploymentFailure"] as const) {
      if (props[field] !== undefined && typeof props[field] !== "boolean") {
        throw badRequest("InvalidParameter", `'${field}' must be true or false.`);
      }
    }
    const managedIdentity = (field: string): BlobManagedIdentity | undefined => {
      const value = props[field];
      if (value === undefined) return undefined;
      if (!isRecord(value) || Object.values(value).some((v) => typeof v !== "string")) {
        throw badRequest(
          "InvalidParameter",
          `'${field}' must be an object with string 'clientId' / 'objectId'.`,
        );
      }
      return value;
    };
    // 2020-06-01 predates treatFailureAsDeploymentFailure: like CRP, ignore what the version does not know.
    const knowsTreatFailure = req.apiVersion >= "2022-";
    existing?.abort?.abort("replaced");
    const rc: RunCommandState = {
      name,
      location:
        typeof req.body.location === "string" ? req.body.location : (existing?.location ?? vm.location),
      tags: isRecord(req.body.tags) ? (req.body.tags as Record<string, string>) : existing?.tags,
      source: isRecord(props.source) ? { ...props.source } : (existing?.source ?? {}),
      parameters,
      protectedParameters,
      asyncExecution: (props.asyncExecution as boolean | undefined) ?? existing?.asyncExecution ?? false,
      treatFailureAsDeploymentFailure: knowsTreatFailure
        ? ((props.treatFailureAsDeploymentFailure as boolean | undefined) ??
          existing?.treatFailureAsDeploymentFailure)
        : undefined,
      runAsUser: (props.runAsUser as string | undefined) ?? existing?.runAsUser,
      timeoutInSeconds: timeout,
      outputBlobUri: (props.outputBlobUri as string | undefined) ?? existing?.outputBlobUri,
      errorBlobUri: (props.errorBlobUri as string | undefined) ?? existing?.errorBlobUri,
      outputBlobManagedIdentity:
        managedIdentity("outputBlobManagedIdentity") ?? existing?.outputBlobManagedIdentity,
      errorBlobManagedIdentity:
        managedIdentity("errorBlobManagedIdentity") ?? existing?.errorBlobManagedIdentity,
      provisioningState: existing ? "Updating" : "Creating",
      view: {
        executionState: "Pending",
        exitCode: 0,
        executionMessage: "",
        output: "",
        error: "",
        startTime: undefined,
        endTime: undefined,
      },
      abort: undefined,
    };
    vm.runCommands.set(name.toLowerCase(), rc);
    const { op, headers } = this.startOperation(vm, req.apiVersion);
    delete headers.Location; // PUT/PATCH answer with Azure-AsyncOperation only (recording).
    this.ctx.timers.after(this.ctx.timing.provisioningMs, () => this.execute(vm, rc, op));
    return { status: existing ? 200 : 201, headers, body: runCommandJson(vm, rc, false) };
  }

  /** Runs the script through the executor and moves the instance view along. */
  private execute(vm: VmState, rc: RunCommandState, op: ComputeOperation): void {
    if (this.superseded(vm, rc)) return;
    if (vm.powerState !== "running") {
      rc.provisioningState = "Failed";
      rc.view.executionState = "Failed";
      rc.view.executionMessage = `The VM is ${vm.powerState}: run commands need a running VM.`;
      this.finish(op, { code: "OperationNotAllowed", message: rc.view.executionMessage });
      return;
    }
    rc.view.startTime = armTime();
    if (
      typeof rc.source.script !== "string" &&
      typeof rc.source.scriptUri !== "string" &&
      typeof rc.source.commandId !== "string"
    ) {
      rc.view.executionState = "Running";
      rc.view.executionMessage = NO_SCRIPT_MESSAGE;
      rc.view.endTime = rc.view.startTime;
      rc.provisioningState = "Succeeded";
      this.finish(op);
      return;
    }
    // The handler reports Running with exit code 0 from the start (internal/commandProcessor/commandProcessor.go).
    rc.view.executionState = "Running";
    rc.view.executionMessage = "Execution in progress";
    void this.run(vm, rc, op);
  }

  private superseded(vm: VmState, rc: RunCommandState): boolean {
    return vm.runCommands.get(rc.name.toLowerCase()) !== rc; // replaced or deleted meanwhile
  }

  private async run(vm: VmState, rc: RunCommandState, op: ComputeOperation): Promise<void> {
    // Blobs are created or replaced before the script runs; if that fails the script never runs
    // and the command fails with the handler's exit code (internal/cmds/cmds.go `enable`).
    let output: AppendBlobWriter | undefined;
    let error: AppendBlobWriter | undefined;
    try {
      if (rc.outputBlobUri) output = await this.blob(vm, rc.outputBlobUri, rc.outputBlobManagedIdentity);
      if (rc.errorBlobUri) error = await this.blob(vm, rc.errorBlobUri, rc.errorBlobManagedIdentity);
    } catch (setup) {
      if (!(setup instanceof BlobSetupError)) throw setup;
      if (!this.superseded(vm, rc))
        this.complete(rc, op, "Failed", setup.exitCode, `Execution failed: ${setup.message}`);
      return;
    }
    if (this.superseded(vm, rc)) return;
    // asyncExecution: provisioning succeeds once the blobs are set up, before the script runs (cmds.go).
    if (rc.asyncExecution) {
      rc.provisioningState = "Succeeded";
      this.finish(op);
    }
    const abort = new AbortController();
    rc.abort = abort;
    if (rc.timeoutInSeconds > 0) {
      this.ctx.timers.after(rc.timeoutInSeconds * 1000, () => abort.abort("timeout"));
    }
    // What the script wrote reaches the blobs and the instance view only at each status update,
    // every `updateStatusInSeconds` (15 s) in the handler (cmds.go), and once more at the end.
    const written = { output: "", error: "" };
    const unsent = { output: "", error: "" };
    const flush = () => {
      void output?.append(unsent.output);
      void error?.append(unsent.error);
      unsent.output = unsent.error = "";
      rc.view.output = tail(written.output);
      rc.view.error = tail(written.error);
    };
    let running = true;
    const tick = () => {
      if (!running) return;
      flush();
      this.ctx.timers.after(this.ctx.timing.flushMs, tick);
    };
    this.ctx.timers.after(this.ctx.timing.flushMs, tick);
    const capture = (stream: "output" | "error", text: string) => {
      if (!running) return;
      written[stream] = tail(written[stream] + text, 64 * 1024);
      unsent[stream] += text;
    };
    const result = await this.ctx
      .executor()({
        vm: vm.ref,
        name: rc.name,
        script: typeof rc.source.script === "string" ? rc.source.script : "",
        parameters: Object.fromEntries(rc.parameters.map((p) => [p.name, p.value])),
        protectedParameters: Object.fromEntries(rc.protectedParameters.map((p) => [p.name, p.value])),
        timeoutInSeconds: rc.timeoutInSeconds,
        shell: "/bin/bash",
        signal: abort.signal,
        stdout: (text) => capture("output", text),
        stderr: (text) => capture("error", text),
      })
      .then(
        ({ exitCode }) => ({ exitCode, failure: undefined }),
        (failure: unknown) => ({
          exitCode: -1,
          failure: failure instanceof Error ? failure.message : String(failure),
        }),
      );
    running = false;
    flush();
    await Promise.all([output?.flushed(), error?.flushed()]);
    if (rc.view.endTime) return;
    const reason: unknown = abort.signal.reason;
    if (abort.signal.aborted && reason === "timeout") {
      // Linux has no TimedOut: the context kills bash, Go reports exit status -1 for a signalled
      // process, and the command ends Failed (internal/exec/exec.go `Exec`, commandProcessor.go).
      this.complete(rc, op, "Failed", -1, exitMessage(-1));
    } else if (abort.signal.aborted) {
      this.complete(rc, op, "Canceled", result.exitCode, "Execution was canceled.");
    } else if (result.failure !== undefined) {
      this.complete(rc, op, "Failed", result.exitCode, `Execution failed: ${result.failure}`);
    } else if (result.exitCode === 0) {
      this.complete(rc, op, "Succeeded", 0, "Execution completed");
    } else {
      this.complete(rc, op, "Failed", result.exitCode, exitMessage(result.exitCode));
    }
  }

  private blob(vm: VmState, uri: string, managedIdentity: BlobManagedIdentity | undefined) {
    return createOrReplaceAppendBlob({ uri, managedIdentity }, vm.identity, this.ctx.storageCa);
  }

  /** Ends the run: final instance view, provisioning state, and the PUT's operation if still open. */
  private complete(
    rc: RunCommandState,
    op: ComputeOperation,
    state: ExecutionState,
    exitCode: number,
    message: string,
  ): void {
    rc.view.endTime = armTime();
    rc.view.exitCode = exitCode;
    rc.view.executionState = state;
    rc.view.executionMessage = message;
    const failed = state !== "Succeeded";
    if (failed && rc.treatFailureAsDeploymentFailure) rc.provisioningState = "Failed";
    else if (!rc.asyncExecution) rc.provisioningState = "Succeeded";
    if (op.status === "InProgress") {
      this.finish(
        op,
        failed && rc.treatFailureAsDeploymentFailure
          ? { code: "VMExtensionProvisioningError", message }
          : undefined,
      );
    }
  }

  private deleteRunCommand(req: ArmRequest, vm: VmState, name: string): Reply {
    const rc = vm.runCommands.get(name.toLowerCase());
    if (!rc) return { status: 204 };
    rc.provisioningState = "Deleting";
    rc.abort?.abort("cancel");
    const { op, headers } = this.startOperation(vm, req.apiVersion);
    this.ctx.timers.after(this.ctx.timing.provisioningMs, () => {
      if (vm.runCommands.get(name.toLowerCase()) === rc) vm.runCommands.delete(name.toLowerCase());
      this.finish(op);
    });
    return { status: 202, headers };
  }

  // ---- action run command ------------------------------------------------------------------

  /**
   * The action Run Command as the Linux extension runs it (Azure/run-command-extension-linux):
   * the script runs under `/bin/sh -c` (`main/exec.go`), the result is ONE status whose message is
   * `Enable succeeded: \n[stdout]\n…\n[stderr]\n…` with the last 4,096 bytes of each stream
   * (`main/cmds.go` `enable`, `main/logtail.go` `tailFile`), whatever the exit code. One runs at a
   * time per VM, for at most 90 minutes, and it cannot be cancelled (run-command docs).
   */
  private actionRunCommand(req: ArmRequest, vm: VmState): Reply {
    if (!isRecord(req.body) || typeof req.body.commandId !== "string" || req.body.commandId.length === 0) {
      throw badRequest("InvalidParameter", "Required parameter 'commandId' is missing (null).");
    }
    const lines = req.body.script ?? [];
    if (!Array.isArray(lines) || !lines.every((line) => typeof line === "string")) {
      throw badRequest("InvalidParameter", "'script' must be an array of strings.");
    }
    const parameters =
      req.body.parameters === undefined ? [] : parseParameters(req.body.parameters, "parameters");
    if (vm.powerState !== "running") {
      throw new ArmHttpError(
        409,
        "OperationNotAllowed",
        `Cannot invoke run command on VM '${vm.ref.vmName}' because the VM is ${vm.powerState}.`,
      );
    }
    if (vm.actionRunning) {
      // Azure's answer to a second one while one runs (MicrosoftDocs/azure-docs issue 110433).
      throw new ArmHttpError(
        409,
        "Conflict",
        "Run command extension execution is in progress. Please wait for completion before invoking a run command.",
      );
    }
    vm.actionRunning = true;
    const { op, headers } = this.startOperation(vm, req.apiVersion);
    let stdout = "";
    let stderr = "";
    const abort = new AbortController();
    vm.actionAbort = abort;
    const limit = 90 * 60;
    this.ctx.timers.after(limit * 1000, () => abort.abort("timeout"));
    const run = this.ctx.executor()({
      vm: vm.ref,
      name: "runCommand",
      script: withParameterPrelude(parameters, lines.join("\n")),
      // The parameters live in the script text, not in the environment.
      parameters: {},
      protectedParameters: {},
      timeoutInSeconds: limit,
      shell: "/bin/sh",
      signal: abort.signal,
      stdout: (text) => (stdout = tail(stdout + text, 64 * 1024)),
      stderr: (text) => (stderr = tail(stderr + text, 64 * 1024)),
    });
    void run
      .then(
        () => undefined,
        (error: unknown) => {
          stderr += error instanceof Error ? error.message : String(error);
        },
      )
      .then(() => {
        vm.actionRunning = false;
        vm.actionAbort = undefined;
        op.result = {
          value: [
            {
              code: "ProvisioningState/succeeded",
              level: "Info",
              displayStatus: "Provisioning succeeded",
              message: `Enable succeeded: \n[stdout]\n${tail(stdout)}\n[stderr]\n${tail(stderr)}`,
            },
          ],
        };
        this.finish(op);
      });
    return { status: 202, headers };
  }
}

/**
 * The action Run Command's parameters reach a Linux script as `export NAME=value` lines put in
 * front of it, unquoted, so the shebang is no longer line 1 and a value with a space or `&` is cut
 * or run as a command, as it would be on Azure (Azure/azure-cli issues 10400 and 9596, where
 * `printenv` shows `arg1=Param1` only when the script has no shebang). The prelude is written
 * by the platform before the extension sees the script: Azure/run-command-extension-linux
 * `main/cmds.go` only writes `script` to `script.sh` as it receives it, so its exact text is
 * inferred from those issues, not read from source.
 */
function withParameterPrelude(parameters: { name: string; value: string }[], script: string): string {
  const prelude = parameters.map((p) => `export ${p.name}=${p.value}\n`).join("");
  return prelude + script;
}

/** The handler's message for a script that ended non-zero (internal/exec/exec.go, cmds.go `RunCmd`). */
function exitMessage(exitCode: number): string {
  return `Execution failed: failed to execute command: command terminated with exit status=${exitCode}`;
}

/**
 * The deallocate's `hibernate` query parameter arrived with Compute api-version 2021-03-01
 * (azure-rest-api-specs `VirtualMachines_Deallocate`; the @azure/arm-compute 25.x SDK sends
 * `hibernate=true` with its own, later version). An older version, such as Azure Stack Hub's
 * 2020-06-01, has no such parameter, and ARM does not reject query parameters an api-version does
 * not define, so it is a plain deallocate there: inferred, not recorded; fast-build refuses
 * `idleShutdown: "hibernate"` with that profile at config load so it never relies on it.
 */
const HIBERNATE_MIN_API_VERSION = "2021-03-01";

function wantsHibernate(req: ArmRequest): boolean {
  const value = req.query.get("hibernate");
  return value?.toLowerCase() === "true" && req.apiVersion.slice(0, 10) >= HIBERNATE_MIN_API_VERSION;
}

function key(ref: VmRef): string {
  return `${ref.subscriptionId}/${ref.resourceGroup}/${ref.vmName}`.toLowerCase();
}

function parseParameters(value: unknown, field: string): { name: string; value: string }[] {
  if (!Array.isArray(value))
    throw badRequest("InvalidParameter", `'${field}' must be an array of {name, value}.`);
  return value.map((item, index) => {
    if (!isRecord(item) || typeof item.name !== "string" || typeof item.value !== "string") {
      throw badRequest("InvalidParameter", `'${field}[${index}]' must have string 'name' and 'value'.`);
    }
    return { name: item.name, value: item.value };
  });
}

function instanceView(vm: VmState): Record<string, unknown> {
  const statuses = [
    {
      code: "ProvisioningState/succeeded",
      level: "Info",
      displayStatus: "Provisioning succeeded",
      time: vm.provisioningTime,
    },
    { code: `PowerState/${vm.powerState}`, level: "Info", displayStatus: DISPLAY[vm.powerState] },
    ...(vm.hibernated
      ? [{ code: "HibernationState/Hibernated", level: "Info", displayStatus: "VM hibernated" }]
      : []),
  ];
  const disks = [
    {
      name: `${vm.ref.vmName}_OsDisk_1`,
      statuses: [
        {
          code: "ProvisioningState/succeeded",
          level: "Info",
          displayStatus: "Provisioning succeeded",
          time: vm.provisioningTime,
        },
      ],
    },
  ];
  // Deallocated VMs lose computerName, os*, vmAgent and extensions (recording, observation 6).
  if (vm.powerState === "deallocated" || vm.powerState === "deallocating") {
    return { disks, hyperVGeneration: "V2", statuses };
  }
  const ready = vm.powerState === "running";
  return {
    platformUpdateDomain: 0,
    platformFaultDomain: 0,
    computerName: vm.ref.vmName,
    osName: "ubuntu",
    osVersion: "24.04",
    vmAgent: {
      vmAgentVersion: "2.12.0.2",
      statuses: [
        ready
          ? {
              code: "ProvisioningState/succeeded",
              level: "Info",
              displayStatus: "Ready",
              message: "Guest Agent is running",
              time: armTime(),
            }
          : {
              code: "ProvisioningState/Unavailable",
              level: "Warning",
              displayStatus: "Not Ready",
              message: "VM status blob is found but not yet populated.",
              time: armTime(),
            },
      ],
      extensionHandlers: [],
    },
    disks,
    extensions: [],
    hyperVGeneration: "V2",
    statuses,
  };
}

function runCommandJson(
  vm: VmState,
  rc: RunCommandState,
  withInstanceView: boolean,
): Record<string, unknown> {
  const { subscriptionId, resourceGroup, vmName } = vm.ref;
  const properties: Record<string, unknown> = { source: rc.source };
  if (rc.parameters.length > 0) properties.parameters = rc.parameters;
  // protectedParameters and runAsPassword are write-only: never echoed.
  properties.asyncExecution = rc.asyncExecution;
  if (rc.treatFailureAsDeploymentFailure !== undefined) {
    properties.treatFailureAsDeploymentFailure = rc.treatFailureAsDeploymentFailure;
  }
  if (rc.runAsUser !== undefined) properties.runAsUser = rc.runAsUser;
  properties.timeoutInSeconds = rc.timeoutInSeconds;
  properties.provisioningState = rc.provisioningState;
  if (rc.outputBlobUri !== undefined) properties.outputBlobUri = rc.outputBlobUri;
  if (rc.errorBlobUri !== undefined) properties.errorBlobUri = rc.errorBlobUri;
  if (rc.outputBlobManagedIdentity) properties.outputBlobManagedIdentity = rc.outputBlobManagedIdentity;
  if (rc.errorBlobManagedIdentity) properties.errorBlobManagedIdentity = rc.errorBlobManagedIdentity;
  if (withInstanceView) {
    properties.instanceView = {
      exitCode: rc.view.exitCode,
      executionState: rc.view.executionState,
      executionMessage: rc.view.executionMessage,
      output: tail(rc.view.output),
      error: tail(rc.view.error),
      startTime: rc.view.startTime ?? null,
      endTime: rc.view.endTime ?? null,
    };
  }
  const body: Record<string, unknown> = {
    name: rc.name,
    id: `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/virtualMachines/${vmName}/runCommands/${rc.name}`,
    type: "Microsoft.Compute/virtualMachines/runCommands",
    location: rc.location,
  };
  if (rc.tags) body.tags = rc.tags;
  body.properties = properties;
  return body;
}
