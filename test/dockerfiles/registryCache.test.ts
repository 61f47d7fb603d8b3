/**
 * The shared registry cache with real builds: dockerfiles/build.sh run as two builders, each with
 * its own buildah storage and work folder (no local layer is shared), and one registry (Debian's
 * docker-registry). The local builder's `docker` is the shim that gives buildah docker's
 * `--cache-from/--cache-to type=registry` (packages/local-cloud/src/builder/docker-on-buildah.sh).
 *
 * The project brings its own Dockerfiles (fast-build.toml [docker]) with a step before its
 * sources are copied in, so a new commit has a layer another builder can give it: each step says
 * in the log when it runs, so a step taken from the cache is one whose line is missing.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as tar from "tar";
import { DOCKER_ON_BUILDAH, prepareLocalBuilder, type LocalBuilder } from "@fast-build/local-cloud/builder";
import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";
import { registryCacheRefs } from "../../src/core/rules.js";
import {
  run as runCommand,
  runBuildScript,
  sha256Digest,
  startFileServer,
  type FileServer,
  type RunResult,
} from "./helpers.js";

const DOCKERFILE_BASE = `ARG TOOLCHAIN_IMAGE
FROM \${TOOLCHAIN_IMAGE}
RUN echo "project-x: installing the toolchain" && mkdir -p /opt/tools && echo tools > /opt/tools/list
`;

const DOCKERFILE_APP = `ARG BASE_IMAGE
ARG RUNTIME_IMAGE
FROM \${BASE_IMAGE} AS build
RUN echo "project-x: fetching the app's dependencies" && mkdir -p /deps && echo deps > /deps/list
COPY . /src
RUN echo "project-x: compiling the app" && mkdir -p /out && cat /src/main.txt /deps/list > /out/app
FROM \${RUNTIME_IMAGE}
COPY --from=build /out/app /app
`;

const DEPS_STEP = "project-x: fetching the app's dependencies";
const COMPILE_STEP = "project-x: compiling the app";
const TOOLCHAIN_STEP = "project-x: installing the toolchain";
/** A build's output line for a step that ran (not the Dockerfile's own RUN line, which echoes it in quotes). */
const ran = (run: RunResult, step: string) => run.output.split("\n").some((line) => line === step);

let scratch: string;
let registry: LocalRegistry;
let files: FileServer;
let builder1: LocalBuilder;
let builder2: LocalBuilder;
let counter = 0;

