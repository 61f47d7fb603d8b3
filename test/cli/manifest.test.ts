/**
 * The CLI's manifest of a tree (src/cli/manifest.ts): the archive's files, hashed; the builder's
 * rules applied before anything is sent; and the packs' contents read again and checked.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { createArchive } from "../../src/cli/archive.js";
import { createManifest } from "../../src/cli/manifest.js";
import { ManifestCache } from "../../src/cli/manifestCache.js";
import { FastBuildError } from "../../src/core/errors.js";
import { checkManifest, manifestDigest } from "../../src/core/sourceManifest.js";
import { defaultExtractLimits } from "../../src/core/extractLimits.js";

const dirs: string[] = [];
after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

async function tree(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "fb-manifest-"));
  dirs.push(root);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return root;
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

describe("createManifest", () => {
  it("lists the archive's files and links, hashed, with the executable bit, in byte order", async () => {
    const root = await tree({
      "Cargo.toml": "[package]\n",
      "src/main.rs": "fn main() {}\n",
      "run.sh": "#!/bin/sh\n",
      ".gitignore": "target/\nsecret\n",
      secret: "no\n",
      "target/debug/app": "bin",
      "src/é.rs": "// é\n",
    });
    await chmod(join(root, "run.sh"), 0o755);
    await symlink("src/main.rs", join(root, "main-link"));
    const generated = [
      { prefix: ".fastbuild/kit", files: [{ path: "Dockerfile.app", content: "FROM x\n" }] },
    ];
    const made = await createManifest(root, { generated });
    const archive = await createArchive(root, { generated });
    await archive.dispose();

    assert.deepEqual(
      made.manifest.entries.map((e) => e.path),
      [
        ".fastbuild/kit/Dockerfile.app",
        ".gitignore",
        "Cargo.toml",
        "main-link",
        "run.sh",
        "src/main.rs",
        "src/é.rs",
      ],
    );
    assert.equal(made.fileCount, archive.fileCount, "the same entries as the archive");
    assert.equal(made.contentBytes, archive.contentBytes);
    assert.deepEqual(
      made.manifest.entries.find((e) => e.path === "run.sh"),
      { path: "run.sh", type: "file", size: 10, sha256: sha256("#!/bin/sh\n"), executable: true },
    );
    assert.deepEqual(
      made.manifest.entries.find((e) => e.path === "main-link"),
      {
        path: "main-link",
        type: "symlink",
        target: "src/main.rs",
      },
    );
    assert.equal(made.digest, manifestDigest(made.manifest));
    checkManifest(made.manifest, defaultExtractLimits());
    assert.equal((await createManifest(root, { generated })).digest, made.digest, "deterministic");
    assert.equal(made.read(sha256("FROM x\n")).toString(), "FROM x\n", "generated contents are kept");
  });

  it("refuses a symlink out of the tree and an empty tree, as the archive does", async () => {
    const root = await tree({ "a.rs": "x" });
    await symlink("../../etc/passwd", join(root, "escape"));
    await assert.rejects(createManifest(root), (error: unknown) => {
      assert.ok(error instanceof FastBuildError);
      assert.equal(error.code, "SymlinkOutsideTree");
      return true;
    });
    const empty = await tree({ ".gitignore": "*\n" });
    await assert.rejects(createManifest(empty), { code: "EmptySource" });
  });

  it("refuses to send a file that changed after it was hashed", async () => {
    const root = await tree({ "a.rs": "before\n" });
    const made = await createManifest(root);
    await writeFile(join(root, "a.rs"), "after!\n");
    assert.throws(
      () => made.read(sha256("before\n")),
      (error: unknown) => {
        assert.ok(error instanceof FastBuildError);
        assert.equal(error.code, "SourceChanged");
        assert.match(error.message, /a\.rs changed while it was being sent/);
        assert.match(error.hint ?? "", /Run the command again/);
        return true;
      },
    );
  });
});

describe("ManifestCache", () => {
  it("keeps the last manifest per API and environment; a corrupt file is no manifest", async () => {
    const dir = await tree({});
    const root = await tree({ "a.rs": "x\n" });
    const { manifest, digest } = await createManifest(root);
    const dev = new ManifestCache(dir, "https://app.example", "dev");
    assert.equal(await dev.last(), undefined);
    await dev.remember(manifest);
    assert.deepEqual(await dev.last(), { manifest, digest });
    assert.equal(await new ManifestCache(dir, "https://app.example", "prod").last(), undefined);
    assert.equal(await new ManifestCache(dir, "https://other.example", "dev").last(), undefined);

    // A cache folder that is a file: nothing can be written under it.
    const unwritable = new ManifestCache(join(root, "a.rs"), "https://app.example", "dev");
    await unwritable.remember(manifest);
    assert.equal(await unwritable.last(), undefined, "a cache it cannot write costs only the delta");
  });
});
