/**
 * Feeds the request of each Azure/azure-rest-api-specs example in test/fixtures/azure-rest-examples
 * through the emulator and checks that the answer's status is one the example allows and its body
 * has the example's property names at the top levels.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { after, before, describe, it } from "node:test";
import { startArmEmulator, type ArmEmulator } from "../../src/arm/index.js";
import { unsignedStorageToken } from "../../src/oauthToken.js";

const TOKEN = unsignedStorageToken({ audience: "https://management.azure.com" });

interface Example {
  parameters: Record<string, unknown>;
  responses: Record<string, { body?: unknown; headers?: Record<string, string> }>;
}

const FIXTURES = new URL("../fixtures/azure-rest-examples/", import.meta.url);
const load = (file: string) => JSON.parse(readFileSync(new URL(file, FIXTURES), "utf8")) as Example;

const VM =
  "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/virtualMachines/{vmName}";
const APP =
  "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.App/containerApps/{containerAppName}";

interface Case {
  file: string;
  method: string;
  path: string;
  /** Request body parameter name. */
  body?: string;
  /** Query parameters other than api-version the example passes. */
  query?: string[];
  /** Properties Azure leaves out when the feature is unused (documented per key). */
  optional?: string[];
}

// The run-command recording has no `tags` when none were set; the examples show `{}`.
const TAGS = ["tags"];

const cases: Case[] = [
  // resources/managedBy: only for VMs with extensions / managed by another service; $expand=userData is not modelled.
  {
    file: "compute/examples/virtualMachineExamples/VirtualMachine_Get.json",
    method: "GET",
    path: VM,
    query: ["$expand"],
    optional: ["resources", "managedBy"],
  },
  // bootDiagnostics/patchStatus/isVMInStandbyPool: only with boot diagnostics, patch assessment, standby pools.
  {
    file: "compute/examples/virtualMachineExamples/VirtualMachine_Get_InstanceView.json",
    method: "GET",
    path: `${VM}/instanceView`,
    optional: ["bootDiagnostics", "patchStatus", "isVMInStandbyPool"],
  },
  {
    file: "compute/examples/virtualMachineExamples/VirtualMachine_Start_MaximumSet_Gen.json",
    method: "POST",
    path: `${VM}/start`,
  },
  {
    file: "compute/examples/virtualMachineExamples/VirtualMachine_PowerOff_MaximumSet_Gen.json",
    method: "POST",
    path: `${VM}/powerOff`,
    query: ["skipShutdown"],
  },
  {
    file: "compute/examples/virtualMachineExamples/VirtualMachine_Deallocate_MaximumSet_Gen.json",
    method: "POST",
    path: `${VM}/deallocate`,
    query: ["hibernate"],
  },
  {
    file: "compute/examples/runCommandExamples/VirtualMachineRunCommand_CreateOrUpdate.json",
    method: "PUT",
    path: `${VM}/runCommands/{runCommandName}`,
    body: "runCommand",
    optional: TAGS,
  },
  {
    file: "compute/examples/runCommandExamples/VirtualMachineRunCommand_Get.json",
    method: "GET",
    path: `${VM}/runCommands/{runCommandName}`,
    optional: TAGS,
  },
  {
    file: "compute/examples/runCommandExamples/VirtualMachineRunCommand_Update.json",
    method: "PATCH",
    path: `${VM}/runCommands/{runCommandName}`,
    body: "runCommand",
    optional: TAGS,
  },
  {
    file: "compute/examples/runCommandExamples/VirtualMachineRunCommand_List.json",
    method: "GET",
    path: `${VM}/runCommands`,
    optional: TAGS,
  },
  {
    file: "compute/examples/runCommandExamples/VirtualMachineRunCommand_Delete.json",
    method: "DELETE",
    path: `${VM}/runCommands/{runCommandName}`,
  },
  {
    file: "compute/examples/runCommandExamples/VirtualMachineRunCommand.json",
    method: "POST",
    path: `${VM}/runCommand`,
    body: "parameters",
  },
  {
    file: "hybrid-2020-06-01/examples/CreateOrUpdateRunCommand.json",
    method: "PUT",
    path: `${VM}/runCommands/{runCommandName}`,
    body: "runCommand",
    optional: TAGS,
  },
  {
    file: "hybrid-2020-06-01/examples/VirtualMachineRunCommand.json",
    method: "POST",
    path: `${VM}/runCommand`,
    body: "parameters",
  },
  { file: "containerapps/examples/ContainerApps_Get.json", method: "GET", path: APP },
  {
    file: "containerapps/examples/ContainerApps_Patch.json",
    method: "PATCH",
    path: APP,
    body: "containerAppEnvelope",
  },
  // nextLink: Azure leaves it out when there is no next page (recording).
  {
    file: "containerapps/examples/Revisions_List.json",
    method: "GET",
    path: `${APP}/revisions`,
    optional: ["nextLink"],
  },
  {
    file: "containerapps/examples/Revisions_Get.json",
    method: "GET",
    path: `${APP}/revisions/{revisionName}`,
  },
];

