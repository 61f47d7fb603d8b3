import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseBuildId, parseCommand, USAGE } from "../../src/cli/args.js";
import { buildUrls } from "../../src/cli/apiClient.js";
import { renderBuilders, renderSnapshot } from "../../src/cli/render.js";
import { loadApiSettings } from "../../src/config/cli.js";
import type { BuildStatus } from "../../src/core/api.js";
import { ConfigError, InvalidInputError } from "../../src/core/errors.js";

const ID = "20260314092653-3f9a0c1d2e";

function refusal(argv: string[], message: RegExp, hint: RegExp): void {
  assert.throws(
    () => parseCommand(argv),
    (error: unknown) => {
      assert.ok(error instanceof InvalidInputError, String(error));
      assert.match(error.message, message);
      assert.match(error.hint ?? "", hint);
      return true;
    },
    argv.join(" "),
  );
}

describe("parsing the build commands", () => {
  it("parses follow, status, logs, cancel and builders with their flags", () => {
    assert.deepEqual(parseCommand(["follow", ID]), {
      command: "follow",
      buildId: ID,
      flags: { api: undefined },
    });
    assert.deepEqual(parseCommand(["status", ID, "--json", "--api", "https://a"]), {
      command: "status",
      buildId: ID,
      flags: { api: "https://a", json: true },
    });
    assert.deepEqual(parseCommand(["logs", "--follow", ID]), {
      command: "logs",
      buildId: ID,
      flags: { api: undefined, follow: true },
    });
    assert.deepEqual(parseCommand(["cancel", ID]), {
      command: "cancel",
      buildId: ID,
      flags: { api: undefined },
    });
    assert.deepEqual(parseCommand(["builders"]), {
      command: "builders",
      flags: { api: undefined, json: false },
    });
  });

  it("refuses a command's missing or extra build id with that command's usage as hint", () => {
    refusal(["status"], /needs a build id/, /usage: fast-build status <build-id> \[--json\]/);
    refusal(["cancel", ID, ID], /takes one build id, got 2/, /usage: fast-build cancel <build-id>/);
    refusal(["builders", ID], /unexpected argument to builders/, /usage: fast-build builders/);
  });

  it("refuses an option another command takes", () => {
    refusal(
      ["follow", ID, "--json"],
      /--json is not an option of `fast-build follow`/,
      /fast-build follow <build-id>/,
    );
    refusal(["status", ID, "--env", "dev"], /--env is not an option/, /usage: fast-build status/);
    refusal(["logs", ID, "--no-follow"], /--no-follow is not an option/, /usage: fast-build logs/);
    refusal(["dev", "--follow"], /--follow is not an option of `fast-build dev`/, /usage: fast-build dev/);
  });

  it("checks the build id against the API's format before anything is sent", () => {
    for (const bad of [
      "ABC-DEFGHIJK",
      "../builders",
      "short",
      `${ID}/cancel`,
      "x".repeat(65),
      "_underscore-id",
    ]) {
      refusal(["follow", bad], /is not a build id/, /fast-build dev.*prints.*usage: fast-build follow/);
    }
  });

  it("keeps a long bad id short in the message", () => {
    assert.throws(
      () => parseBuildId("a".repeat(500)),
      (error: unknown) => error instanceof InvalidInputError && error.message.length < 150,
    );
  });

  it("--help and `help` print the usage, which lists every command", () => {
    assert.deepEqual(parseCommand(["status", "--help"]), { command: "help" });
    assert.deepEqual(parseCommand(["help"]), { command: "help" });
    for (const command of [
      "dev",
      "follow <build-id>",
      "status <build-id>",
      "logs <build-id>",
      "cancel <build-id>",
      "builders",
      "warm <env>",
    ]) {
      assert.match(USAGE, new RegExp(`\\n  ${command} `), command);
    }
  });

  it("puts the build id into the API's routes", () => {
    assert.deepEqual(buildUrls(ID), {
      statusUrl: `/api/builds/${ID}`,
      logsUrl: `/api/builds/${ID}/logs`,
      cancelUrl: `/api/builds/${ID}/cancel`,
    });
  });
});

describe("API settings of the build commands", () => {
  it("need no environment", () => {
    assert.deepEqual(
      loadApiSettings({}, { FASTBUILD_API_URL: "https://app.example/api/", FASTBUILD_API_KEY: "k" }),
      {
        apiUrl: "https://app.example",
        apiKey: "k",
      },
    );
  });

  it("report a missing URL and a bad key together", () => {
    assert.throws(
      () => loadApiSettings({}, { FASTBUILD_API_KEY: "a b" }),
      (error: unknown) => error instanceof ConfigError && error.problems.length === 2,
    );
  });
});

function status(overrides: Partial<BuildStatus> = {}): BuildStatus {
  return {
    buildId: ID,
    environment: "dev",
    phase: "building",
    terminal: false,
    steps: [
      { name: "lease", state: "succeeded" },
      { name: "build", state: "running" },
    ],
    builder: { name: "builder-dev", powerState: "running" },
    timings: { createdAt: "2026-03-14T09:26:53.000Z" },
    ...overrides,
  };
}

describe("renderSnapshot", () => {
  it("shows a running build's phase once, then what is known, its age and its last log lines", () => {
    const lines = renderSnapshot(status({ logTail: ["compiling"] }), new Date("2026-03-14T09:27:05.000Z"));
    assert.deepEqual(lines, [
      `build ${ID} (dev): building: build`,
      "  builder builder-dev: running",
      "  ✓ lease",
      "  • build…",
      "  started   2026-03-14T09:26:53.000Z (12.0 s ago)",
      "  last log lines:",
      "    compiling",
    ]);
  });

  it("shows an ended build as the summary, timed by the server", () => {
    const lines = renderSnapshot(
      status({
        phase: "failed",
        terminal: true,
        error: { code: "AppBuildFailed", message: "cargo build failed" },
        timings: { createdAt: "2026-03-14T09:26:53.000Z", endedAt: "2026-03-14T09:28:53.000Z" },
      }),
      new Date("2026-03-15T00:00:00.000Z"),
    );
    assert.equal(lines[0], `✗ build failed (${ID})`);
    assert.ok(lines.includes("  total     2 min 00 s"), lines.join("\n"));
    assert.ok(lines.includes("  error     cargo build failed [AppBuildFailed]"));
  });
});

describe("renderBuilders", () => {
  it("prints one aligned row per builder with dashes for what is unknown", () => {
    const now = new Date("2026-03-14T10:00:00.000Z");
    const lines = renderBuilders(
      [
        {
          name: "builder-dev",
          environment: "dev",
          powerState: "running",
          leaseHolder: ID,
          queue: ["20260314095900-aaaaaaaaaa"],
          lastActivityAt: "2026-03-14T09:55:00.000Z",
          idleShutdownAt: "2026-03-14T10:25:00.000Z",
        },
        { name: "builder-prod", environment: "prod", powerState: "deallocated", queue: [] },
      ],
      now,
    );
    assert.deepEqual(lines, [
      "BUILDER       ENVIRONMENT  POWER        LEASE HOLDER               QUEUE  LAST ACTIVITY                          IDLE SHUTDOWN AT",
      `builder-dev   dev          running      ${ID}  1      2026-03-14 09:55:00Z (5 min 00 s ago)  2026-03-14 10:25:00Z (in 25 min 00 s)`,
      "builder-prod  prod         deallocated  -                          0      -                                      -",
    ]);
  });

  it("says so when there are no builders", () => {
    assert.match(renderBuilders([], new Date())[0] ?? "", /no builders/);
  });
});
