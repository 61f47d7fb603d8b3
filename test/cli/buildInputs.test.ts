/**
 * What `dev` and `plan` compute from the project file (src/cli/buildInputs.ts): the base key covers
 * whichever Dockerfile.base builds (the built-in one or the project's) and the key files, the
 * project's settings go with the build, and a file the project file names but the tree lacks is
 * refused at its line.
 */
import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { readBuildInputs } from "../../src/cli/buildInputs.js";
import { InvalidInputError } from "../../src/core/errors.js";

const REPO = join(import.meta.dirname, "..", "..");
const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function copyOf(example: string, files: Record<string, string> = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "fb-inputs-"));
  dirs.push(dir);
  const root = join(dir, "tree");
  await cp(join(REPO, "examples", example), root, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  return root;
}

const generatedPaths = (inputs: Awaited<ReturnType<typeof readBuildInputs>>) =>
  inputs.generated.flatMap((g) => g.files.map((f) => `${g.prefix}/${f.path}`));

describe("build inputs from fast-build.toml", () => {
  it("keeps a Rust workspace's base key when its project file only names the binary (bases are reused)", async () => {
    const withFile = await readBuildInputs(await copyOf("hello"));
    const withoutFile = await readBuildInputs(
      await copyOf("hello", {}).then(async (root) => {
        await rm(join(root, "fast-build.toml"));
        return root;
      }),
    );
    assert.equal(withFile.baseKey, withoutFile.baseKey);
    assert.deepEqual(withFile.project, { binary: "hello", profile: "release" });
    assert.equal(withoutFile.project, undefined);
    assert.deepEqual(withFile.dockerfiles, { source: "built-in" });
  });

  it("keys the base on the cargo settings the project file names", async () => {
    const plain = await readBuildInputs(await copyOf("hello"));
    for (const build of ['profile = "dist"', 'features = ["x"]', 'target = "x86_64-unknown-linux-musl"']) {
      const other = await readBuildInputs(
        await copyOf("hello", { "fast-build.toml": `[build]\nbinary = "hello"\n${build}\n` }),
      );
      assert.notEqual(other.baseKey, plain.baseKey, build);
    }
  });

  it("a Node project: keyed on its Dockerfile.base and lock files, its files in the recipe, no built-in kit", async () => {
    const root = await copyOf("node-hello");
    const inputs = await readBuildInputs(root);
    assert.deepEqual(inputs.dockerfiles, {
      source: "project",
      base: "Dockerfile.base",
      app: "Dockerfile.app",
    });
    assert.deepEqual(inputs.covers.files, ["package.json", "package-lock.json"]);
    assert.deepEqual(generatedPaths(inputs), [
      ".fastbuild/recipe/package-lock.json",
      ".fastbuild/recipe/package.json",
    ]);
    assert.deepEqual(inputs.project, {
      profile: "release",
      port: 3000,
      dockerfiles: { base: "Dockerfile.base", app: "Dockerfile.app" },
    });

    const code = await readBuildInputs(await copyOf("node-hello", { "server.js": "// changed\n" }));
    assert.equal(code.baseKey, inputs.baseKey, "the service's code is not in the key");
    const lock = await readBuildInputs(await copyOf("node-hello", { "package-lock.json": "{}\n" }));
    assert.notEqual(lock.baseKey, inputs.baseKey, "a key file is");
    const base = await readBuildInputs(await copyOf("node-hello", { "Dockerfile.base": "FROM other\n" }));
    assert.notEqual(base.baseKey, inputs.baseKey, "the project's Dockerfile.base is");
  });

  it("refuses a Dockerfile or key file the tree lacks (or has as a link), naming the project file's line", async () => {
    const missing = await copyOf("node-hello");
    await rm(join(missing, "package-lock.json"));
    await assert.rejects(readBuildInputs(missing), (error: unknown) => {
      assert.ok(error instanceof InvalidInputError);
      assert.equal(error.code, "ProjectFileMissing");
      assert.match(
        error.message,
        /^fast-build\.toml:\d+: docker\.base-key-files: package-lock\.json does not exist/,
      );
      return true;
    });
    const linked = await copyOf("node-hello");
    await rm(join(linked, "Dockerfile.app"));
    await symlink("server.js", join(linked, "Dockerfile.app"));
    await assert.rejects(
      readBuildInputs(linked),
      /fast-build\.toml:\d+: docker\.app: Dockerfile\.app is a symlink/,
    );
  });

  it("refuses a project Dockerfile the upload would leave out (.gitignore), naming its line", async () => {
    const root = await copyOf("node-hello", { ".gitignore": "node_modules/\nDockerfile.app\n" });
    await assert.rejects(readBuildInputs(root), (error: unknown) => {
      assert.ok(error instanceof InvalidInputError);
      assert.equal(error.code, "ProjectFileNotSent");
      assert.match(
        error.message,
        /^fast-build\.toml:\d+: docker\.app: Dockerfile\.app is not sent with the source/,
      );
      assert.match(error.hint ?? "", /\.gitignore/);
      return true;
    });
  });

  it("refuses a project that is neither a Cargo workspace nor names its own Dockerfiles, pointing at fast-build init", async () => {
    const root = await copyOf("node-hello", { "fast-build.toml": "[container]\nport = 3000\n" });
    await assert.rejects(readBuildInputs(root), (error: unknown) => {
      assert.ok(error instanceof InvalidInputError);
      assert.equal(error.code, "NoCargoManifest");
      assert.match(error.hint ?? "", /fast-build init/);
      return true;
    });
  });
});
