/**
 * One table of good and bad values for every input the app sends to the builder, run through the
 * app's schemas (src/core/rules.ts, via the schemas that use it) and through dockerfiles/build.sh's
 * own validation. A value the app accepts and build.sh refuses would fail every build with exit 2
 * (as an upper-case registry such as `MyReg.azurecr.io` did). build.sh runs without buildah: with
 * bad or missing inputs it stops at validation, listing every problem.
 */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import type { z } from "zod";
import { environmentSchema, loadConfig } from "../../src/config/index.js";
import { baseKeySchema, branchSchema, commitSchema, sourceDigestSchema } from "../../src/core/api.js";
import { createBuildId, createCallbackToken } from "../../src/core/buildId.js";
import { buildIdSchema, buildInputSchema, callbackPath } from "../../src/core/buildInput.js";
import { EXIT_CODES } from "../../src/core/buildResult.js";
import {
  CONTENT_CACHE_LIMIT,
  EXTRACT_BYTES_FACTOR,
  EXTRACT_LIMITS,
  type ExtractLimit,
} from "../../src/core/extractLimits.js";
import { projectSettingsSchema } from "../../src/core/projectSettings.js";
import { branchCacheTag, registryCacheRefs } from "../../src/core/rules.js";
import { MINIMAL_SETTINGS } from "../config/settings.js";
import { runBuildScript } from "./helpers.js";

interface Input {
  /** The variable build.sh reads. */
  variable: string;
  /** Whether the app accepts the value (its schema, or its settings check). */
  app: (value: string) => boolean;
  /** What the app sends build.sh for the value (default: the value itself). */
  sent?: (value: string) => string;
  good: string[];
  bad: string[];
  /** Accepted by build.sh but never sent by the app: the documented, one-way differences. */
  builderOnly?: string[];
}

const accepts = (schema: z.ZodType) => (value: string) => schema.safeParse(value).success;
const hex = (n: number) => "0123456789abcdef".repeat(8).slice(0, n);

const BUILD_ID = createBuildId(new Date("2026-03-14T09:26:53Z"));

/** The callback base URL passes the app's settings check (the app sends base + callback path). */
function appTakesCallbackBase(base: string): boolean {
  try {
    loadConfig({ ...MINIMAL_SETTINGS, FASTBUILD_PUBLIC_BASE_URL: base });
    return true;
  } catch {
    return false;
  }
}

const INPUTS: Input[] = [
  {
    variable: "FASTBUILD_BUILD_ID",
    app: accepts(buildIdSchema),
    good: [BUILD_ID, "build-0001"],
    bad: ["bad id!", "Build-0001", "build_0001", "build.0001", "-build-0001", "b".repeat(65)],
    // Short ids: build.sh's own tests and manual runs; the API's ids are 25 characters.
    builderOnly: ["b1"],
  },
  {
    variable: "FASTBUILD_SOURCE_DIGEST",
    app: accepts(sourceDigestSchema),
    good: [`sha256:${hex(64)}`],
    bad: ["md5:abc", `sha256:${hex(63)}`, `sha256:${hex(64).toUpperCase()}`, hex(64)],
  },
  {
    variable: "FASTBUILD_REGISTRY",
    app: accepts(environmentSchema.shape.registry),
    good: ["myreg.azurecr.io", "127.0.0.1:5000", "localhost:5000", "registry"],
    bad: [
      "MyReg.azurecr.io",
      "https://myreg.azurecr.io",
      "myreg.azurecr.io/",
      "my_reg.azurecr.io",
      "-myreg.azurecr.io",
      "myreg.azurecr.io.",
      "myreg.azurecr.io:",
      "myreg.azurecr.io:123456",
    ],
  },
  {
    variable: "FASTBUILD_IMAGE_REPOSITORY",
    app: accepts(environmentSchema.shape.imageRepository),
    good: ["team/app", "app", "team/my-app.v2/x_y"],
    bad: ["Team/app", "team//app", "/app", "app/", "team/-app", "team app", "team/app:tag"],
  },
  {
    variable: "FASTBUILD_BASE_KEY",
    app: accepts(baseKeySchema),
    good: [hex(16), hex(64)],
    bad: ["XYZ", hex(15), `${hex(64)}0`, hex(16).toUpperCase()],
  },
  {
    variable: "FASTBUILD_COMMIT",
    app: accepts(commitSchema),
    good: ["abcdef1", hex(40)],
    bad: ["abcde", "ABCDEF1", "abcdefg", "abc def1"],
  },
  {
    variable: "FASTBUILD_BINARY_NAME",
    app: accepts(environmentSchema.shape.binaryName),
    good: ["app", "my-server_2", "App"],
    bad: ["my server", "a/b", "x".repeat(65), "app;rm", "app.exe"],
  },
  {
    variable: "FASTBUILD_CALLBACK_TOKEN",
    app: accepts(buildInputSchema.shape.callbackToken),
    good: [createCallbackToken(), "A".repeat(32)],
    bad: ["short", `${"a".repeat(31)} `, `${"a".repeat(31)}"`, "a".repeat(2049)],
    // Any 16+ URL-safe token: build.sh's own tests use short ones; ours are 43 characters.
    builderOnly: ["test-token-0123456789"],
  },
  {
    variable: "FASTBUILD_CALLBACK_URL",
    app: appTakesCallbackBase,
    sent: (base) => `${base.replace(/\/+$/, "")}${callbackPath(BUILD_ID)}`,
    good: [
      "https://myapp.azurewebsites.net",
      "http://127.0.0.1:7071",
      "http://localhost:7071/",
      "http://[::1]:80",
    ],
    bad: ["http://myapp.example.com", "http://127.0.0.2:7071", "ftp://myapp.example.com"],
  },
];

