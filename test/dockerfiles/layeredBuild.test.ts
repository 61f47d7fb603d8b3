/**
 * The real dockerfiles/build.sh with real images: buildah (vfs, chroot isolation) in the role of
 * the container CLI, Debian's docker-registry on loopback, source archives over HTTP. The fixture
 * Dockerfiles keep the real two-layer shape but run shell instead of cargo (no Rust image can be
 * pulled here); the base key comes from the real src/core/baseKey.ts.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as tar from "tar";
import { computeBaseKey, RECIPE_DIR_IN_ARCHIVE, writeDependencyRecipe } from "../../src/core/baseKey.js";
import { buildResultSchema, EXIT_CODES } from "../../src/core/buildResult.js";
import { LOCAL_DOCKERFILES, prepareLocalBuilder } from "@fast-build/local-cloud/builder";
import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";
import {
  makeTarGz,
  runBuildScript,
  sha256Digest,
  startFileServer,
  type FileServer,
  type RunResult,
} from "./helpers.js";

const FIXTURE_DOCKERFILES = LOCAL_DOCKERFILES;

const WORKSPACE: Record<string, string> = {
  "Cargo.toml": '[workspace]\nmembers = ["app"]\n',
  "app/Cargo.toml": '[package]\nname = "app"\nversion = "0.1.0"\n\n[dependencies]\nserde = "1"\n',
  "app/src/main.rs": 'fn main() { println!("v1"); }\n',
  "Cargo.lock":
    'version = 4\n\n[[package]]\nname = "app"\nversion = "0.1.0"\ndependencies = [\n "serde",\n]\n\n' +
    '[[package]]\nname = "serde"\nversion = "1.0.200"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n',
  // The fixture's "compiler": fails when the sources ask it to, like a compile error would.
  "local-compile.sh":
    'set -eu\nif grep -q COMPILE_ERROR app/src/main.rs; then echo "error[E0425]: cannot find value" >&2; exit 7; fi\n' +
    'printf "#!/bin/sh\\necho built from %s\\n" "$(cat app/src/main.rs | tr -d "\\n")" > "$1"\nchmod +x "$1"\n',
};

let scratch: string;
let registry: LocalRegistry;
let files: FileServer;
let machineEnv: Record<string, string>;
let toolchain1: string;
let toolchain2: string;
let counter = 0;

interface Prepared {
  url: string;
  digest: string;
  baseKey: string;
}

/** Writes the workspace (with changes), adds the recipe like the upload command, serves the tar.gz. */
async function prepare(
  changes: Record<string, string> = {},
  toolchain = toolchain1,
  withRecipe = true,
): Promise<Prepared> {
  const root = join(scratch, `ws${counter++}`);
  for (const [path, content] of Object.entries({ ...WORKSPACE, ...changes })) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  const dockerfileBase = await readFile(join(FIXTURE_DOCKERFILES, "Dockerfile.base"));
  const { key, recipe } = await computeBaseKey(root, { toolchain, dockerfileBase });
  if (withRecipe) await writeDependencyRecipe(recipe, join(root, ...RECIPE_DIR_IN_ARCHIVE.split("/")));
  const entries = (await readdir(root)).sort();
  const chunks: Buffer[] = [];
  for await (const chunk of tar.c({ gzip: true, cwd: root, portable: true, noMtime: true }, entries)) {
    chunks.push(chunk);
  }
  const archive = Buffer.concat(chunks);
  return { url: files.serve(archive), digest: sha256Digest(archive), baseKey: key };
}

function env(p: Prepared, buildId: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    FASTBUILD_BUILD_ID: buildId,
    FASTBUILD_SOURCE_URL: p.url,
    FASTBUILD_SOURCE_DIGEST: p.digest,
    FASTBUILD_REGISTRY: registry.host,
    FASTBUILD_IMAGE_REPOSITORY: "team/app",
    FASTBUILD_BASE_KEY: p.baseKey,
    FASTBUILD_BINARY_NAME: "app",
    ...machineEnv,
    FASTBUILD_EXTRACT_MAX_BYTES: String(4 << 20),
    FASTBUILD_EXTRACT_MAX_FILES: "200",
    ...extra,
  };
}

