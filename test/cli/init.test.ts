/**
 * `fast-build init` on temporary projects, through the command itself (`main`): what it detects,
 * the file it writes (read back by the one schema), and each refusal with its exit code and hint.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { main } from "../../src/cli/main.js";
import { parseProjectFile } from "../../src/core/projectFile.js";
import { Capture } from "./cliHost.js";

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function tree(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "fb-init-"));
  dirs.push(root);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  return root;
}

async function init(root: string, ...flags: string[]) {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(["init", "--dir", root, ...flags], { stdout, stderr });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

const pkg = (name: string, extra = "") =>
  `[package]\nname = "${name}"\nversion = "0.1.0"\nedition = "2021"\n${extra}`;
const MAIN = "fn main() {}\n";

describe("fast-build init", () => {
  it("writes the only binary of a one-crate workspace and says what it detected", async () => {
    const root = await tree({ "Cargo.toml": pkg("hello"), "src/main.rs": MAIN });
    const run = await init(root);
    assert.equal(run.code, 0, run.stderr);
    const file = parseProjectFile(await readFile(join(root, "fast-build.toml"), "utf8"));
    assert.equal(file.build.binary, "hello");
    assert.equal(file.docker.base, undefined);
    assert.match(run.stdout, /^wrote .*fast-build\.toml$/m);
    assert.match(run.stdout, /binary: {7}hello \(only binary\)/);
    assert.match(run.stdout, /dockerfiles: {2}built-in \(Rust\)/);
  });

  it("finds the binaries of every member (src/main.rs, src/bin, [[bin]]) and refuses to guess among several", async () => {
    const root = await tree({
      "Cargo.toml": '[workspace]\nmembers = ["crates/*"]\n',
      "crates/api/Cargo.toml": pkg("api"),
      "crates/api/src/main.rs": MAIN,
      "crates/tools/Cargo.toml": pkg("tools", '\n[[bin]]\nname = "migrate"\npath = "src/migrate.rs"\n'),
      "crates/tools/src/migrate.rs": MAIN,
      "crates/tools/src/bin/seed.rs": MAIN,
      "crates/core/Cargo.toml": pkg("core"),
      "crates/core/src/lib.rs": "",
    });
    const run = await init(root);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /error: the workspace has 3 binaries: api, migrate, seed/);
    assert.match(run.stderr, /hint: .*fast-build init --binary api/);
    await assert.rejects(readFile(join(root, "fast-build.toml")), { code: "ENOENT" });

    const chosen = await init(root, "--binary", "seed", "--json");
    assert.equal(chosen.code, 0, chosen.stderr);
    const result = JSON.parse(chosen.stdout) as {
      detected: { binaryRule: string; binaries: { name: string }[] };
    };
    assert.equal(result.detected.binaryRule, "--binary");
    assert.deepEqual(result.detected.binaries.map((b) => b.name).sort(), ["api", "migrate", "seed"]);
    assert.equal(
      parseProjectFile(await readFile(join(root, "fast-build.toml"), "utf8")).build.binary,
      "seed",
    );
  });

  it("takes the root package's default-run among several binaries", async () => {
    const root = await tree({
      "Cargo.toml": pkg("app", 'default-run = "server"\n'),
      "src/bin/server.rs": MAIN,
      "src/bin/worker/main.rs": MAIN,
    });
    const run = await init(root);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /binary: {7}server \(default-run\)/);
  });

  it("refuses a --binary the workspace does not have, listing the ones it has", async () => {
    const root = await tree({ "Cargo.toml": pkg("hello"), "src/main.rs": MAIN });
    const run = await init(root, "--binary", "nope");
    assert.equal(run.code, 2);
    assert.match(
      run.stderr,
      /--binary "nope" is not a binary of this workspace\nhint: The workspace's binaries: hello\./,
    );
  });

  it("refuses a library-only workspace with the built-in Dockerfiles", async () => {
    const root = await tree({ "Cargo.toml": pkg("lib"), "src/lib.rs": "" });
    const run = await init(root);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /no binary target/);
  });

  it("notes rust-toolchain.toml (it is part of the base key)", async () => {
    const root = await tree({
      "Cargo.toml": pkg("hello"),
      "src/main.rs": MAIN,
      "rust-toolchain.toml": '[toolchain]\nchannel = "1.91.1"\n',
    });
    const run = await init(root, "--json");
    assert.equal(run.code, 0, run.stderr);
    assert.equal(
      (JSON.parse(run.stdout) as { detected: { toolchainFile: string } }).detected.toolchainFile,
      "rust-toolchain.toml",
    );
    assert.match(run.stderr, /toolchain: {4}rust-toolchain\.toml \(part of the base key\)/);
  });

  it("keeps a Rust project's own Dockerfile pair (in docker/) and its EXPOSEd port", async () => {
    const root = await tree({
      "Cargo.toml": pkg("hello"),
      "src/main.rs": MAIN,
      "docker/Dockerfile.base": "FROM x\n",
      "docker/Dockerfile.app": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nEXPOSE 8080\n",
    });
    const run = await init(root);
    assert.equal(run.code, 0, run.stderr);
    const file = parseProjectFile(await readFile(join(root, "fast-build.toml"), "utf8"));
    assert.deepEqual(file.docker, {
      base: "docker/Dockerfile.base",
      app: "docker/Dockerfile.app",
      baseKeyFiles: [],
    });
    assert.equal(file.container.port, 8080);
  });

  it("detects a Node project: its own Dockerfiles, keyed on its package files", async () => {
    const root = await tree({
      "package.json": "{}\n",
      "package-lock.json": "{}\n",
      "server.js": "",
      "Dockerfile.base": "FROM node\n",
      "Dockerfile.app": "FROM x\nARG PORT=3000\nEXPOSE ${PORT}\n",
    });
    const run = await init(root);
    assert.equal(run.code, 0, run.stderr);
    const file = parseProjectFile(await readFile(join(root, "fast-build.toml"), "utf8"));
    assert.deepEqual(file.docker, {
      base: "Dockerfile.base",
      app: "Dockerfile.app",
      baseKeyFiles: ["package.json", "package-lock.json"],
    });
    assert.equal(file.build.binary, undefined);
    assert.equal(file.container.port, 3000);
    assert.match(run.stdout, /project: {6}not a Cargo workspace/);
  });

  it("refuses a folder with neither a Cargo workspace nor a Dockerfile pair", async () => {
    const root = await tree({ "package.json": "{}\n", "Dockerfile.base": "FROM node\n" });
    const run = await init(root);
    assert.equal(run.code, 2);
    assert.match(
      run.stderr,
      /has no Cargo\.toml and no Dockerfile\.base \/ Dockerfile\.app pair\nhint: .*examples\/node-hello/,
    );
  });

  it("never overwrites a project file without --force", async () => {
    const root = await tree({
      "Cargo.toml": pkg("hello"),
      "src/main.rs": MAIN,
      "fast-build.toml": "# mine\n",
    });
    const run = await init(root);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /fast-build\.toml already exists\nhint: .*fast-build init --force/);
    assert.equal(await readFile(join(root, "fast-build.toml"), "utf8"), "# mine\n");
    const forced = await init(root, "--force");
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /^replaced /m);
  });

  it("refuses a missing folder, an unknown flag and an empty --binary", async () => {
    assert.equal((await init(join(tmpdir(), "fb-init-missing-folder"))).code, 2);
    const root = await tree({ "Cargo.toml": pkg("hello"), "src/main.rs": MAIN });
    const flag = await init(root, "--env", "dev");
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--env is not an option of `fast-build init`/);
    assert.equal((await init(root, "--binary", " ")).code, 2);
  });
});
