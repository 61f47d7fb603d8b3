/**
 * The action Run Command on a Linux VM through the Azure Stack Hub profile (api-version 2020-06-01),
 * run for real by `localShellExecutor` with /bin/sh (dash here), as the Linux extension does.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ComputeManagementClient } from "@azure/arm-compute";
import {
  localShellExecutor,
  scriptedExecutor,
  startArmEmulator,
  type ArmEmulator,
} from "../../src/arm/index.js";
import { POLL, SUB, tokenCredential } from "./sdk.js";

const RG = "rg-action";

describe("action Run Command on Linux (2020-06-01)", () => {
  let emulator: ArmEmulator;
  let compute: ComputeManagementClient;

  before(async () => {
    emulator = await startArmEmulator({ executor: localShellExecutor() });
    // arm-compute 25.x has no api-version option: rewrite it per call, as the hybrid profile does.
    compute = new ComputeManagementClient(tokenCredential(), SUB, {
      endpoint: emulator.endpoint,
      tlsOptions: { ca: emulator.ca },
      retryOptions: { maxRetries: 0 },
      additionalPolicies: [
        {
          position: "perCall",
          policy: {
            name: "hybrid-api-version",
            sendRequest: (request, next) => {
              const url = new URL(request.url);
              url.searchParams.set("api-version", "2020-06-01");
              request.url = url.toString();
              return next(request);
            },
          },
        },
      ],
    });
    emulator.addVm({ subscriptionId: SUB, resourceGroup: RG, vmName: "vm" }, { powerState: "running" });
  });
  after(async () => {
    await emulator.stop();
  });

  it("answers one ProvisioningState/succeeded status with the last 4,096 bytes of [stdout] and [stderr]", async () => {
    const result = await compute.virtualMachines.beginRunCommandAndWait(
      RG,
      "vm",
      {
        commandId: "RunShellScript",
        script: ["echo start", "printf '%5000s' | tr ' ' a; echo; echo END", "echo oops >&2"],
      },
      POLL,
    );
    assert.equal(result.value?.length, 1);
    const status = result.value[0]!;
    assert.equal(status.code, "ProvisioningState/succeeded");
    const message = status.message ?? "";
    assert.ok(message.startsWith("Enable succeeded: \n[stdout]\n"), message.slice(0, 80));
    const [stdout, stderr] = message.slice("Enable succeeded: \n[stdout]\n".length).split("\n[stderr]\n");
    // main/logtail.go keeps the end: `start` is cut off.
    assert.equal(Buffer.byteLength(stdout!), 4096);
    assert.ok(stdout!.endsWith("a\nEND\n"));
    assert.equal(stderr, "oops\n");
  });

  it("prepends parameters as unquoted export lines run by /bin/sh: a space cuts the value, an & runs the rest", async () => {
    const result = await compute.virtualMachines.beginRunCommandAndWait(
      RG,
      "vm",
      {
        commandId: "RunShellScript",
        script: ['if [ -n "$BASH_VERSION" ]; then echo bash; else echo sh; fi', 'echo "[$GREETING]"'],
        parameters: [
          { name: "GREETING", value: "hello world" },
          { name: "SEP", value: "x&echo injected" },
        ],
      },
      POLL,
    );
    const message = result.value?.[0]?.message ?? "";
    const stdout = message.split("\n[stdout]\n")[1]?.split("\n[stderr]\n")[0] ?? "";
    assert.deepEqual(stdout.trim().split("\n").sort(), ["[hello]", "injected", "sh"]);
  });

  it("answers 409 Conflict while another action Run Command runs on the VM", async () => {
    emulator.setRunCommandExecutor(scriptedExecutor({ durationMs: 500 }));
    try {
      const first = await compute.virtualMachines.beginRunCommand(
        RG,
        "vm",
        { commandId: "RunShellScript", script: ["sleep 1"] },
        POLL,
      );
      await assert.rejects(
        compute.virtualMachines.beginRunCommand(
          RG,
          "vm",
          { commandId: "RunShellScript", script: ["true"] },
          POLL,
        ),
        (error: { statusCode?: number; code?: string }) =>
          error.statusCode === 409 && error.code === "Conflict",
      );
      await first.pollUntilDone();
    } finally {
      emulator.setRunCommandExecutor(localShellExecutor());
    }
  });
});
