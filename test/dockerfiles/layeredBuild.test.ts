/**
 * The real dockerfiles/build.sh with real images: buildah (vfs, chroot isolation) in the role of
 * the container CLI, Debian's docker-registry on loopback, source archives over HTTP. The fixture
 * Dockerfiles keep the real two-layer shape but run shell instead of cargo (no Rust image can be
 * pulled here); the base key comes from the real src/core/baseKey.ts.
 */
import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as tar from "tar";
import {
  computeBaseKey,
  KIT_DIR_IN_ARCHIVE,
  RECIPE_DIR_IN_ARCHIVE,
  writeDependencyRecipe,
} from "../../src/core/baseKey.js";
import { buildResultSchema, EXIT_CODES, RESULT_LINE_MAX_BYTES } from "../../src/core/buildResult.js";
import { LOCAL_DOCKERFILES, prepareLocalBuilder } from "@fast-build/local-cloud/builder";
import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";
import {
  BUILD_SCRIPT,
  makeTarGz,
  run as runCommand,
  runBuildScript,
  SAFE_EXTRACT,
  sha256Digest,
  startFileServer,
  type FileServer,
  type RunResult,
} from "./helpers.js";
import { hitsOf, PackStore, treeManifest, treeOfFolder } from "./sourcePlans.js";

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
let packStore: PackStore;

interface Prepared {
  url: string;
  digest: string;
  baseKey: string;
  /** The workspace the archive was made of. */
  root?: string;
}

/**
 * Writes the workspace (with changes), adds the recipe like the upload command, serves the tar.gz.
 * With `kit`, the Dockerfiles of that folder go in as `.fastbuild/kit/` (the key hashes its base).
 */
