/**
 * `fast-build plan` and `dev --dry-run` offline, run as the user runs them (`main` in-process):
 * what would be sent (the same digest `dev` computes, by createManifest and createArchive over
 * the same generated files), what was left out and why, in git repositories and plain folders,
 * and every bad input refused with exit 2 and a hint. No API is configured: nothing can be asked.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, it } from "node:test";
import { createArchive } from "../../src/cli/archive.js";
import { readBuildInputs } from "../../src/cli/buildInputs.js";
import { main } from "../../src/cli/main.js";
import { createManifest } from "../../src/cli/manifest.js";
import type { DevPlan } from "../../src/cli/plan.js";
import { LEFT_OUT_EXAMPLES } from "../../src/cli/sourceTree.js";

class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

const dirs: string[] = [];
after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

const CRATE = {
  "Cargo.toml": '[package]\nname = "demo"\nversion = "0.1.0"\nedition = "2021"\n',
  "Cargo.lock": 'version = 3\n\n[[package]]\nname = "demo"\nversion = "0.1.0"\n',
  "src/main.rs": 'fn main() { println!("hi"); }\n',
};

async function tree(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "fb-plan-"));
  dirs.push(root);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return root;
}

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", ["-c", "user.name=test", "-c", "user.email=test@example.com", ...args], {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

async function gitRepo(files: Record<string, string>): Promise<string> {
  const root = await tree(files);
  git(root, "init", "-q", "-b", "main");
  git(root, "add", "-A");
  git(root, "commit", "-qm", "init");
  return root;
}

/** Runs the CLI with no API settings at all: any request would fail. */
async function cli(...argv: string[]) {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(argv, { stdout, stderr, env: {} });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

async function planJson(...argv: string[]): Promise<DevPlan> {
  const run = await cli("plan", "--json", ...argv);
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout) as DevPlan;
}