/** The extraction limits as the app sends them: every value the settings take passes build.sh. */
function extractLimitInput(limit: ExtractLimit): Input {
  const setting = limit.key === "maxBytes" ? EXTRACT_BYTES_FACTOR : limit;
  const config = (value: string) => {
    try {
      return loadConfig({ ...MINIMAL_SETTINGS, [setting.setting]: value });
    } catch {
      return undefined;
    }
  };
  return {
    variable: limit.variable,
    app: (value) => config(value) !== undefined,
    sent: (value) => {
      const sent = config(value)?.builds.extractLimits[limit.key];
      return sent === undefined ? value : String(sent);
    },
    good: [setting.min, setting.default, setting.max].map(String),
    bad: ["-1", "1.5", "x", "12abc", ...(setting.min === 1 ? ["0"] : [])],
    // Outside the settings' range but well-formed: build.sh checks the form only.
    builderOnly: [String(setting.max + 1), ...(setting.min > 1 ? [String(setting.min - 1)] : [])],
  };
}

INPUTS.push(...EXTRACT_LIMITS.map(extractLimitInput));

// The project file's settings (fast-build.toml, src/core/projectSettings.ts), as the start
// activity sends them: the port as its digits, the features comma-joined, paths as they are.
const project = projectSettingsSchema.shape;
const PATHS = {
  good: ["Dockerfile.base", "docker/Dockerfile.base", "a_b/c-d.e", "_x/Dockerfile"],
  bad: [
    "../Dockerfile",
    "/etc/passwd",
    ".fastbuild/kit/Dockerfile.base",
    "a//b",
    "a/../b",
    "a/./b",
    "docker/",
    "a b",
    "a;b",
    "a\\b",
  ],
};
INPUTS.push(
  {
    variable: "FASTBUILD_PORT",
    app: (value) => /^[0-9]+$/.test(value) && project.port.safeParse(Number(value)).success,
    sent: (value) => (/^[0-9]+$/.test(value) ? String(Number(value)) : value),
    good: ["1", "80", "8080", "65535"],
    bad: ["0", "65536", "99999", "-1", "1.5", "80a", "123456"],
  },
  { variable: "FASTBUILD_DOCKERFILE_BASE", app: accepts(project.dockerfiles.unwrap().shape.base), ...PATHS },
  { variable: "FASTBUILD_DOCKERFILE_APP", app: accepts(project.dockerfiles.unwrap().shape.app), ...PATHS },
  {
    variable: "FASTBUILD_CARGO_PROFILE",
    app: accepts(project.profile),
    good: ["release", "dev", "my-prof_1"],
    bad: ["my prof", "a/b", "x".repeat(65), "rel;ease"],
  },
  {
    variable: "FASTBUILD_CARGO_FEATURES",
    app: (value) => project.features.safeParse(value.split(",")).success,
    good: ["metrics", "a,b", "serde/derive,x-y_z"],
    bad: ["a b", "a;b", Array.from({ length: 6 }, () => "f".repeat(99)).join(",")],
  },
  {
    variable: "FASTBUILD_CARGO_TARGET",
    app: accepts(project.target),
    good: ["x86_64-unknown-linux-musl", "wasm32-wasip1"],
    bad: ["a b", "a/b", "x".repeat(101)],
  },
);