/** Project X's source at one commit (main.txt differs), served as the upload command's archive. */
async function source(main: string) {
  const root = join(scratch, `src${counter++}`);
  const tree = {
    "docker/Dockerfile.base": DOCKERFILE_BASE,
    "docker/Dockerfile.app": DOCKERFILE_APP,
    "main.txt": main,
  };
  for (const [path, content] of Object.entries(tree)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  const chunks: Buffer[] = [];
  const entries = (await readdir(root)).sort();
  for await (const chunk of tar.c({ gzip: true, cwd: root, portable: true, noMtime: true }, entries)) {
    chunks.push(chunk);
  }
  const archive = Buffer.concat(chunks);
  return { url: files.serve(archive), digest: sha256Digest(archive) };
}

/** One build of `repository` on `builder` (builder 1's toolchain and runtime images, so both build alike). */
async function build(
  builder: LocalBuilder,
  buildId: string,
  src: { url: string; digest: string },
  extra: Record<string, string> = {},
): Promise<RunResult> {
  return runBuildScript({
    ...builder.env,
    FASTBUILD_TOOLCHAIN_IMAGE: builder1.images.toolchain,
    FASTBUILD_RUNTIME_IMAGE: builder1.images.runtime,
    FASTBUILD_BUILD_ID: buildId,
    FASTBUILD_SOURCE_URL: src.url,
    FASTBUILD_SOURCE_DIGEST: src.digest,
    FASTBUILD_REGISTRY: registry.host,
    FASTBUILD_IMAGE_REPOSITORY: "team/x",
    FASTBUILD_BASE_KEY: "1111222233334444",
    FASTBUILD_DOCKERFILE_BASE: "docker/Dockerfile.base",
    FASTBUILD_DOCKERFILE_APP: "docker/Dockerfile.app",
    FASTBUILD_EXTRACT_MAX_BYTES: String(1 << 20),
    FASTBUILD_EXTRACT_MAX_FILES: "50",
    ...extra,
  });
}

async function tags(repository: string): Promise<string[]> {
  const response = await fetch(`${registry.url}/v2/${repository}/tags/list`);
  if (response.status === 404) return [];
  return ((await response.json()) as { tags: string[] | null }).tags ?? [];
}

describe("the registry cache every builder shares (two builders, one registry, real builds)", () => {
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "fb-regcache-"));
    registry = await startRegistry({ storageDir: join(scratch, "registry") });
    files = await startFileServer();
    builder1 = await prepareLocalBuilder(join(scratch, "builder1"), registry, {
      toolchain: ["fixtures/toolchain:1"],
      runtime: "fixtures/runtime:1",
    });
    // Its own stand-in images under other tags: builder 1's stay as they are (both build FROM them).
    builder2 = await prepareLocalBuilder(join(scratch, "builder2"), registry, {
      toolchain: ["fixtures/b2-toolchain:1"],
      runtime: "fixtures/b2-runtime:1",
    });
  });

  after(async () => {
    await files?.stop();
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  it("builder 2's first build of a project reuses the layers builder 1 pushed (its dependency step does not run)", async () => {
    const first = await build(builder1, "x-1", await source("commit one\n"), { FASTBUILD_BRANCH: "main" });
    assert.equal(first.code, 0, first.output);
    assert.ok(ran(first, TOOLCHAIN_STEP) && ran(first, DEPS_STEP) && ran(first, COMPILE_STEP), first.output);
    assert.match(first.output, /cache: reused 0 layers from /);
    assert.ok((await tags("team/x-cache")).length > 0, "builder 1 pushed no cache");

    // A new commit, first seen by builder 2, on a new branch: its base is in the registry, and the
    // app stage's step before the sources comes from builder 1's cache.
    const second = await build(builder2, "x-2", await source("commit two\n"), {
      FASTBUILD_BRANCH: "feature/Two",
    });
    assert.equal(second.code, 0, second.output);
    assert.equal(second.result?.baseCacheHit, true);
    const refs = registryCacheRefs({
      registry: registry.host,
      repository: "team/x",
      baseKey: "1111222233334444",
      branch: "feature/Two",
    });
    assert.ok(
      second.output.includes(`app reads ${refs.app.from.join(" ")}, writes ${refs.app.to}`),
      second.output,
    );
    assert.equal(ran(second, DEPS_STEP), false, `the dependency step ran again:\n${second.output}`);
    assert.ok(ran(second, COMPILE_STEP), "the sources changed, so the app compiles");
    const reused = /cache: reused (\d+) layers from (\S+)$/m.exec(second.output);
    assert.ok(reused, second.output);
    assert.ok(Number(reused[1]) >= 1);
    assert.equal(reused[2], `${registry.host}/team/x-cache`);
    assert.doesNotMatch(second.output, /layers from this builder's own storage/);
  });

  it("a base built for a new key on builder 2 still rebuilds nothing builder 1's cache holds for the same steps", async () => {
    // buildah's cache is content-addressed (one repository, a tag per layer key), so the toolchain
    // step of a new base key is found whatever the tag; BuildKit reads base-<key> only (see README).
    const run = await build(builder2, "x-3", await source("commit three\n"), {
      FASTBUILD_BASE_KEY: "5555666677778888",
    });
    assert.equal(run.code, 0, run.output);
    assert.equal(run.result?.baseCacheHit, false);
    assert.equal(ran(run, TOOLCHAIN_STEP), false, run.output);
    assert.match(run.output, /cache: reused \d+ layers from /);
  });

  it("a cache the registry refuses to store slows the build, never fails it", async () => {
    // A file where the registry keeps team/y-cache: every push into it fails (HTTP 500).
    const repositories = join(
      scratch,
      "registry",
      "data",
      "docker",
      "registry",
      "v2",
      "repositories",
      "team",
    );
    await mkdir(repositories, { recursive: true });
    await writeFile(join(repositories, "y-cache"), "not a folder");
    const run = await build(builder1, "y-1", await source("commit y\n"), {
      FASTBUILD_IMAGE_REPOSITORY: "team/y",
    });
    assert.equal(run.code, 0, run.output);
    assert.match(
      run.output,
      /cache: the registry cache could not be used \(failed pushing cache\): building again without it/,
    );
    assert.equal(run.result?.status, "succeeded");
  });

  it("registryCache: false (FASTBUILD_REGISTRY_CACHE=false) builds without reading or writing the cache", async () => {
    const run = await build(builder2, "z-1", await source("commit z\n"), {
      FASTBUILD_IMAGE_REPOSITORY: "team/z",
      FASTBUILD_REGISTRY_CACHE: "false",
    });
    assert.equal(run.code, 0, run.output);
    assert.match(run.output, /cache: the registry cache is off/);
    assert.deepEqual(await tags("team/z-cache"), []);
  });
});

describe("the local builder's docker (docker-on-buildah.sh) refuses what it cannot map", () => {
  for (const [what, args, message] of [
    [
      "a cache type other than registry",
      ["build", "--cache-from", "type=local,src=/tmp/x", "."],
      /only registry caches are supported here, not type=local/,
    ],
    [
      "a registry cache without ref=",
      ["build", "--cache-to", "type=registry,mode=max", "."],
      /names no ref=/,
    ],
    ["a cache flag without its value", ["build", "--cache-from"], /--cache-from needs a value/],
    ["no command at all", ["--storage-driver", "vfs"], /give a command/],
  ] as const) {
    it(`${what}: exit 2 with what to do, and buildah never runs`, async () => {
      const run = await runCommand(DOCKER_ON_BUILDAH, [...args], {});
      assert.equal(run.code, 2, run.output);
      assert.match(run.output, message);
      // buildah would have said `Error: …` (or run a build).
      assert.doesNotMatch(run.output, /^Error:|STEP /m);
    });
  }
});