async function prepare(
  changes: Record<string, string> = {},
  toolchain = toolchain1,
  withRecipe = true,
  kit?: string,
): Promise<Prepared> {
  const root = join(scratch, `ws${counter++}`);
  for (const [path, content] of Object.entries({ ...WORKSPACE, ...changes })) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  // A kit of links (the builder refuses it) has no bytes of its own to hash.
  const dockerfileBase = await readFile(join(kit ?? FIXTURE_DOCKERFILES, "Dockerfile.base")).catch(() => "");
  const { key, recipe } = await computeBaseKey(root, { toolchain, dockerfileBase });
  if (withRecipe) await writeDependencyRecipe(recipe, join(root, ...RECIPE_DIR_IN_ARCHIVE.split("/")));
  if (kit)
    await cp(kit, join(root, ...KIT_DIR_IN_ARCHIVE.split("/")), { recursive: true, verbatimSymlinks: true });
  const entries = (await readdir(root)).sort();
  const chunks: Buffer[] = [];
  for await (const chunk of tar.c({ gzip: true, cwd: root, portable: true, noMtime: true }, entries)) {
    chunks.push(chunk);
  }
  const archive = Buffer.concat(chunks);
  return { url: files.serve(archive), digest: sha256Digest(archive), baseKey: key, root };
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

/**
 * The same workspace as content-addressed source: its manifest's plan served (packs through the
 * test's store, which keeps what earlier plan builds uploaded), the archive's URL left out.
 */
async function planEnv(p: Prepared, buildId: string, extra: Record<string, string> = {}) {
  const tree = treeManifest(await treeOfFolder(p.root!));
  const planned = packStore.plan(tree.manifest, tree.contents);
  const { FASTBUILD_SOURCE_URL: _archive, ...rest } = env(p, buildId);
  return {
    planned,
    vars: {
      ...rest,
      FASTBUILD_SOURCE_PLAN_URL: files.serve(Buffer.from(JSON.stringify(planned.plan))),
      FASTBUILD_SOURCE_DIGEST: planned.digest,
      ...extra,
    },
  };
}

/** The main.rs a build kept (FASTBUILD_KEEP_WORKSPACE=true) in its workspace. */
const builtSource = (buildId: string) =>
  readFile(join(machineEnv.FASTBUILD_WORK_ROOT!, "builds", buildId, "src", "app", "src", "main.rs"), "utf8");

/** The machine's environment without its Dockerfiles override: the archive's kit must serve. */
function withoutOverride(vars: Record<string, string>): Record<string, string> {
  const { FASTBUILD_DOCKERFILES_DIR: _override, ...rest } = vars;
  return rest;
}

/** A copy of the stand-in Dockerfiles with `edit` applied to each, as a kit folder. */
async function kitFolder(edit: (name: string, text: string) => string): Promise<string> {
  const dir = join(scratch, `kit${counter++}`);
  await mkdir(dir);
  for (const name of ["Dockerfile.base", "Dockerfile.app"]) {
    await writeFile(join(dir, name), edit(name, await readFile(join(FIXTURE_DOCKERFILES, name), "utf8")));
  }
  return dir;
}

/** Runs the script as Run Command does: its text through `bash -c`, away from any kit folder. */
function runAsRunCommand(vars: Record<string, string>): Promise<RunResult> {
  return readFile(BUILD_SCRIPT, "utf8").then((text) => runCommand("bash", ["-c", text], vars));
}

const extractorParameter = async () => (await readFile(SAFE_EXTRACT)).toString("base64");

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
    packStore = new PackStore(files);
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

  it("a failing app build reports its exit code and failing step in a short line; the callback gets the log tail", async () => {
    // A compiler that says a lot before failing, as rustc does: 30 long error lines.
    const broken = await prepare({
      "app/src/main.rs": "fn main() { COMPILE_ERROR }\n",
      "local-compile.sh": WORKSPACE["local-compile.sh"]!.replace(
        "set -eu\n",
        `set -eu\nfor i in $(seq 1 30); do echo "error[E0425]: cannot find value $i ${"x".repeat(200)}" >&2; done\n`,
      ),
    });
    const callback = files.serve(Buffer.alloc(0)).replace("/blobs/", "/callback/");
    const run = await runBuildScript(
      env(broken, "b6", {
        FASTBUILD_CALLBACK_URL: callback,
        FASTBUILD_CALLBACK_TOKEN: "test-token-0123456789",
      }),
    );
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.appBuild);
    assert.equal(result.status, "failed");
    assert.equal(result.exitReason, "app-build");
    assert.equal(result.failedStep, "app");
    assert.equal(result.stepExitCode, 7);
    assert.match(result.failedInstruction ?? "", /RUN/, run.output);
    assert.equal(result.baseCacheHit, true);
    assert.equal(await manifestDigest("team/app", "b6"), undefined);
    // The printed line fits the instance view's 4 KB many times over; the log keeps the details.
    const line = run.output.trimEnd().split("\n").at(-1)!;
    assert.ok(Buffer.byteLength(line) < RESULT_LINE_MAX_BYTES, `${Buffer.byteLength(line)} bytes`);
    assert.equal(result.logTail, undefined);
    assert.ok(run.output.includes("error[E0425]: cannot find value 30"));
    const posted = buildResultSchema.parse(
      JSON.parse(files.posts.filter((p) => callback.endsWith(p.path)).at(-1)!.body),
    );
    assert.equal(posted.exitCode, EXIT_CODES.appBuild);
    assert.ok(posted.logTail?.some((l) => l.includes("error[E0425]: cannot find value 30")));
    assert.ok((posted.logTail?.length ?? 0) <= 40);
  });

  it("keeps the result line under 1 KB whatever the message", async () => {
    // Every usage problem is listed in the message: here a long list.
    const vars: Record<string, string> = { FASTBUILD_BUILD_ID: "long-message" };
    for (const name of [
      "SOURCE_URL",
      "SOURCE_DIGEST",
      "REGISTRY",
      "IMAGE_REPOSITORY",
      "BASE_KEY",
      "BINARY_NAME",
    ]) {
      vars[`FASTBUILD_${name}`] = `!${"bad".repeat(30)}`;
    }
    const run = await runBuildScript(vars);
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.usage);
    assert.ok(Buffer.byteLength(run.output.trimEnd().split("\n").at(-1)!) < RESULT_LINE_MAX_BYTES);
    assert.match(result.message ?? "", /^nothing was run: FASTBUILD_SOURCE_URL is invalid.*\.\.\.$/);
    // The whole list is in the log.
    assert.match(run.output, /invalid input: FASTBUILD_BINARY_NAME is invalid/);
  });

  it("builds the base from the archive's own Dockerfiles (.fastbuild/kit/) when the machine has none", async () => {
    const kit = await kitFolder((name, text) =>
      name === "Dockerfile.base"
        ? text.replace("fixture-base: compiling", "fixture-base (from the archive): compiling")
        : text,
    );
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("kit"); }\n' }, toolchain1, true, kit);
    assert.notEqual(p.baseKey, first.baseKey, "the key covers the archive's Dockerfile.base");
    const run = await runBuildScript(withoutOverride(env(p, "kit1")));
    const result = assertResultLine(run);
    assert.equal(run.code, 0, run.output);
    assert.equal(result.baseCacheHit, false);
    assert.match(run.output, /fixture-base \(from the archive\): compiling dependencies/);
    assert.match(run.output, /using the archive's Dockerfiles/);
  });

  it("FASTBUILD_DOCKERFILES_DIR on the machine wins over the archive's kit", async () => {
    const kit = await kitFolder((name, text) => (name === "Dockerfile.app" ? `${text}RUN exit 99\n` : text));
    const p = await prepare(
      { "app/src/main.rs": 'fn main() { println!("override"); }\n' },
      toolchain1,
      true,
      kit,
    );
    const run = await runBuildScript(env(p, "kit2"));
    assert.equal(run.code, 0, run.output);
    assert.match(run.output, /using the builder's Dockerfiles from .* \(FASTBUILD_DOCKERFILES_DIR\)/);
  });

  it("refuses an archive without a build kit when the machine has no Dockerfiles, saying what to do", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("no kit"); }\n' });
    const run = await runBuildScript(withoutOverride(env(p, "kit3")));
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.kit, run.output);
    assert.equal(result.exitReason, "kit");
    assert.match(result.message ?? "", /\.fastbuild\/kit\/Dockerfile\.base is missing/);
    assert.match(result.message ?? "", /upload with a current fast-build.*or set FASTBUILD_DOCKERFILES_DIR/);
    assert.doesNotMatch(run.output, /STEP \d|fixture-/);
  });

  it("refuses a build kit whose Dockerfiles are links (even links inside the tree)", async () => {
    const kit = join(scratch, `kit${counter++}`);
    await mkdir(kit);
    await writeFile(join(kit, "Dockerfile.app"), await readFile(join(FIXTURE_DOCKERFILES, "Dockerfile.app")));
    await symlink("../../Cargo.toml", join(kit, "Dockerfile.base"));
    const p = await prepare(
      { "app/src/main.rs": 'fn main() { println!("linked kit"); }\n' },
      toolchain1,
      true,
      kit,
    );
    const run = await runBuildScript(withoutOverride(env(p, "kit4")));
    assert.equal(run.code, EXIT_CODES.kit, run.output);
    assert.match(assertResultLine(run).message ?? "", /Dockerfile\.base is missing or not a plain file/);
  });

  /** The project's own pair (fast-build.toml [docker]), in `docker/` of the tree, and a kit folder of it. */
  async function projectDockerfiles(): Promise<{ files: Record<string, string>; kit: string }> {
    const base = (await readFile(join(FIXTURE_DOCKERFILES, "Dockerfile.base"), "utf8")).replace(
      "fixture-base: compiling",
      "project-base: compiling",
    );
    const app =
      "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG PORT=1\nARG BINARY_NAME=none\nWORKDIR /src\nCOPY . .\n" +
      'RUN echo "project-app: port $PORT, binary $BINARY_NAME"\nEXPOSE ${PORT}\n';
    const kit = join(scratch, `kit${counter++}`);
    await mkdir(kit);
    await writeFile(join(kit, "Dockerfile.base"), base);
    await writeFile(join(kit, "Dockerfile.app"), app);
    return { files: { "docker/Dockerfile.base": base, "docker/Dockerfile.app": app }, kit };
  }

  it("builds with the project's own Dockerfiles from the source, over the machine's and the archive's, needing no binary", async () => {
    const own = await projectDockerfiles();
    // The key covers the project's Dockerfile.base (its bytes, here also the archive's kit).
    const p = await prepare(
      { ...own.files, "app/src/main.rs": 'fn main() { println!("own"); }\n' },
      toolchain1,
      true,
      own.kit,
    );
    assert.notEqual(p.baseKey, first.baseKey);
    const { FASTBUILD_BINARY_NAME: _none, ...vars } = env(p, "own1", {
      FASTBUILD_DOCKERFILE_BASE: "docker/Dockerfile.base",
      FASTBUILD_DOCKERFILE_APP: "docker/Dockerfile.app",
      FASTBUILD_PORT: "9090",
    });
    const run = await runBuildScript(vars);
    const result = assertResultLine(run);
    assert.equal(run.code, 0, run.output);
    assert.equal(result.baseCacheHit, false);
    assert.match(
      run.output,
      /using the project's own Dockerfiles: docker\/Dockerfile\.base, docker\/Dockerfile\.app/,
    );
    assert.match(run.output, /project-base: compiling dependencies/);
    assert.match(run.output, /project-app: port 9090, binary none/);
    assert.doesNotMatch(run.output, /fixture-app/);
  });

  it("gives the project's Dockerfile.base an empty context when no key files come, and the toolchain as TOOLCHAIN_IMAGE", async () => {
    const own = await projectDockerfiles();
    const base =
      'ARG TOOLCHAIN_IMAGE\nFROM ${TOOLCHAIN_IMAGE}\nWORKDIR /ctx\nCOPY . .\nRUN echo "project-base context: $(ls -A | wc -l) entries"\n';
    const p = await prepare(
      {
        ...own.files,
        "docker/Dockerfile.base": base,
        "app/src/main.rs": 'fn main() { println!("own-empty"); }\n',
      },
      toolchain2,
      false,
    );
    const run = await runBuildScript(
      env(p, "own5", {
        FASTBUILD_DOCKERFILE_BASE: "docker/Dockerfile.base",
        FASTBUILD_DOCKERFILE_APP: "docker/Dockerfile.app",
        FASTBUILD_TOOLCHAIN_IMAGE: toolchain2,
        FASTBUILD_REBUILD_BASE: "true",
      }),
    );
    assert.equal(run.code, 0, run.output);
    assert.match(run.output, /the base's build context is empty/);
    assert.match(run.output, /project-base context: 0 entries/);
  });

  it("refuses a project Dockerfile that is missing from the source or a link, before building", async () => {
    const own = await projectDockerfiles();
    const p = await prepare({ ...own.files, "app/src/main.rs": 'fn main() { println!("own2"); }\n' });
    const missing = await runBuildScript(
      env(p, "own2", {
        FASTBUILD_DOCKERFILE_BASE: "docker/Dockerfile.nope",
        FASTBUILD_DOCKERFILE_APP: "docker/Dockerfile.app",
      }),
    );
    assert.equal(missing.code, EXIT_CODES.kit, missing.output);
    assert.match(
      assertResultLine(missing).message ?? "",
      /docker\/Dockerfile\.nope \(FASTBUILD_DOCKERFILE_BASE\) is missing from the source or not a plain file.*fast-build\.toml/,
    );
    assert.doesNotMatch(missing.output, /STEP \d|fixture-|project-/);

    const q = await prepare({ ...own.files, "app/src/main.rs": 'fn main() { println!("own3"); }\n' });
    const root = q.root!;
    await rm(join(root, "docker", "Dockerfile.app"));
    await symlink("../Cargo.toml", join(root, "docker", "Dockerfile.app"));
    const entries = (await readdir(root)).sort();
    const chunks: Buffer[] = [];
    for await (const chunk of tar.c({ gzip: true, cwd: root, portable: true, noMtime: true }, entries))
      chunks.push(chunk);
    const archive = Buffer.concat(chunks);
    const run = await runBuildScript(
      env({ ...q, url: files.serve(archive), digest: sha256Digest(archive) }, "own3", {
        FASTBUILD_DOCKERFILE_BASE: "docker/Dockerfile.base",
        FASTBUILD_DOCKERFILE_APP: "docker/Dockerfile.app",
      }),
    );
    assert.equal(run.code, EXIT_CODES.kit, run.output);
    assert.match(
      assertResultLine(run).message ?? "",
      /docker\/Dockerfile\.app \(FASTBUILD_DOCKERFILE_APP\) is missing from the source or not a plain file/,
    );
  });

  it("refuses half a pair of project Dockerfiles, and the built-in ones without a binary, listing both", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("half"); }\n' });
    const { FASTBUILD_BINARY_NAME: _none, ...vars } = env(p, "own4", {
      FASTBUILD_DOCKERFILE_BASE: "Dockerfile.base",
    });
    const run = await runBuildScript(vars);
    assert.equal(run.code, EXIT_CODES.usage, run.output);
    const message = assertResultLine(run).message ?? "";
    assert.match(
      message,
      /FASTBUILD_DOCKERFILE_APP is not set: the project's own Dockerfiles come as a pair/,
    );
    assert.match(message, /FASTBUILD_BINARY_NAME is not set/);
  });

  it("runs as Run Command does (script text, no folder): the extractor comes as a parameter", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("run command"); }\n' });
    const run = await runAsRunCommand(env(p, "rc1", { FASTBUILD_EXTRACTOR_B64: await extractorParameter() }));
    assert.equal(run.code, 0, run.output);
    assert.equal(assertResultLine(run).status, "succeeded");
  });

  it("refuses to run without an extractor, or with one that is not base64, before downloading", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("no extractor"); }\n' });
    const hits = () => files.hits.get(new URL(p.url).pathname + new URL(p.url).search) ?? 0;
    const missing = await runAsRunCommand(env(p, "rc2"));
    assert.equal(missing.code, EXIT_CODES.usage, missing.output);
    assert.match(assertResultLine(missing).message ?? "", /FASTBUILD_EXTRACTOR_B64 is not set/);
    const garbled = await runAsRunCommand(env(p, "rc3", { FASTBUILD_EXTRACTOR_B64: "not base64!" }));
    assert.equal(garbled.code, EXIT_CODES.usage, garbled.output);
    assert.match(assertResultLine(garbled).message ?? "", /FASTBUILD_EXTRACTOR_B64 is invalid/);
    assert.equal(hits(), 0);
  });

  it("waits for the builder's setup (step setup in the log and the heartbeats), then builds", async () => {
    const marker = join(scratch, `ready${counter++}`);
    const callback = files.serve(Buffer.alloc(0)).replace("/blobs/", "/callback/");
    const ready = setTimeout(() => void writeFile(marker, ""), 2500);
    const run = await runBuildScript(
      env(first, "ready1", {
        FASTBUILD_READY_MARKER: marker,
        FASTBUILD_CALLBACK_URL: callback,
        FASTBUILD_CALLBACK_TOKEN: "test-token-0123456789",
        FASTBUILD_HEARTBEAT_SECONDS: "1",
      }),
    );
    clearTimeout(ready);
    assert.equal(run.code, 0, run.output);
    assert.equal(assertResultLine(run).skipped, true);
    assert.match(run.output, /fastbuild\[setup\] waiting for the builder's setup \(cloud-init\) to finish/);
    assert.match(run.output, /fastbuild\[setup\] the builder is set up/);
    const steps = files.posts
      .filter((p) => callback.endsWith(p.path) && p.body.includes('"heartbeat"'))
      .map((p) => (JSON.parse(p.body) as { step: string }).step);
    assert.ok(steps.includes("setup"), JSON.stringify(steps));
  });

  it("fails with exit 14 and says where to look when the builder's setup never finishes", async () => {
    const run = await runBuildScript(
      env(first, "ready2", {
        FASTBUILD_READY_MARKER: join(scratch, "never-ready"),
        FASTBUILD_READY_TIMEOUT_SECONDS: "1",
      }),
    );
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.notReady, run.output);
    assert.equal(result.exitReason, "not-ready");
    assert.equal(result.failedStep, "setup");
    assert.match(
      result.message ?? "",
      /setup did not finish within 1 s .*never-ready is missing.*cloud-init-output\.log/,
    );
  });

  it("still ends with this build's result line when the builder is not set up enough to have python3", async () => {
    // What a builder whose cloud-init is still running looks like: every tool but python3.
    const bin = join(scratch, `bin${counter++}`);
    await mkdir(bin);
    for (const dir of ["/usr/bin", "/bin"]) {
      for (const name of await readdir(dir)) {
        if (!name.startsWith("python"))
          await symlink(join(dir, name), join(bin, name)).catch(() => undefined);
      }
    }
    const run = await runBuildScript({
      ...env(first, "ready3", {
        FASTBUILD_READY_MARKER: join(scratch, "never-ready"),
        FASTBUILD_READY_TIMEOUT_SECONDS: "0",
      }),
      PATH: bin,
    });
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.notReady, run.output);
    assert.equal(result.buildId, "ready3");
    assert.equal(result.failedStep, "setup");
    assert.match(result.message ?? "", /setup did not finish within 0 s/);
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
    // A long chain was once a RecursionError traceback and "see the log" as the only reason.
    [
      "a chain of 150 symlinks",
      makeTarGz([
        { name: "target", content: "x" },
        ...Array.from({ length: 150 }, (_, i) => ({
          name: `l${i}`,
          type: "symlink" as const,
          linkname: i === 149 ? "target" : `l${i + 1}`,
        })),
      ]),
      /link-chain: symlink 'l0' goes through more than 40 links/,
    ],
    [
      "a GNU long-name header claiming 1 GiB",
      makeTarGz([{ name: "././@LongLink", type: "longname", size: 1 << 30, content: Buffer.alloc(1 << 20) }]),
      /header-too-large: a GNU long name header of 1073741824 bytes/,
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

  it("bad input gets a usage error listing every problem (log and callback), and nothing runs", async () => {
    const p = { url: "ftp://example.com/x", digest: "md5:abc", baseKey: "XYZ" };
    const callback = files.serve(Buffer.alloc(0)).replace("/blobs/", "/callback/");
    const requestsBefore = [...files.hits.values()].reduce((a, b) => a + b, 0);
    const run = await runBuildScript(
      env(p, "bad id!", {
        FASTBUILD_REBUILD_BASE: "maybe",
        FASTBUILD_CALLBACK_URL: callback,
        FASTBUILD_CALLBACK_TOKEN: "test-token-0123456789",
      }),
    );
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.usage);
    assert.equal(result.exitReason, "usage");
    assert.match(result.message ?? "", /^nothing was run: FASTBUILD_BUILD_ID is invalid/);
    const posted = buildResultSchema.parse(
      JSON.parse(files.posts.filter((post) => callback.endsWith(post.path)).at(-1)!.body),
    );
    for (const name of ["BUILD_ID", "SOURCE_URL", "SOURCE_DIGEST", "BASE_KEY", "REBUILD_BASE"]) {
      assert.match(run.output, new RegExp(`invalid input: FASTBUILD_${name} is invalid`));
      assert.match(posted.message ?? "", new RegExp(`FASTBUILD_${name} is invalid`));
    }
    assert.equal(
      [...files.hits.values()].reduce((a, b) => a + b, 0),
      requestsBefore,
    );
  });

  it("downloads a URL with {} and [] literally (curl's URL globbing is off)", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("globs"); }\n' });
    // The same archive at a URL curl would expand as globs: [1-2] and {a,b} name other URLs.
    const archive = Buffer.from(await (await fetch(p.url)).arrayBuffer());
    const literal = files.serve(archive, "sig=[1-2]{a,b}");
    const run = await runBuildScript(env({ ...p, url: literal }, "b-globs"));
    assertResultLine(run);
    assert.equal(run.code, 0, run.output);
  });

  it("a wrong digest fails the download step", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("v9"); }\n' });
    const run = await runBuildScript(env({ ...p, digest: `sha256:${"0".repeat(64)}` }, "b7"));
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.download);
    assert.match(result.message ?? "", /does not match/);
  });

  it("builds from a source plan (content-addressed): fetches the packs, then the same build steps", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("plan 1"); }\n' });
    const { vars, planned } = await planEnv(p, "plan1", { FASTBUILD_KEEP_WORKSPACE: "true" });
    const run = await runBuildScript(vars);
    const result = assertResultLine(run);
    assert.equal(run.code, 0, run.output);
    assert.equal(result.status, "succeeded");
    assert.equal(result.baseCacheHit, true);
    assert.match(run.output, /downloaded the source plan \(\d+ bytes\)/);
    assert.match(
      run.output,
      /source: \d+ files, 0 symlinks, \d+ contents from the builder's cache, \d+ fetched \(1 pack/,
    );
    assert.equal(await builtSource("plan1"), 'fn main() { println!("plan 1"); }\n');
    assert.deepEqual(
      planned.newPacks.map((u) => hitsOf(files, u)),
      [1],
    );
    // The source tag is the manifest's digest: an unchanged tree skips the next build.
    assert.equal(await manifestDigest("team/app", `src-${planned.digest.slice(7)}`), result.digest);
  });

  it("a plan build after a change fetches only the new contents; one after the cache was lost fetches all", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("plan 2"); }\n' });
    const changed = await planEnv(p, "plan2", { FASTBUILD_KEEP_WORKSPACE: "true" });
    const run = await runBuildScript(changed.vars);
    assert.equal(run.code, 0, run.output);
    assert.match(
      run.output,
      /source: \d+ files, 0 symlinks, \d+ contents from the builder's cache, 1 fetched \(1 pack/,
    );
    assert.equal(await builtSource("plan2"), 'fn main() { println!("plan 2"); }\n');
    await rm(join(machineEnv.FASTBUILD_WORK_ROOT!, "content"), { recursive: true, force: true });
    const q = await prepare({ "app/src/main.rs": 'fn main() { println!("plan 3"); }\n' });
    const lost = await planEnv(q, "plan3", { FASTBUILD_KEEP_WORKSPACE: "true" });
    const again = await runBuildScript(lost.vars);
    assert.equal(again.code, 0, again.output);
    assert.match(
      again.output,
      /source: (\d+) files, 0 symlinks, 0 contents from the builder's cache, \d+ fetched/,
    );
    assert.equal(await builtSource("plan3"), 'fn main() { println!("plan 3"); }\n');
  });

  it("runs a plan build as Run Command does (the extractor as a parameter)", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("plan rc"); }\n' });
    const { vars } = await planEnv(p, "plan-rc", { FASTBUILD_EXTRACTOR_B64: await extractorParameter() });
    const run = await runAsRunCommand(vars);
    assert.equal(run.code, 0, run.output);
  });

  it("refuses both an archive and a plan URL, or neither, before downloading anything", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("both"); }\n' });
    const { vars } = await planEnv(p, "plan-both");
    const requests = () => [...files.hits.values()].reduce((a, b) => a + b, 0);
    const before = requests();
    const both = await runBuildScript({ ...vars, FASTBUILD_SOURCE_URL: p.url });
    assert.equal(both.code, EXIT_CODES.usage, both.output);
    assert.match(
      assertResultLine(both).message ?? "",
      /FASTBUILD_SOURCE_URL and FASTBUILD_SOURCE_PLAN_URL are both set: give the archive's URL or the source plan's, not both/,
    );
    const { FASTBUILD_SOURCE_PLAN_URL: _plan, ...none } = vars;
    const neither = await runBuildScript(none);
    assert.equal(neither.code, EXIT_CODES.usage, neither.output);
    assert.match(
      assertResultLine(neither).message ?? "",
      /FASTBUILD_SOURCE_URL is not set: .*or FASTBUILD_SOURCE_PLAN_URL/,
    );
    const remote = await runBuildScript({
      ...vars,
      FASTBUILD_SOURCE_PLAN_URL: "http://example.com/plan.json",
    });
    assert.equal(remote.code, EXIT_CODES.usage, remote.output);
    assert.match(assertResultLine(remote).message ?? "", /FASTBUILD_SOURCE_PLAN_URL must use https/);
    const spaced = await runBuildScript({ ...vars, FASTBUILD_SOURCE_PLAN_URL: "https://example.com/a b" });
    assert.match(assertResultLine(spaced).message ?? "", /FASTBUILD_SOURCE_PLAN_URL is invalid/);
    assert.equal(requests(), before);
  });

  it("a refused plan (its manifest does not match the digest) fails the extract step; nothing is built", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("mismatch"); }\n' });
    const { vars } = await planEnv(p, "plan-bad", { FASTBUILD_SOURCE_DIGEST: `sha256:${"e".repeat(64)}` });
    const run = await runBuildScript(vars);
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.extract, run.output);
    assert.equal(result.exitReason, "extract");
    assert.match(result.message ?? "", /the source plan was refused: digest-mismatch: .*Nothing was built/);
    assert.doesNotMatch(run.output, /STEP \d|fixture-/);
  });

  it("a pack the store will not serve fails as a download, with the extractor's reason", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("gone"); }\n' });
    const { vars, planned } = await planEnv(p, "plan-gone");
    const plan = {
      ...planned.plan,
      packs: planned.plan.packs.map((pack) => ({ ...pack, url: pack.url.replace("/blobs/", "/expired/") })),
    };
    const run = await runBuildScript({
      ...vars,
      FASTBUILD_SOURCE_PLAN_URL: files.serve(Buffer.from(JSON.stringify(plan))),
    });
    const result = assertResultLine(run);
    assert.equal(run.code, EXIT_CODES.download, run.output);
    assert.equal(result.exitReason, "download");
    assert.match(
      result.message ?? "",
      /could not fetch the source's contents: could not fetch pack \d+ of the plan \(HTTP 404\)/,
    );
  });

  it("a source plan that cannot be downloaded fails the download step", async () => {
    const p = await prepare({ "app/src/main.rs": 'fn main() { println!("no plan"); }\n' });
    const { vars } = await planEnv(p, "plan-missing");
    const run = await runBuildScript({
      ...vars,
      FASTBUILD_SOURCE_PLAN_URL: vars.FASTBUILD_SOURCE_PLAN_URL.replace("/blobs/", "/none/"),
    });
    assert.equal(run.code, EXIT_CODES.download, run.output);
    assert.match(assertResultLine(run).message ?? "", /could not download the source plan \(curl exit 22\)/);
  });
});
