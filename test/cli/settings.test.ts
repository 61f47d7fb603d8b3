import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { parseCommand } from "../../src/cli/args.js";
import { loadCliSettings } from "../../src/config/cli.js";
import { ConfigError, InvalidInputError } from "../../src/core/errors.js";

describe("CLI settings", () => {
  it("takes flags over the environment and trims a trailing slash and /api", () => {
    const settings = loadCliSettings(
      { api: "https://app.azurewebsites.net/api/", env: "prod" },
      {
        FASTBUILD_API_URL: "https://other.example",
        FASTBUILD_ENV: "dev",
        FASTBUILD_API_KEY: "k3y",
        XDG_CACHE_HOME: "/x/cache",
      },
    );
    assert.deepEqual(settings, {
      apiUrl: "https://app.azurewebsites.net",
      apiKey: "k3y",
      environment: "prod",
      cacheDir: "/x/cache/fast-build",
    });
  });

  it("reads everything from FASTBUILD_* when no flags are given", () => {
    const settings = loadCliSettings(
      {},
      { FASTBUILD_API_URL: "http://127.0.0.1:7071", FASTBUILD_ENV: "dev", FASTBUILD_CACHE_DIR: "/c" },
    );
    assert.deepEqual(settings, {
      apiUrl: "http://127.0.0.1:7071",
      apiKey: undefined,
      environment: "dev",
      cacheDir: "/c",
    });
  });

  it("reports a bad URL and a missing environment together, in one error", () => {
    assert.throws(
      () => loadCliSettings({ api: "not a url" }, {}),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 2);
        assert.match(error.problems[0]!, /not a URL/);
        assert.match(error.problems[1]!, /--env NAME or set FASTBUILD_ENV/);
        assert.match(error.hint ?? "", /flags or FASTBUILD_/);
        return true;
      },
    );
  });

  it("refuses plain http to anything but loopback (the key would travel in clear text)", () => {
    assert.throws(() => loadCliSettings({ api: "http://app.example.com", env: "dev" }, {}), /must use https/);
  });

  it("refuses a URL with a query (keys belong in FASTBUILD_API_KEY)", () => {
    assert.throws(
      () => loadCliSettings({ api: "https://a.example/?code=secret", env: "dev" }, {}),
      /only the base/,
    );
  });

  it("refuses a missing URL with what to set", () => {
    assert.throws(() => loadCliSettings({ env: "dev" }, {}), /FASTBUILD_API_URL/);
  });
});

describe("command line", () => {
  it("parses dev with every flag", () => {
    assert.deepEqual(
      parseCommand([
        "dev",
        "--env",
        "prod",
        "--api",
        "https://a",
        "--dir",
        "x",
        "--no-deploy",
        "--rebuild-base",
        "--json",
        "--no-follow",
        "--archive",
      ]),
      {
        command: "dev",
        flags: {
          env: "prod",
          api: "https://a",
          dir: "x",
          deploy: false,
          rebuildBase: true,
          json: true,
          follow: false,
          archive: true,
          dryRun: false,
        },
      },
    );
  });

  it("defaults to deploy and follow", () => {
    const parsed = parseCommand(["dev"]);
    assert.equal(parsed.command, "dev");
    assert.ok(parsed.command === "dev" && parsed.flags.deploy && parsed.flags.follow && !parsed.flags.json);
    assert.ok(parsed.command === "dev" && !parsed.flags.archive, "the manifest, unless --archive");
  });

  it("refuses unknown options and commands with a pointer to --help", () => {
    for (const argv of [["dev", "--bogus"], ["deploy"], [], ["dev", "--env"]]) {
      assert.throws(
        () => parseCommand(argv),
        (error: unknown) => error instanceof InvalidInputError && /--help/.test(error.hint ?? ""),
        argv.join(" "),
      );
    }
  });

  it("the program prints all setting problems with a hint and exits 2, running nothing", () => {
    const result = spawnSync(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", "dev", "--api", "ftp://x"],
      {
        encoding: "utf8",
        env: { PATH: process.env.PATH },
      },
    );
    assert.equal(result.status, 2);
    assert.match(result.stderr, /must use https/);
    assert.match(result.stderr, /FASTBUILD_ENV/);
    assert.match(result.stderr, /hint: /);
    assert.equal(result.stdout, "");
  });
});
