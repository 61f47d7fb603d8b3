/**
 * What `azd deploy` ships to the function app: the app compiled as `npm run build` compiles it
 * (into a temporary folder), staged by scripts/package-app.mjs (the prepackage hook), and then
 * listed file by file the way azd zips the staged folder: the folder's .funcignore applied with
 * gitignore rules, plus azd's own exclusions (.azure/, the ignore file, local.settings.json).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import ignore from "ignore";

const ROOT = resolve(import.meta.dirname, "..", "..");

interface Manifest {
  main?: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  workspaces?: string[];
  scripts?: Record<string, string>;
}

const readJson = async (path: string) => JSON.parse(await readFile(path, "utf8")) as Manifest;

let scratch: string;
let staged: string;
/** Every file azd would put in the zip, relative to its root, `/`-separated. */
let zipped: string[];

/** The zip's file list: azd's createDeployableZip over the staged folder. */
async function zipList(root: string): Promise<string[]> {
  const rules = ignore().add(await readFile(join(root, ".funcignore"), "utf8"));
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = relative(root, join(dir, entry.name)).split("\\").join("/");
      const isDir = entry.isDirectory();
      if (isDir && entry.name === ".azure") continue;
      if (!isDir && (path === ".funcignore" || entry.name === "local.settings.json")) continue;
      if (rules.ignores(isDir ? `${path}/` : path)) continue;
      if (isDir) await walk(join(dir, entry.name));
      else files.push(path);
    }
  };
  await walk(root);
  return files.sort();
}

/** Top-level package names under the zip's node_modules (`@scope/name` for scoped ones). */
function installedPackages(): Set<string> {
  const names = zipped
    .filter((path) => path.startsWith("node_modules/"))
    .map((path) => {
      const [, first, second] = path.split("/");
      return first?.startsWith("@") ? `${first}/${second}` : (first ?? "");
    });
  return new Set(names);
}

before(async () => {
  // Outside the repository, so nothing resolves from the repository's own node_modules.
  scratch = await mkdtemp(join(tmpdir(), "fb-deploy-"));
  const dist = join(scratch, "dist");
  staged = join(scratch, "api");
  const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
  execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json", "--outDir", dist], { cwd: ROOT });
  execFileSync(
    process.execPath,
    [join(ROOT, "scripts", "package-app.mjs"), "--dist", dist, "--out", staged],
    { cwd: ROOT, stdio: "ignore" },
  );
  zipped = await zipList(staged);
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("the function app's deploy package", () => {
  it("holds the compiled app, host.json, package.json and the build kit", () => {
    for (const file of [
      "dist/functions/index.js",
      "dist/wiring.js",
      "host.json",
      "package.json",
      "dockerfiles/build.sh",
      "dockerfiles/safe_extract.py",
    ]) {
      assert.ok(zipped.includes(file), `${file} is deployed`);
    }
  });

  it("carries no sources, tests, simulation, local cloud, benchmarks, infra or local settings", () => {
    const unwanted = /^(src|test|sim|packages|bench|infra|scripts|examples|\.sim|\.deploy|\.azure)\//;
    assert.deepEqual(
      zipped.filter((path) => unwanted.test(path)),
      [],
    );
    for (const file of [
      "local.settings.json",
      "tsconfig.json",
      "azure.yaml",
      "eslint.config.js",
      ".funcignore",
    ]) {
      assert.ok(!zipped.includes(file), `${file} is not deployed`);
    }
    assert.deepEqual(
      zipped.filter((path) => path.startsWith("dist/") && path.endsWith(".ts") && !path.endsWith(".d.ts")),
      [],
    );
  });

  it("declares what the host reads and no dev tooling: main, production dependencies, no scripts or workspaces", async () => {
    const root = await readJson(join(ROOT, "package.json"));
    const manifest = await readJson(join(staged, "package.json"));
    assert.equal(manifest.main, root.main);
    assert.ok(zipped.includes(manifest.main ?? ""), "main points at a deployed file");
    assert.deepEqual(manifest.dependencies, root.dependencies);
    assert.equal(manifest.devDependencies, undefined);
    assert.equal(manifest.optionalDependencies, undefined);
    assert.equal(manifest.workspaces, undefined);
    assert.equal(manifest.scripts, undefined);
  });

  it("installs the production dependencies and none of the dev ones, the local cloud's or the dev tools'", async () => {
    const root = await readJson(join(ROOT, "package.json"));
    const localCloud = await readJson(join(ROOT, "packages", "local-cloud", "package.json"));
    const installed = installedPackages();
    for (const name of Object.keys(root.dependencies ?? {})) {
      assert.ok(installed.has(name), `${name} (a dependency) is deployed`);
    }
    const devOnly = [
      ...Object.keys(root.devDependencies ?? {}),
      ...Object.keys(root.optionalDependencies ?? {}),
      ...Object.keys(localCloud.dependencies ?? {}),
    ];
    assert.deepEqual(
      devOnly.filter((name) => installed.has(name)),
      [],
    );
    assert.ok(!zipped.some((path) => path.startsWith("node_modules/.cache/")));
  });

  it("at the repository root keeps only the app and node_modules (azd: no remote build; Core Tools' publish)", async () => {
    // azd reads the root's .funcignore to choose remote build: it must not exclude node_modules.
    const rules = ignore().add(await readFile(join(ROOT, ".funcignore"), "utf8"));
    const kept = (await readdir(ROOT, { withFileTypes: true }))
      .filter((entry) => !rules.ignores(entry.isDirectory() ? `${entry.name}/` : entry.name))
      .map((entry) => entry.name)
      .filter((name) => name !== ".funcignore" && name !== "local.settings.json");
    const app = ["dist", "dockerfiles", "host.json", "node_modules", "package-lock.json", "package.json"];
    assert.deepEqual(
      kept.filter((name) => !app.includes(name)),
      [],
    );
    assert.ok(kept.includes("node_modules"));
  });

  it("loads the app and every module it imports lazily from its own node_modules", () => {
    // The entry registers the functions; the wiring pulls in every SDK gateway and the activities;
    // the orchestrator's wrapper comes from durable-functions. A missing production dependency fails here.
    const script = [
      'await import("./dist/functions/index.js");',
      'await import("./dist/wiring.js");',
      'await import("durable-functions/lib/src/util/testingUtils.js");',
      'process.stdout.write("loaded");',
    ].join("\n");
    const output = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      cwd: staged,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    assert.equal(output, "loaded");
  });
});