async function manifestDigest(repo: string, tag: string): Promise<string | undefined> {
  const response = await fetch(`${registry.url}/v2/${repo}/manifests/${tag}`, {
    method: "HEAD",
    headers: {
      accept:
        "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json",
    },
  });
  return response.status === 200 ? (response.headers.get("docker-content-digest") ?? undefined) : undefined;
}

function assertResultLine(run: RunResult) {
  const last = run.output.trimEnd().split("\n").at(-1)!;
  buildResultSchema.parse(JSON.parse(last));
  assert.ok(run.result, `no result line in:\n${run.output}`);
  return run.result;
}

const baseBuilt = (run: RunResult) => run.output.includes("fixture-base: compiling dependencies");

describe("dockerfiles/build.sh with buildah and a local registry", () => {
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "fb-layered-"));
    await mkdir(join(scratch, "tmp"));
    registry = await startRegistry({ storageDir: join(scratch, "registry") });
    files = await startFileServer();
    const builder = await prepareLocalBuilder(scratch, registry, {
      toolchain: ["fixtures/toolchain:1", "fixtures/toolchain:2"],
      runtime: "fixtures/runtime:1",
    });
    machineEnv = builder.env;
    toolchain1 = builder.images.toolchain;
    toolchain2 = `${registry.host}/fixtures/toolchain:2`;
  });

  after(async () => {
    await files?.stop();
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  let first: Prepared;
  let firstDigest: string | undefined;

  it("first build builds and pushes the base, then the app (heartbeats and result to the callback)", async () => {
    first = await prepare();
    const run = await runBuildScript(
      env(first, "b1", {
        FASTBUILD_COMMIT: "abcdef1",
        FASTBUILD_CALLBACK_URL: files.serve(Buffer.alloc(0)).replace("/blobs/", "/callback/"),
        FASTBUILD_CALLBACK_TOKEN: "test-token-0123456789",
        FASTBUILD_HEARTBEAT_SECONDS: "1",
      }),
    );
    const result = assertResultLine(run);
    assert.equal(run.code, 0, run.output);
    assert.equal(result.status, "succeeded");
    assert.equal(result.baseCacheHit, false);
    assert.equal(result.skipped, false);
    assert.ok(baseBuilt(run));
    assert.equal(result.baseKey, first.baseKey);
    assert.equal(result.baseImage, `${registry.host}/team/app-base:${first.baseKey}`);
    assert.equal(result.image, `${registry.host}/team/app:b1`);
    assert.match(result.digest ?? "", /^sha256:[0-9a-f]{64}$/);
    assert.ok(await manifestDigest("team/app-base", first.baseKey));
    assert.equal(await manifestDigest("team/app", `src-${first.digest.slice(7)}`), result.digest);
    assert.equal(await manifestDigest("team/app", "commit-abcdef1"), result.digest);
    for (const step of ["check", "download", "extract", "base", "app", "push", "total"]) {
      assert.equal(typeof result.timings[step], "number", step);
    }
    firstDigest = result.digest;
    const posts = files.posts.filter((p) => p.path.startsWith("/callback/"));
    assert.ok(posts.every((p) => p.token === "test-token-0123456789"));
    assert.ok(posts.some((p) => p.body.includes('"fastbuild":"heartbeat"')));
    assert.deepEqual(buildResultSchema.parse(JSON.parse(posts.at(-1)!.body)), result);
  });

  it("a second build with new sources and a bumped own version reuses the base (no base step runs)", async () => {
    const next = await prepare({
      "app/src/main.rs": 'fn main() { println!("v2"); }\n',
      "app/Cargo.toml": WORKSPACE["app/Cargo.toml"]!.replace("0.1.0", "0.2.0"),
      "Cargo.lock": WORKSPACE["Cargo.lock"]!.replace('"0.1.0"', '"0.2.0"'),
    });
    assert.equal(next.baseKey, first.baseKey);
    assert.notEqual(next.digest, first.digest);
    const run = await runBuildScript(env(next, "b2"));
    const result = assertResultLine(run);
    assert.equal(run.code, 0, run.output);
    assert.equal(result.baseCacheHit, true);
    assert.equal(baseBuilt(run), false);
    assert.match(run.output, /reusing base image/);
    assert.notEqual(result.digest, firstDigest);
  });

  it("a dependency change makes a new base key and builds a new base", async () => {
    const next = await prepare({ "Cargo.lock": WORKSPACE["Cargo.lock"]!.replace("1.0.200", "1.0.201") });
    assert.notEqual(next.baseKey, first.baseKey);
    const run = await runBuildScript(env(next, "b3"));
    const result = assertResultLine(run);
    assert.equal(run.code, 0, run.output);
    assert.equal(result.baseCacheHit, false);
    assert.ok(baseBuilt(run));
  });

  it("a toolchain change makes a new base key and builds a new base", async () => {
    const next = await prepare({ "app/src/main.rs": 'fn main() { println!("v3"); }\n' }, toolchain2);
    assert.notEqual(next.baseKey, first.baseKey);
    const run = await runBuildScript(env(next, "b4", { FASTBUILD_TOOLCHAIN_IMAGE: toolchain2 }));
    const result = assertResultLine(run);
    assert.equal(run.code, 0, run.output);
    assert.equal(result.baseCacheHit, false);
    assert.ok(baseBuilt(run));
  });

  it("FASTBUILD_REBUILD_BASE=true rebuilds a base the registry already has", async () => {
    const next = await prepare({ "app/src/main.rs": 'fn main() { println!("rebuild"); }\n' });
    assert.equal(next.baseKey, first.baseKey);
    const run = await runBuildScript(env(next, "b4a", { FASTBUILD_REBUILD_BASE: "true" }));
    const result = assertResultLine(run);
    assert.equal(run.code, 0, run.output);
    assert.equal(result.baseCacheHit, false);
    assert.ok(baseBuilt(run));
  });

  it("an archive without the recipe builds the base from the whole tree", async () => {
    const next = await prepare(
      { "Cargo.lock": WORKSPACE["Cargo.lock"]!.replace("1.0.200", "1.0.202") },
      toolchain1,
      false,
    );
    const run = await runBuildScript(env(next, "b4b"));
    const result = assertResultLine(run);
    assert.equal(run.code, 0, run.output);
    assert.equal(result.baseCacheHit, false);
    assert.match(run.output, /building the base from the whole tree/);
  });

  it("an unchanged source digest skips the whole build and reports the existing image", async () => {
    const hitsBefore = files.hits.get(new URL(first.url).pathname + new URL(first.url).search) ?? 0;
    const run = await runBuildScript(env(first, "b5"));
    const result = assertResultLine(run);
    assert.equal(run.code, 0, run.output);
    assert.equal(result.skipped, true);
    assert.equal(result.digest, firstDigest);
    assert.equal(result.image, `${registry.host}/team/app:src-${first.digest.slice(7)}`);
    assert.equal(baseBuilt(run), false);
    assert.doesNotMatch(run.output, /STEP \d/);
    // Not even downloaded.
    assert.equal(files.hits.get(new URL(first.url).pathname + new URL(first.url).search) ?? 0, hitsBefore);
  });

  it("lets go of its output once it ends, even while a heartbeat is waiting (Run Command sees it finish)", async () => {
    // runBuildScript resolves on the pipes closing: a heartbeat child still holding them (here for
    // an hour) would keep the run command "Running" after the result line, holding the builder.
    const run = await runBuildScript(
      env(first, "b5b", {
        FASTBUILD_CALLBACK_URL: files.serve(Buffer.alloc(0)).replace("/blobs/", "/callback/"),
        FASTBUILD_CALLBACK_TOKEN: "test-token-0123456789",
        FASTBUILD_HEARTBEAT_SECONDS: "3600",
      }),
    );
    assert.equal(run.code, 0, run.output);
    assert.equal(assertResultLine(run).skipped, true);
  });

  it("a failing app build reports its exit code, the failing step and the log tail", async () => {
    const broken = await prepare({ "app/src/main.rs": "fn main() { COMPILE_ERROR }\n" });
    const run = await runBuildScript(env(broken, "b6"));
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.appBuild);
    assert.equal(result.status, "failed");
    assert.equal(result.exitReason, "app-build");
    assert.equal(result.failedStep, "app");
    assert.equal(result.stepExitCode, 7);
    assert.match(result.failedInstruction ?? "", /RUN/, run.output);
    assert.ok(result.logTail?.some((line) => line.includes("error[E0425]")));
    assert.equal(result.baseCacheHit, true);
    assert.equal(await manifestDigest("team/app", "b6"), undefined);
  });

  const hostile: Array<[string, Buffer, RegExp]> = [
    ["path traversal", makeTarGz([{ name: "../../evil", content: "x" }]), /path traversal/],
    ["absolute path", makeTarGz([{ name: "/etc/evil", content: "x" }]), /absolute path/],
    ["symlink escape", makeTarGz([{ name: "l", type: "symlink", linkname: "../../../etc" }]), /outside/],
    ["hardlink escape", makeTarGz([{ name: "h", type: "hardlink", linkname: "../x" }]), /path traversal/],
    ["device file", makeTarGz([{ name: "d", type: "chardev" }]), /device file/],
    ["gzip bomb", makeTarGz([{ name: "zeros", content: Buffer.alloc(32 << 20) }]), /more than 4194304 bytes/],
    [
      "too many files",
      makeTarGz(Array.from({ length: 250 }, (_, i) => ({ name: `f${i}`, content: "" }))),
      /more than 200 members/,
    ],
  ];
  for (const [name, archive, message] of hostile) {
    it(`refuses an archive with ${name} before building anything`, async () => {
      const p = { url: files.serve(archive), digest: sha256Digest(archive), baseKey: "f".repeat(64) };
      const run = await runBuildScript(env(p, `bad${counter++}`));
      const result = assertResultLine(run);
      assert.equal(run.code, EXIT_CODES.extract, run.output);
      assert.equal(result.exitReason, "extract");
      assert.match(result.message ?? "", /refused/);
      assert.match(result.message ?? "", message);
      assert.match(result.message ?? "", /Nothing was built/);
      assert.doesNotMatch(run.output, /STEP \d|fixture-/);
    });
  }

  it("bad input gets a usage error listing every problem, and nothing runs", async () => {
    const p = { url: "ftp://example.com/x", digest: "md5:abc", baseKey: "XYZ" };
    const requestsBefore = [...files.hits.values()].reduce((a, b) => a + b, 0);
    const run = await runBuildScript(env(p, "bad id!", { FASTBUILD_REBUILD_BASE: "maybe" }));
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.usage);
    assert.equal(result.exitReason, "usage");
    for (const name of ["BUILD_ID", "SOURCE_URL", "SOURCE_DIGEST", "BASE_KEY", "REBUILD_BASE"]) {
      assert.match(result.message ?? "", new RegExp(`FASTBUILD_${name} is invalid`));
    }
    assert.equal(
      [...files.hits.values()].reduce((a, b) => a + b, 0),
      requestsBefore,
    );
  });

  it("a wrong digest fails the download step", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("v9"); }\n' });
    const run = await runBuildScript(env({ ...p, digest: `sha256:${"0".repeat(64)}` }, "b7"));
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.download);
    assert.match(result.message ?? "", /does not match/);
  });
});
