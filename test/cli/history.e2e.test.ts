/**
 * `fast-build history` and `fast-build costs` in-process against the real API on the local host:
 * a build started by `fast-build dev` from a git repository (its commit, branch, dirty tree and
 * author travel in the start request) and cancelled is in the history with who started it and its
 * outcome; `fast-build warm` records the builder's start with its size read from the VM, which
 * `costs` prices by the configured rate. Every bad input exits 2 with what to type instead.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { before, describe, it } from "node:test";
import { main } from "../../src/cli/main.js";
import type { BuildHistoryRecord, CostsResponse } from "../../src/core/history.js";
import { setDeps } from "../../src/functions/deps.js";
import { cancelBuild } from "../../src/functions/cancelBuild.js";
import { cancelRunningBuilds, SUB } from "../functions/support.js";
import { Capture, KEY, useCliHost } from "./cliHost.js";

const git = promisify(execFile);
const DEV = { subscriptionId: SUB, resourceGroup: "rg-builds", vmName: "builder-dev" };

describe("fast-build history and costs against the real API", () => {
  const local = useCliHost();
  before(() => {
    // The rate of the emulator's VM size (it answers hardwareProfile.vmSize as Azure does).
    local.cloud.deps = {
      ...local.cloud.deps,
      config: {
        ...local.cloud.deps.config,
        history: {
          ...local.cloud.deps.config.history,
          vmRates: { Standard_D4s_v5: { perHour: 0.192, diskPerHour: 0.0065 } },
          currency: "EUR",
        },
      },
    };
    setDeps(local.cloud.deps);
  });

  async function cli(argv: string[], extra: Record<string, string> = {}) {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(argv, {
      stdout,
      stderr,
      env: { FASTBUILD_API_KEY: KEY, FASTBUILD_API_URL: local.host.url, ...extra },
    });
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  it("lists a cancelled build started from a git repository with who started it, and pages through --limit", async () => {
    const { root, cache } = await local.project();
    const inRepo = (...args: string[]) => git("git", ["-C", root, ...args]);
    await inRepo("init", "-q", "-b", "feature-x");
    await inRepo("config", "user.name", "Dev One");
    await inRepo("config", "user.email", "dev@example.com");
    await inRepo("add", "-A");
    await inRepo("commit", "-q", "-m", "first");
    const commit = (await inRepo("rev-parse", "HEAD")).stdout.trim();
    await writeFile(join(root, "notes.txt"), "not committed\n");

    const started = await cli(["dev", "--env", "dev", "--dir", root, "--no-follow"], {
      FASTBUILD_CACHE_DIR: cache,
    });
    assert.equal(started.code, 0, started.stderr);
    await cancelRunningBuilds(local.cloud, cancelBuild);
    const buildId = /build (\S+) started/.exec(started.stdout + started.stderr)?.[1];
    assert.ok(buildId, started.stdout);

    const listed = await cli(["history", "--env", "dev", "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    const { builds } = JSON.parse(listed.stdout) as { builds: BuildHistoryRecord[] };
    const record = builds.find((b) => b.buildId === buildId);
    assert.deepEqual(
      [record?.outcome, record?.commit, record?.branch, record?.dirty, record?.author],
      ["cancelled", commit, "feature-x", true, { name: "Dev One", email: "dev@example.com" }],
    );

    const table = await cli(["history", "--env", "dev"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(
      table.stdout,
      /^WHEN +ENV +BUILD +BRANCH@COMMIT +BY +OUTCOME +DURATION +PHASES +IMAGE +REVISION$/m,
    );
    assert.match(
      table.stdout,
      new RegExp(`${buildId} +feature-x@${commit.slice(0, 7)}\\+dirty +Dev One +cancelled `),
    );

    // A second build, so that --limit 1 leaves one out and says so.
    const again = await cli(["dev", "--env", "dev", "--dir", root, "--no-follow"], {
      FASTBUILD_CACHE_DIR: cache,
    });
    assert.equal(again.code, 0, again.stderr);
    await cancelRunningBuilds(local.cloud, cancelBuild);
    const one = await cli(["history", "--limit", "1", "--json"]);
    const page = JSON.parse(one.stdout) as { builds: BuildHistoryRecord[]; next?: string };
    assert.equal(page.builds.length, 1);
    assert.ok(page.next, "a cursor for the older builds");
    const short = await cli(["history", "--limit", "1"]);
    assert.match(short.stdout, /\(older builds not shown: raise --limit, up to 1000\)\n$/);
  });

  it("prices the builder's minutes from its warm start at the configured rate", async () => {
    local.cloud.arm.addVm(DEV, { powerState: "deallocated" });
    const warmed = await cli(["warm", "dev"]);
    assert.equal(warmed.code, 0, warmed.stderr);

    const run = await cli(["costs", "--env", "dev", "--days", "2", "--json"]);
    assert.equal(run.code, 0, run.stderr);
    const answer = JSON.parse(run.stdout) as CostsResponse;
    assert.equal(answer.currency, "EUR");
    assert.ok(answer.perDay.length >= 2);
    const builder = answer.builders.find((b) => b.builder === "builder-dev");
    assert.deepEqual(builder?.vmSizes, ["Standard_D4s_v5"]);
    assert.ok(builder.runningMinutes > 0);
    assert.equal(typeof answer.total.cost, "number");
    assert.deepEqual(answer.notes, []);

    const text = await cli(["costs", "--env", "dev"]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^builder costs of environment dev, last 7 day\(s\)/);
    assert.match(text.stdout, /^DAY +VM MIN +DISK MIN +COST$/m);
    assert.match(text.stdout, /^builder-dev +Standard_D4s_v5 +\d+\.\d +\d+\.\d +\d+\.\d+ EUR$/m);
  });

  it("says which size has no rate instead of a cost", async () => {
    local.cloud.deps = {
      ...local.cloud.deps,
      config: { ...local.cloud.deps.config, history: { ...local.cloud.deps.config.history, vmRates: {} } },
    };
    setDeps(local.cloud.deps);
    const run = await cli(["costs", "--env", "dev"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^note: unknown rate for Standard_D4s_v5: add it to FASTBUILD_VM_RATES$/m);
    assert.match(run.stdout, /^total +\d+\.\d +\d+\.\d +unknown$/m);
  });

  const refusals: [string, string[], RegExp][] = [
    [
      "--limit 0",
      ["history", "--limit", "0"],
      /^error: --limit must be a whole number from 1 to 1000, got "0"\nhint: usage: fast-build history/,
    ],
    [
      "--limit abc",
      ["history", "--limit", "abc"],
      /^error: --limit must be a whole number from 1 to 1000, got "abc"/,
    ],
    [
      "--limit 10000",
      ["history", "--limit", "10000"],
      /^error: --limit must be a whole number from 1 to 1000, got "10000"/,
    ],
    [
      "--days -1",
      ["costs", "--days=-1"],
      /^error: --days must be a whole number from 1 to 90, got "-1"\nhint: usage: fast-build costs/,
    ],
    ["--days 91", ["costs", "--days", "91"], /^error: --days must be a whole number from 1 to 90, got "91"/],
    [
      "--days on history",
      ["history", "--days", "3"],
      /^error: --days is not an option of `fast-build history`/,
    ],
    ["--limit on costs", ["costs", "--limit", "3"], /^error: --limit is not an option of `fast-build costs`/],
    ["a malformed env", ["history", "--env", "a b"], /^error: "a b" is not an environment name/],
    ["an argument", ["costs", "dev"], /^error: unexpected argument to costs: dev/],
    [
      "an unknown env (the API's 404)",
      ["history", "--env", "staging"],
      /^error: unknown environment "staging"\nhint: Use one of: dev, prod\.\n$/,
    ],
    [
      "an unknown env for costs",
      ["costs", "--env", "staging"],
      /^error: unknown environment "staging"\nhint: Use one of: dev, prod\.\n$/,
    ],
  ];
  for (const [what, argv, message] of refusals) {
    it(`refuses ${what} with exit 2 and prints nothing on stdout`, async () => {
      const run = await cli(argv);
      assert.equal(run.code, 2, run.stderr);
      assert.equal(run.stdout, "");
      assert.match(run.stderr, message);
    });
  }
});