// The builder's content cache bound: not an app setting (yet), so its rule stands for the app.
INPUTS.push({
  variable: CONTENT_CACHE_LIMIT.variable,
  app: (value) => CONTENT_CACHE_LIMIT.rule.pattern.test(value),
  good: ["0", "1", String(CONTENT_CACHE_LIMIT.default), "9".repeat(13)],
  bad: ["-1", "1.5", "x", "8G", "9".repeat(14)],
});

// The shared registry cache: the build's branch (sent as the API took it) and the switch
// (`registryCache` of the environment, sent as true/false).
const parsed = (value: string): unknown => {
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
};
INPUTS.push(
  {
    variable: "FASTBUILD_BRANCH",
    app: accepts(branchSchema),
    good: ["main", "feature/New-Thing", "release/1.2", "v1.0_rc-2", "9", "a".repeat(200)],
    bad: ["-x", "/x", ".x", "_x", "a b", "a;b", "a'b", "a$b", "\u00fc", "a".repeat(201)],
  },
  {
    variable: "FASTBUILD_REGISTRY_CACHE",
    // The app sends String(registryCache): only a value the setting holds (a boolean) is ever sent.
    app: (value) => {
      const setting = parsed(value);
      return typeof setting === "boolean" && environmentSchema.shape.registryCache.safeParse(setting).success;
    },
    good: ["true", "false"],
    bad: ["yes", "1", "0", "TRUE", "off"],
  },
);

/** build.sh's verdict per variable for one run: the variables it named in a problem. */
type Verdicts = Map<string, Set<string>>;

describe("the app and build.sh agree on every input the app sends", () => {
  const refusedBy: Verdicts = new Map();

  before(async () => {
    // Run k sets each variable to its k-th value; build.sh lists every problem in one run.
    const columns = INPUTS.map((input) => [...input.good, ...input.bad, ...(input.builderOnly ?? [])]);
    const runs = Math.max(...columns.map((values) => values.length));
    await Promise.all(
      Array.from({ length: runs }, async (_, k) => {
        const env: Record<string, string> = {};
        INPUTS.forEach((input, i) => {
          const value = columns[i]?.[k];
          if (value !== undefined) env[input.variable] = (input.sent ?? ((v: string) => v))(value);
        });
        const run = await runBuildScript(env);
        assert.equal(run.code, EXIT_CODES.usage, run.output);
        const problems = [...run.output.matchAll(/ invalid input: (.*)$/gm)].map((m) => m[1] ?? "");
        for (const input of INPUTS) {
          const value = columns[INPUTS.indexOf(input)]?.[k];
          if (value === undefined) continue;
          const named = problems.some(
            (p) => p.startsWith(`${input.variable} `) && !p.startsWith(`${input.variable} is not set`),
          );
          if (named) {
            const refused = refusedBy.get(input.variable) ?? new Set<string>();
            refused.add(value);
            refusedBy.set(input.variable, refused);
          }
        }
      }),
    );
  });

  for (const input of INPUTS) {
    it(`${input.variable}: good values pass both, bad values fail both`, () => {
      const refused = refusedBy.get(input.variable) ?? new Set<string>();
      for (const value of input.good) {
        assert.equal(input.app(value), true, `the app refuses good ${JSON.stringify(value)}`);
        assert.equal(refused.has(value), false, `build.sh refuses good ${JSON.stringify(value)}`);
      }
      for (const value of input.bad) {
        assert.equal(input.app(value), false, `the app accepts bad ${JSON.stringify(value)}`);
        assert.equal(refused.has(value), true, `build.sh accepts bad ${JSON.stringify(value)}`);
      }
      for (const value of input.builderOnly ?? []) {
        assert.equal(input.app(value), false, `the app accepts ${JSON.stringify(value)}`);
        assert.equal(refused.has(value), false, `build.sh refuses ${JSON.stringify(value)}`);
      }
    });
  }
});

