/**
 * `fast-build warm <env>` in-process against the real API on the local host (test cloud: the ARM
 * emulator's VMs through the real compute SDK, Azurite's builder records): a deallocated builder is
 * started and the line says when the idle shutdown comes; a running one is "already running";
 * `--json` prints the API's answer; an unknown environment and every malformed command line exit 2
 * with what to type instead.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { main } from "../../src/cli/main.js";
import type { WarmResponse } from "../../src/core/api.js";
import { builderKey } from "../../src/core/buildInput.js";
import { emptyRecord, IDLE_SHUTDOWN_HOLDER } from "../../src/core/lease.js";
import { SUB } from "../functions/support.js";
import { waitFor } from "../azure/armHelpers.js";
import { Capture, KEY, useCliHost } from "./cliHost.js";

const DEV = { subscriptionId: SUB, resourceGroup: "rg-builds", vmName: "builder-dev" };

describe("fast-build warm against the real API", () => {
  const local = useCliHost();

  async function cli(argv: string[]) {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(argv, {
      stdout,
      stderr,
      env: { FASTBUILD_API_KEY: KEY, FASTBUILD_API_URL: local.host.url },
    });
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  it("starts a deallocated builder and says when it is shut down unless used; then it is already running", async () => {
    local.cloud.arm.addVm(DEV, { powerState: "deallocated" });

    const run = await cli(["warm", "dev"]);

    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /^builder builder-dev \(dev\): deallocated → starting \(idle shutdown at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(in \d+ min \d\d s\) unless used\)\n$/,
    );
    const record = (await local.cloud.deps.leases.read(builderKey(DEV)))?.record;
    assert.equal(record?.holder, undefined, "warm takes no lease");
    await waitFor(
      () => Promise.resolve(local.cloud.arm.getVm(DEV)?.powerState),
      (state) => state === "running",
    );

    const again = await cli(["warm", "dev"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(
      again.stdout,
      /^builder builder-dev \(dev\): already running, nothing to do \(idle shutdown at /,
    );
  });

  it("--json prints the API's answer on stdout", async () => {
    local.cloud.arm.addVm(DEV, { powerState: "running" });

    const run = await cli(["warm", "dev", "--json"]);

    assert.equal(run.code, 0, run.stderr);
    const answer = JSON.parse(run.stdout) as WarmResponse;
    assert.equal(answer.action, "none");
    assert.equal(answer.builder, "builder-dev");
    assert.equal(answer.powerState, "running");
    assert.equal(answer.reason, "already running");
    assert.equal(
      answer.lastActivityAt,
      (await local.cloud.deps.leases.read(builderKey(DEV)))?.record.lastActivityAt,
    );
  });

  it("refuses an unknown environment with exit 2 and the environments it knows", async () => {
    const run = await cli(["warm", "staging"]);
    assert.equal(run.code, 2);
    assert.equal(run.stdout, "");
    assert.equal(run.stderr, 'error: unknown environment "staging"\nhint: Use one of: dev, prod.\n');
  });

  it("refuses a missing, extra, flagged or malformed environment with exit 2 and the usage", async () => {
    const usage = "hint: usage: fast-build warm <env> [--json] (`fast-build --help` lists every command)\n";
    const cases: [string[], string][] = [
      [["warm"], "error: `fast-build warm` needs an environment, e.g. `fast-build warm dev`\n"],
      [["warm", "dev", "prod"], "error: `fast-build warm` takes one environment, got 2: dev prod\n"],
      [["warm", "--env", "dev"], "error: --env is not an option of `fast-build warm`\n"],
      [["warm", "dev/../x"], 'error: "dev/../x" is not an environment name (letters, digits, . _ - only)\n'],
    ];
    for (const [argv, message] of cases) {
      const run = await cli(argv);
      assert.equal(run.code, 2, argv.join(" "));
      assert.equal(run.stderr, message + usage, argv.join(" "));
      assert.equal(run.stdout, "");
    }
    const unknownFlag = await cli(["warm", "dev", "--bogus"]);
    assert.equal(unknownFlag.code, 2);
    assert.match(unknownFlag.stderr, /^error: Unknown option '--bogus'/);
  });

  it("exits 1 with the hint while the idle shutdown is deallocating the builder", async () => {
    const leases = local.cloud.deps.leases;
    const key = builderKey(DEV);
    const stored = await leases.read(key);
    const shuttingDown = {
      ...(stored?.record ?? emptyRecord(key)),
      holder: IDLE_SHUTDOWN_HOLDER,
      generation: (stored?.record.generation ?? 0) + 1,
      leaseExpiresAt: new Date(Date.now() + 600_000).toISOString(),
      acquiredAt: new Date().toISOString(),
    };
    assert.ok(await leases.write(shuttingDown, stored?.etag));
    try {
      const run = await cli(["warm", "dev"]);

      assert.equal(run.code, 1);
      assert.match(
        run.stderr,
        /^error: builder builder-dev is being deallocated by the idle shutdown right now\nhint: Run `fast-build warm` again/,
      );
    } finally {
      const held = await leases.read(key);
      await leases.write({ ...held!.record, holder: undefined, leaseExpiresAt: undefined }, held!.etag);
    }
  });
});