describe("ARM emulator conformance with the spec examples", () => {
  let emulator: ArmEmulator;

  const send = (method: string, path: string, body?: unknown) =>
    new Promise<{ status: number; body: unknown }>((resolve, reject) => {
      const text = body === undefined ? "" : JSON.stringify(body);
      const req = request(
        `${emulator.endpoint}${path}`,
        {
          method,
          ca: emulator.ca,
          headers: {
            authorization: `Bearer ${TOKEN}`,
            "content-type": "application/json",
            "content-length": Buffer.byteLength(text),
          },
        },
        (res) => {
          let data = "";
          res.setEncoding("utf8").on("data", (chunk: string) => (data += chunk));
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, body: data ? (JSON.parse(data) as unknown) : undefined }),
          );
        },
      );
      req.on("error", reject);
      req.end(text);
    });

  const requestFor = (c: Case, example: Example, overrides: Record<string, string> = {}) => {
    const p = { ...example.parameters, ...overrides } as Record<string, string>;
    const path = c.path.replace(/\{(\w+)\}/g, (_, name: string) =>
      encodeURIComponent(p[name] ?? `missing-${name}`),
    );
    const query = new URLSearchParams({ "api-version": p["api-version"]! });
    for (const name of c.query ?? []) if (p[name] !== undefined) query.set(name, String(p[name]));
    return { path: `${path}?${query.toString()}`, body: c.body ? example.parameters[c.body] : undefined };
  };

  before(async () => {
    emulator = await startArmEmulator();
    // Seed the resources every example names.
    for (const c of cases) {
      const p = load(c.file).parameters as Record<string, string>;
      if (p.vmName) {
        const vm = {
          subscriptionId: p.subscriptionId!,
          resourceGroup: p.resourceGroupName!,
          vmName: p.vmName,
        };
        // An example that hibernates (deallocate with `hibernate: true`) needs a VM Azure lets
        // hibernate: one with additionalCapabilities.hibernationEnabled.
        const hibernates = (p as Record<string, unknown>).hibernate === true;
        if (!emulator.getVm(vm)) {
          emulator.addVm(vm, { powerState: "running", location: "westus", hibernationEnabled: hibernates });
        }
      }
      if (p.containerAppName) {
        const app = {
          subscriptionId: p.subscriptionId!,
          resourceGroup: p.resourceGroupName!,
          appName: p.containerAppName,
        };
        if (!emulator.getContainerApp(app))
          emulator.addContainerApp(app, {
            containers: [{ name: "testcontainerapp0", image: "repo/testcontainerapp0:v1" }],
          });
      }
    }
  });
  after(async () => {
    await emulator.stop();
  });

  for (const c of cases) {
    it(`answers ${c.method} like ${c.file}`, async () => {
      const example = load(c.file);
      const p = example.parameters as Record<string, string>;
      // Run commands the example reads, updates or deletes must exist first.
      if (p.runCommandName && c.method !== "PUT") {
        const put = requestFor({ ...c, path: `${VM}/runCommands/{runCommandName}` }, example);
        const created = await send("PUT", put.path, {
          location: "westus",
          properties: { source: { script: "echo hi" } },
        });
        assert.ok([200, 201].includes(created.status));
      }
      if (c.method === "GET" && p.vmName && c.path.endsWith("/runCommands")) {
        await send("PUT", requestFor({ ...c, path: `${VM}/runCommands/myRunCommand` }, example).path, {
          location: "westus",
          properties: { source: { script: "echo hi" } },
        });
      }
      const overrides: Record<string, string> = {};
      if (p.revisionName) {
        // The example's revision name is not `{app}--{suffix}`: read the app's real one.
        const app = emulator.getContainerApp({
          subscriptionId: p.subscriptionId!,
          resourceGroup: p.resourceGroupName!,
          appName: p.containerAppName!,
        });
        overrides.revisionName = app!.latestRevisionName!;
      }
      const { path, body } = requestFor(c, example, overrides);
      const answer = await send(c.method, path, body);
      const allowed = Object.keys(example.responses).map(Number);
      assert.ok(
        allowed.includes(answer.status),
        `status ${answer.status} not in ${allowed.join(", ")}: ${JSON.stringify(answer.body)}`,
      );
      const expected = example.responses[String(answer.status)]?.body;
      if (
        expected &&
        typeof expected === "object" &&
        !Array.isArray(expected) &&
        Object.keys(expected).length > 0
      ) {
        assertSameKeys(answer.body, expected, c.optional ?? [], "body");
      }
    });
  }
});

function assertSameKeys(actual: unknown, expected: unknown, optional: string[], where: string): void {
  assert.ok(
    actual && typeof actual === "object",
    `${where}: expected an object, got ${JSON.stringify(actual)}`,
  );
  const have = new Set(Object.keys(actual));
  const missing = Object.keys(expected as object).filter((k) => !have.has(k) && !optional.includes(k));
  assert.deepEqual(missing, [], `${where} lacks ${missing.join(", ")}`);
  const first = (v: unknown) => (Array.isArray(v) ? (v[0] as unknown) : undefined);
  const e = expected as Record<string, unknown>;
  const a = actual as Record<string, unknown>;
  if (first(e.value) && first(a.value))
    assertSameKeys(first(a.value), first(e.value), optional, `${where}.value[0]`);
}