/** Branches and the cache tag each gets (src/core/rules.ts branchCacheTag): one table for both. */
const BRANCH_TAGS: Array<[branch: string | undefined, tag: string]> = [
  [undefined, "main"],
  ["main", "main"],
  ["feature/New-Thing", "feature-new-thing"],
  ["release/1.2", "release-1.2"],
  ["a//b", "a-b"],
  ["fix/-dash-", "fix--dash"],
  ["x/.hidden.", "x-.hidden"],
  ["Z" + "a".repeat(150), "z" + "a".repeat(99)],
  ["a".repeat(99) + "/b", "a".repeat(99)],
  ["v1.0_rc-2", "v1.0_rc-2"],
];

describe("the app and build.sh compute the same registry cache refs", () => {
  const registry = "myreg.azurecr.io";
  const repository = "team/app";
  const baseKey = hex(16);
  // Valid inputs and a builder that is never ready: build.sh logs its cache refs, then stops (exit 14).
  const vars = (extra: Record<string, string>) => ({
    FASTBUILD_BUILD_ID: "build-0001",
    FASTBUILD_SOURCE_URL: "https://example.invalid/source.tar.gz",
    FASTBUILD_SOURCE_DIGEST: `sha256:${hex(64)}`,
    FASTBUILD_REGISTRY: registry,
    FASTBUILD_IMAGE_REPOSITORY: repository,
    FASTBUILD_BASE_KEY: baseKey,
    FASTBUILD_BINARY_NAME: "app",
    FASTBUILD_READY_MARKER: "/nonexistent/fastbuild-ready",
    FASTBUILD_READY_TIMEOUT_SECONDS: "0",
    ...extra,
  });

  for (const [branch, tag] of BRANCH_TAGS) {
    it(`branch ${JSON.stringify(branch)}: tag app-${tag.length > 20 ? tag.slice(0, 20) + "…" : tag}, read before main's`, async () => {
      if (branch !== undefined) assert.equal(branchCacheTag(branch), tag);
      const refs = registryCacheRefs({ registry, repository, baseKey, branch });
      const cache = `${registry}/${repository}-cache`;
      assert.equal(refs.app.to, `${cache}:app-${tag}`);
      assert.deepEqual(
        refs.app.from,
        tag === "main" ? [`${cache}:app-main`] : [`${cache}:app-${tag}`, `${cache}:app-main`],
      );
      assert.deepEqual(refs.base, { from: [`${cache}:base-${baseKey}`], to: `${cache}:base-${baseKey}` });
      const run = await runBuildScript(vars(branch === undefined ? {} : { FASTBUILD_BRANCH: branch }));
      assert.equal(run.code, EXIT_CODES.notReady, run.output);
      assert.ok(
        run.output.includes(
          `cache: base reads and writes ${refs.base.to}; app reads ${refs.app.from.join(" ")}, writes ${refs.app.to}\n`,
        ),
        run.output,
      );
    });
  }

  it("FASTBUILD_REGISTRY_CACHE=false: build.sh says the cache is off", async () => {
    const run = await runBuildScript(vars({ FASTBUILD_REGISTRY_CACHE: "false", FASTBUILD_BRANCH: "main" }));
    assert.equal(run.code, EXIT_CODES.notReady, run.output);
    assert.match(run.output, /cache: the registry cache is off \(FASTBUILD_REGISTRY_CACHE=false\)/);
    assert.doesNotMatch(run.output, /cache: base reads/);
  });
});