describe("fast-build plan (offline)", () => {
  it("prints one JSON object whose digest is the manifest dev would send, with the base key and bytes", async () => {
    const root = await gitRepo({ ...CRATE, "assets/big.bin": "x".repeat(50_000) });
    const plan = await planJson("--dir", root);
    const { baseKey, generated } = await readBuildInputs(root);
    const manifest = await createManifest(root, { generated });
    assert.equal(plan.sourceDigest, manifest.digest);
    assert.equal(plan.baseKey, baseKey);
    assert.equal(plan.files, manifest.fileCount);
    assert.equal(plan.contentBytes, manifest.contentBytes);
    assert.equal(plan.sends, "manifest");
    assert.equal(plan.fileList, "git");
    assert.ok(plan.archiveBytes > 0 && plan.archiveBytes < plan.contentBytes, "compressed");
    assert.deepEqual(plan.largest[0], { path: "assets/big.bin", bytes: 50_000 });
    assert.deepEqual(plan.baseKeyCovers.files, ["Cargo.toml", "Cargo.lock"]);
    assert.ok(plan.generated.includes(".fastbuild/kit/Dockerfile.base"));
    assert.equal(plan.registry, undefined, "nothing asked");
  });

  it("with --archive, reports the archive's digest and bytes", async () => {
    const root = await gitRepo(CRATE);
    const plan = await planJson("--dir", root, "--archive");
    const archive = await createArchive(root, { generated: (await readBuildInputs(root)).generated });
    await archive.dispose();
    assert.equal(plan.sends, "archive");
    assert.equal(plan.sourceDigest, archive.digest);
    assert.equal(plan.archiveBytes, archive.bytes);
    assert.equal(plan.manifestBytes, undefined);
  });

  it("names the ten largest files, largest first", async () => {
    const files = Object.fromEntries(
      Array.from({ length: 12 }, (_, i) => [`data/f${i}.txt`, "y".repeat(1000 * (i + 1))]),
    );
    const plan = await planJson("--dir", await gitRepo({ ...CRATE, ...files }));
    assert.equal(plan.largest.length, 10);
    assert.deepEqual(
      plan.largest.slice(0, 3).map((f) => f.path),
      ["data/f11.txt", "data/f10.txt", "data/f9.txt"],
    );
  });

  it("in a git repository says what git ignored, cargo output, a submodule not checked out and a nested repository", async () => {
    const root = await gitRepo({ ...CRATE, ".gitignore": "*.log\n/.secrets/\n" });
    for (let i = 0; i < 7; i++) await writeFile(join(root, `run${i}.log`), "log\n");
    await mkdir(join(root, ".secrets"));
    await writeFile(join(root, ".secrets", "key"), "k\n");
    // cargo output that .gitignore does not mention
    await mkdir(join(root, "target", "release"), { recursive: true });
    await writeFile(join(root, "target", "release", "demo"), "ELF\n");
    // a submodule registered but not checked out (a fresh clone without --recurse-submodules)
    const commit = git(root, "rev-parse", "HEAD").trim();
    git(root, "update-index", "--add", "--cacheinfo", `160000,${commit},vendor/lib`);
    await mkdir(join(root, "vendor", "lib"), { recursive: true });
    // an untracked repository inside the tree
    await mkdir(join(root, "scratch"));
    git(join(root, "scratch"), "init", "-q");

    const run = await cli("plan", "--dir", root);
    const plan = await planJson("--dir", root);

    assert.equal(run.code, 0, run.stderr);
    assert.equal(plan.leftOut.gitignored?.count, 8, "seven logs and the secrets folder once");
    assert.equal(plan.leftOut.gitignored?.examples.length, LEFT_OUT_EXAMPLES);
    assert.ok(plan.leftOut.gitignored?.examples.includes(".secrets/") ?? false);
    assert.deepEqual(plan.leftOut["cargo-target"], { count: 1, examples: ["target/release/demo"] });
    assert.deepEqual(plan.leftOut["submodule-not-checked-out"], { count: 1, examples: ["vendor/lib/"] });
    assert.deepEqual(plan.leftOut["nested-repository"], { count: 1, examples: ["scratch/"] });
    assert.match(run.stdout, /^ {4}ignored \(\.gitignore\): 8 \(.+, … 3 more\)$/m);
    assert.match(run.stdout, /^ {4}cargo build output \(target\/\): 1 \(target\/release\/demo\)$/m);
    assert.match(run.stdout, /^ {4}submodule not checked out: 1 \(vendor\/lib\/\)$/m);
  });

  it("outside git says what .gitignore left out, .git folders, files that are not regular and what fast-build replaces", async () => {
    const root = await tree({
      ...CRATE,
      ".gitignore": "build/\n",
      "build/out.o": "o\n",
      // not a repository git would recognise, but a .git folder all the same
      ".git/notes": "n\n",
      ".fastbuild/kit/Dockerfile.app": "FROM scratch\n",
    });
    execFileSync("mkfifo", [join(root, "pipe")]);
    const plan = await planJson("--dir", root);
    assert.equal(plan.fileList, "gitignore");
    assert.deepEqual(plan.leftOut.gitignored, { count: 1, examples: ["build/"] });
    assert.deepEqual(plan.leftOut["git-dir"], { count: 1, examples: [".git/notes"] });
    assert.deepEqual(plan.leftOut["not-a-regular-file"], { count: 1, examples: ["pipe"] });
    assert.deepEqual(plan.leftOut["replaced-by-generated"], {
      count: 1,
      examples: [".fastbuild/kit/Dockerfile.app"],
    });
  });

  it("says nothing was left out of a clean tree, and that the registry was not asked", async () => {
    const run = await cli("plan", "--dir", await gitRepo(CRATE));
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^ {2}left out: {5}nothing$/m);
    assert.match(run.stdout, /^ {2}registry: {5}not asked/m);
    assert.match(run.stdout, /^ {2}source: {7}sha256:[0-9a-f]{64} \(the manifest's digest\)$/m);
  });

  it("dev --dry-run prints what plan prints and needs no API settings", async () => {
    const root = await gitRepo(CRATE);
    const plan = await cli("plan", "--dir", root, "--json");
    const dry = await cli("dev", "--dry-run", "--dir", root, "--json");
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(JSON.parse(dry.stdout), JSON.parse(plan.stdout));
  });
});

describe("fast-build plan refuses bad input with exit 2 and a hint", () => {
  it("a --dir that is not a folder", async () => {
    const run = await cli("plan", "--dir", join(tmpdir(), "fb-plan-no-such-folder"));
    assert.equal(run.code, 2);
    assert.match(run.stderr, /is not a directory\nhint: Pass --dir/);
  });

  it("a folder without Cargo.toml", async () => {
    const run = await cli("plan", "--dir", await tree({ "README.md": "hi\n" }));
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^error: no Cargo\.toml in .+\nhint: Run the command from the root/m);
  });

  it("a flag plan does not take, and an argument", async () => {
    const flag = await cli("plan", "--no-deploy");
    assert.equal(flag.code, 2);
    assert.match(
      flag.stderr,
      /--no-deploy is not an option of `fast-build plan`\nhint: usage: fast-build plan /,
    );
    const unknown = await cli("plan", "--bogus");
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Unknown option '--bogus'/);
    const extra = await cli("plan", "now");
    assert.equal(extra.code, 2);
    assert.match(extra.stderr, /unexpected argument to plan: now/);
  });

  it("--env without --api, which it would otherwise ignore", async () => {
    const run = await cli("plan", "--env", "dev", "--dir", await gitRepo(CRATE));
    assert.equal(run.code, 2);
    assert.match(
      run.stderr,
      /--env asks the API, so it needs --api URL \(plan is offline without it\)\nhint: usage: fast-build plan /,
    );
  });

  it("--api without an environment, before anything is hashed or asked", async () => {
    const run = await cli("plan", "--api", "http://127.0.0.1:9", "--dir", await gitRepo(CRATE));
    assert.equal(run.code, 2);
    assert.match(run.stderr, /environment: missing; pass --env NAME or set FASTBUILD_ENV/);
  });
});
