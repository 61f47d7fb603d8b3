import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, readlink, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { list, type ReadEntry } from "tar";
import { ARCHIVE_MTIME, createArchive } from "../../src/cli/archive.js";
import { listSourceFiles } from "../../src/cli/sourceTree.js";
import { InvalidInputError } from "../../src/core/errors.js";
import { run, SAFE_EXTRACT } from "../dockerfiles/helpers.js";

const temps: string[] = [];
after(async () => {
  await Promise.all(temps.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "fb-archive-test-"));
  temps.push(dir);
  return dir;
}

async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

function git(cwd: string, ...args: string[]): string {
  return execFileSync(
    "git",
    [
      "-c",
      "user.name=test",
      "-c",
      "user.email=test@example.com",
      "-c",
      "protocol.file.allow=always",
      ...args,
    ],
    { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
  );
}

async function gitRepo(files: Record<string, string>): Promise<string> {
  const root = await tempDir();
  git(root, "init", "-q", "-b", "main");
  await writeTree(root, files);
  git(root, "add", "-A");
  git(root, "commit", "-qm", "init");
  return root;
}

/** Path → entry type and mode, read back with node-tar. */
async function entriesOf(archivePath: string): Promise<Map<string, ReadEntry>> {
  const entries = new Map<string, ReadEntry>();
  await list({ file: archivePath, onReadEntry: (entry) => entries.set(entry.path, entry) });
  return entries;
}

async function archivedPaths(root: string): Promise<string[]> {
  const archive = await createArchive(root);
  try {
    return [...(await entriesOf(archive.path)).keys()];
  } finally {
    await archive.dispose();
  }
}

describe("archive determinism", () => {
  const tree = fc.dictionary(
    fc.stringMatching(/^[a-z]{1,6}(\/[a-z]{1,6}){0,2}\.(rs|toml|txt)$/),
    fc.string({ maxLength: 200 }),
    { minKeys: 1, maxKeys: 8 },
  );

  it("gives the same bytes for the same tree, whatever the creation order and mtimes", async () => {
    await fc.assert(
      fc.asyncProperty(tree, fc.integer({ min: 1, max: 2_000_000_000 }), async (files, seed) => {
        const [a, b] = [await tempDir(), await tempDir()];
        const paths = Object.keys(files).filter(
          (p) => !Object.keys(files).some((q) => q.startsWith(`${p}/`)),
        );
        fc.pre(paths.length > 0);
        const content = Object.fromEntries(paths.map((p) => [p, files[p]!]));
        await writeTree(a, content);
        await writeTree(b, Object.fromEntries([...Object.entries(content)].reverse()));
        for (const [i, p] of paths.entries()) await utimes(join(b, p), seed + i, seed * 3 + i);
        const [x, y] = [await createArchive(a), await createArchive(b)];
        try {
          assert.equal(x.digest, y.digest);
          assert.deepEqual(await readFile(x.path), await readFile(y.path));
        } finally {
          await Promise.all([x.dispose(), y.dispose()]);
        }
      }),
      { numRuns: 15 },
    );
  });

  it("gives a different digest for any change of content", async () => {
    await fc.assert(
      fc.asyncProperty(
        tree,
        fc.nat(),
        fc.string({ minLength: 1, maxLength: 5 }),
        async (files, pick, extra) => {
          const paths = Object.keys(files).filter(
            (p) => !Object.keys(files).some((q) => q.startsWith(`${p}/`)),
          );
          fc.pre(paths.length > 0);
          const content = Object.fromEntries(paths.map((p) => [p, files[p]!]));
          const [a, b] = [await tempDir(), await tempDir()];
          await writeTree(a, content);
          const changed = paths[pick % paths.length]!;
          await writeTree(b, { ...content, [changed]: content[changed] + extra });
          const [x, y] = [await createArchive(a), await createArchive(b)];
          try {
            assert.notEqual(x.digest, y.digest);
          } finally {
            await Promise.all([x.dispose(), y.dispose()]);
          }
        },
      ),
      { numRuns: 15 },
    );
  });

  it("normalises entry metadata: fixed mtime, uid/gid 0, no user names, 0644/0755", async () => {
    const root = await tempDir();
    await writeTree(root, {
      "run.sh": "#!/bin/sh\n",
      "src/main.rs": "fn main() {}\n",
      [`${"d".repeat(120)}/long.rs`]: "x",
    });
    await chmod(join(root, "run.sh"), 0o775);
    await chmod(join(root, "src/main.rs"), 0o600);
    const archive = await createArchive(root);
    const entries = await entriesOf(archive.path);
    await archive.dispose();
    assert.deepEqual([...entries.keys()], [`${"d".repeat(120)}/long.rs`, "run.sh", "src/main.rs"]);
    for (const entry of entries.values()) {
      assert.equal(entry.mtime?.getTime(), ARCHIVE_MTIME.getTime());
      assert.equal(entry.uid, 0);
      assert.equal(entry.gid, 0);
      assert.ok(!entry.uname && !entry.gname);
    }
    assert.equal(entries.get("run.sh")?.mode, 0o755);
    assert.equal(entries.get("src/main.rs")?.mode, 0o644);
    assert.equal(archive.fileCount, 3);
  });

  it("compresses a tree of many chunks on several threads into the same bytes, which the builder extracts", async () => {
    // ~3 MiB: a dozen chunks compressed side by side, incompressible stretches, long and non-ASCII names.
    const files: Record<string, string | Buffer> = {};
    for (let i = 0; i < 300; i++)
      files[`src/m${i % 7}/f${i}.rs`] = `pub fn f${i}() -> u32 { ${i} }\n`.repeat(i % 50);
    for (let i = 0; i < 6; i++) files[`assets/blob${i}.bin`] = randomBytes(300_000 + i * 4321);
    files[`${"deep/".repeat(30)}file.rs`] = "deep";
    files["données/été.txt"] = "é";
    const [a, b] = [await tempDir(), await tempDir()];
    const write = async (root: string, paths: string[]) => {
      for (const p of paths) {
        await mkdir(dirname(join(root, p)), { recursive: true });
        await writeFile(join(root, p), files[p]!);
      }
    };
    await write(a, Object.keys(files));
    await write(b, Object.keys(files).reverse());
    await symlink("../assets/blob0.bin", join(a, "src/link.bin"));
    await symlink("../assets/blob0.bin", join(b, "src/link.bin"));
    const [x, y] = [await createArchive(a), await createArchive(b)];
    try {
      assert.ok(x.bytes > 1_500_000, `${x.bytes} bytes`);
      assert.equal(x.digest, y.digest);
      assert.deepEqual(await readFile(x.path), await readFile(y.path));
      const out = join(await tempDir(), "out");
      const extracted = await run("python3", [SAFE_EXTRACT, x.path, out], {});
      assert.equal(extracted.code, 0, extracted.output);
      for (const [path, content] of Object.entries(files)) {
        assert.deepEqual(await readFile(join(out, path)), Buffer.from(content), path);
      }
      assert.equal(await readlink(join(out, "src/link.bin")), "../assets/blob0.bin");
      assert.equal(x.fileCount, Object.keys(files).length + 1);
    } finally {
      await Promise.all([x.dispose(), y.dispose()]);
    }
  });
});

describe("generated files", () => {
  it("adds each group under its prefix in path order, replacing what the tree has there", async () => {
    const root = await tempDir();
    await writeTree(root, {
      "Cargo.toml": "[package]\n",
      ".fastbuild/recipe/stale.toml": "old",
      ".fastbuild/kit/Dockerfile.old": "old",
      ".fastbuild/notes.md": "the tree's own",
      "src/main.rs": "",
    });
    // Bytes as read from disk: kept exactly (the base key hashes these very bytes).
    const dockerfile = Buffer.from("FROM scratch\r\n# \u00e9\n", "utf8");
    const generated = [
      {
        prefix: ".fastbuild/recipe",
        files: [
          { path: "src/main.rs", content: "fn main() {}\n" },
          { path: "Cargo.toml", content: '[package]\nversion = "0.0.0"\n' },
        ],
      },
      { prefix: ".fastbuild/kit/", files: [{ path: "Dockerfile.base", content: dockerfile }] },
    ];
    const first = await createArchive(root, { generated });
    const second = await createArchive(root, { generated });
    const entries = await entriesOf(first.path);
    const out = await tempDir();
    execFileSync("tar", ["-xzf", first.path, "-C", out]);
    await Promise.all([first.dispose(), second.dispose()]);
    assert.deepEqual(
      [...entries.keys()],
      [
        ".fastbuild/kit/Dockerfile.base",
        ".fastbuild/notes.md",
        ".fastbuild/recipe/Cargo.toml",
        ".fastbuild/recipe/src/main.rs",
        "Cargo.toml",
        "src/main.rs",
      ],
    );
    assert.deepEqual(await readFile(join(out, ".fastbuild/kit/Dockerfile.base")), dockerfile);
    assert.equal(first.digest, second.digest);
    assert.equal(first.fileCount, 6);
  });
});

describe("which files go in (git repository)", () => {
  it("honours .gitignore and nested .gitignore, includes untracked files, leaves out deleted ones", async () => {
    const root = await gitRepo({
      ".gitignore": "*.log\n/dist/\n",
      "src/main.rs": "fn main() {}",
      "src/gen/.gitignore": "*.tmp\n!keep.tmp\n",
      "src/gen/keep.tmp": "k",
      "gone.rs": "deleted later",
    });
    await writeTree(root, {
      "debug.log": "x",
      "dist/app": "x",
      "src/gen/scratch.tmp": "x",
      "notes.md": "untracked",
    });
    await rm(join(root, "gone.rs"));
    const { mode, files } = await listSourceFiles(root);
    assert.equal(mode, "git");
    assert.deepEqual(files, [
      ".gitignore",
      "notes.md",
      "src/gen/.gitignore",
      "src/gen/keep.tmp",
      "src/main.rs",
    ]);
  });

  it("includes submodule files, tracked and untracked, and never .git", async () => {
    const sub = await gitRepo({ "lib.rs": "pub fn f() {}", ".gitignore": "*.o\n" });
    const root = await gitRepo({ "Cargo.toml": "[package]" });
    git(root, "submodule", "add", "-q", sub, "vendor/sub");
    git(root, "commit", "-qm", "sub");
    await writeTree(root, { "vendor/sub/new.rs": "untracked in submodule", "vendor/sub/x.o": "ignored" });
    const paths = await archivedPaths(root);
    assert.deepEqual(paths, [
      ".gitmodules",
      "Cargo.toml",
      "vendor/sub/.gitignore",
      "vendor/sub/lib.rs",
      "vendor/sub/new.rs",
    ]);
    assert.ok(!paths.some((p) => p.split("/").includes(".git")));
  });

  it("leaves out cargo target/ directories even when not ignored, keeps other folders named target", async () => {
    const root = await gitRepo({
      "Cargo.toml": "[workspace]",
      "crates/a/Cargo.toml": "[package]",
      "crates/a/src/target/mod.rs": "mod x;",
    });
    await writeTree(root, {
      "target/debug/app": "bin",
      "crates/a/target/debug/a": "bin",
    });
    const { files } = await listSourceFiles(root);
    assert.deepEqual(files, ["Cargo.toml", "crates/a/Cargo.toml", "crates/a/src/target/mod.rs"]);
  });

  it("archives only the given subfolder of a repository", async () => {
    const root = await gitRepo({ "app/src/main.rs": "m", "other/x.rs": "x", ".gitignore": "*.bak\n" });
    await writeTree(root, { "app/old.bak": "ignored by the parent's rules" });
    const { files } = await listSourceFiles(join(root, "app"));
    assert.deepEqual(files, ["src/main.rs"]);
  });
});

describe("which files go in (outside a repository)", () => {
  it("reads .gitignore files itself, nested ones and negations included", async () => {
    const root = await tempDir();
    await writeTree(root, {
      ".gitignore": "*.log\nbuild/\n",
      "a.log": "x",
      "build/out": "x",
      "src/main.rs": "m",
      "src/.gitignore": "*.gen\n!keep.log\n",
      "src/x.gen": "x",
      "src/keep.log": "kept by the nested negation",
      ".git/HEAD": "not a repo, but still never archived",
      "target/release/app": "x",
    });
    const { mode, files } = await listSourceFiles(root);
    assert.equal(mode, "gitignore");
    assert.deepEqual(files, [".gitignore", "src/.gitignore", "src/keep.log", "src/main.rs"]);
  });
});

describe("symlinks and limits", () => {
  it("keeps a symlink inside the tree as a symlink", async () => {
    const root = await tempDir();
    await writeTree(root, { "src/real.rs": "r" });
    await symlink("real.rs", join(root, "src/link.rs"));
    const archive = await createArchive(root);
    const entries = await entriesOf(archive.path);
    await archive.dispose();
    assert.equal(entries.get("src/link.rs")?.type, "SymbolicLink");
    assert.equal(entries.get("src/link.rs")?.linkpath, "real.rs");
  });

  it("refuses a symlink that points outside the tree, leaving nothing behind", async () => {
    const root = await tempDir();
    const out = await tempDir();
    await writeTree(root, { "a.rs": "a" });
    await symlink("../../etc/passwd", join(root, "escape"));
    await assert.rejects(createArchive(root, { outputDir: out }), (error: unknown) => {
      assert.ok(error instanceof InvalidInputError);
      assert.equal(error.code, "SymlinkOutsideTree");
      assert.match(error.message, /escape/);
      return true;
    });
    assert.equal(existsSync(join(out, "source.tar.gz")), false);
  });

  it("refuses an archive over the limit with a hint", async () => {
    const root = await tempDir();
    await writeFile(join(root, "big.bin"), randomBytes(200_000));
    await assert.rejects(createArchive(root, { maxBytes: 10_000 }), (error: unknown) => {
      assert.ok(error instanceof InvalidInputError);
      assert.equal(error.code, "SourceTooLarge");
      assert.ok(error.hint);
      return true;
    });
  });

  it("refuses an empty tree and a missing folder", async () => {
    const root = await tempDir();
    await writeTree(root, { ".gitignore": "*\n" });
    await assert.rejects(createArchive(root), /nothing to build/);
    await assert.rejects(createArchive(join(root, "missing")), /not a directory/);
  });
});

describe("archive: names and files it cannot send faithfully", () => {
  // "caf\xe9.rs": Latin-1, not UTF-8. Linux keeps a file name's bytes as given.
  const latin1Name = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2e, 0x72, 0x73]);
  const withLatin1File = async (root: string) => {
    await mkdir(join(root, "src"), { recursive: true });
    await writeFile(Buffer.concat([Buffer.from(join(root, "src") + "/"), latin1Name]), "// old\n");
  };
  const refusesName = (error: unknown) =>
    error instanceof InvalidInputError &&
    error.code === "FileNameNotUtf8" &&
    error.message.includes("src/caf\\xe9.rs") &&
    /Rename it/.test(error.hint ?? "");

  it("stops at a file name that is not UTF-8, naming it, outside git", async () => {
    const root = await tempDir();
    await writeTree(root, { "Cargo.toml": "[package]\n" });
    await withLatin1File(root);
    await assert.rejects(createArchive(root), refusesName);
  });

  it("stops at a file name that is not UTF-8, naming it, in a git repository", async () => {
    const root = await gitRepo({ "Cargo.toml": "[package]\n" });
    await withLatin1File(root);
    await assert.rejects(createArchive(root), refusesName);
  });

  it("stops at a file it may not read, naming it and saying what to do", async (t) => {
    const unprivileged = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    const source = fileURLToPath(new URL("../../src/cli/archive.ts", import.meta.url));
    try {
      execFileSync("setpriv", [...unprivileged, "test", "-r", source]);
    } catch {
      // A checkout in a private folder (mktemp -d is 0700): the unprivileged user cannot load our code.
      t.skip("this checkout is not readable by an unprivileged user, who must run the archive here");
      return;
    }
    // Root reads everything: the archive runs as an unprivileged user, as a developer would.
    const root = await tempDir();
    await writeTree(root, { "Cargo.toml": "[package]\n", "secret.key": "k\n" });
    await chmod(join(root, "secret.key"), 0o000);
    const script = `import { createArchive } from ${JSON.stringify(new URL("../../src/cli/archive.ts", import.meta.url).href)};
try { await createArchive(${JSON.stringify(root)}, { outputDir: ${JSON.stringify(root)} }); console.log("archived"); }
catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, hint: e.hint })); }`;
    // mkdtemp made it private to root; the archive writes next to the tree.
    await chmod(root, 0o777);
    const out = execFileSync(
      "setpriv",
      [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        process.execPath,
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        script,
      ],
      { encoding: "utf8", env: { PATH: process.env.PATH ?? "", HOME: root } },
    );
    const refusal = JSON.parse(out.trim().split("\n").pop() ?? "{}") as {
      code?: string;
      message?: string;
      hint?: string;
    };
    assert.equal(refusal.code, "FileUnreadable");
    assert.match(refusal.message ?? "", /cannot read secret\.key: permission denied/);
    assert.match(refusal.hint ?? "", /chmod u\+r "secret\.key"|\.gitignore/);
  });
});
