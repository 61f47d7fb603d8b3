import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { makeTarGz, run, SAFE_EXTRACT, type TarEntry } from "./helpers.js";

let scratch: string;
let counter = 0;

async function extract(entries: readonly TarEntry[], limits: Record<string, string> = {}) {
  const dir = join(scratch, `case${counter++}`);
  await mkdir(dir);
  const archive = join(dir, "a.tar.gz");
  await writeFile(archive, makeTarGz(entries));
  const dest = join(dir, "out");
  const result = await run("python3", [SAFE_EXTRACT, archive, dest], limits);
  return { ...result, dir, dest };
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

describe("safe_extract.py", () => {
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "fb-extract-"));
  });
  after(() => rm(scratch, { recursive: true, force: true }));

  it("extracts files, folders, in-tree symlinks and hardlinks", async () => {
    const { code, dest, output } = await extract([
      { name: "./", type: "dir" },
      { name: "src/", type: "dir" },
      { name: "src/main.rs", content: "fn main() {}\n" },
      { name: "run.sh", content: "#!/bin/sh\n", mode: 0o4755 },
      { name: "LICENSE", content: "MIT" },
      { name: "crates/a/LICENSE", type: "symlink", linkname: "../../LICENSE" },
      { name: "copy.rs", type: "hardlink", linkname: "src/main.rs" },
    ]);
    assert.equal(code, 0, output);
    assert.equal(await readFile(join(dest, "src/main.rs"), "utf8"), "fn main() {}\n");
    assert.equal(await readlink(join(dest, "crates/a/LICENSE")), "../../LICENSE");
    assert.equal(await readFile(join(dest, "copy.rs"), "utf8"), "fn main() {}\n");
    // setuid dropped, executable kept.
    assert.equal((await stat(join(dest, "run.sh"))).mode & 0o7777, 0o755);
  });

  it("does not restore archive mtimes (cargo judges freshness by mtime)", async () => {
    const { code, dest } = await extract([{ name: "a.rs", content: "x" }]);
    assert.equal(code, 0);
    assert.ok((await stat(join(dest, "a.rs"))).mtimeMs > Date.UTC(2020, 0, 1));
  });

  const hostile: Array<[string, TarEntry[], RegExp, Record<string, string>?]> = [
    ["path traversal", [{ name: "../evil.txt", content: "x" }], /path traversal/],
    ["nested traversal", [{ name: "a/../../evil.txt", content: "x" }], /path traversal/],
    ["absolute path", [{ name: "/tmp/evil.txt", content: "x" }], /absolute path/],
    ["symlink escape", [{ name: "link", type: "symlink", linkname: "../../etc" }], /outside the archive/],
    ["absolute symlink", [{ name: "link", type: "symlink", linkname: "/etc/passwd" }], /absolute path/],
    [
      "symlink chain escape",
      [
        { name: "a", type: "symlink", linkname: "." },
        { name: "b", type: "symlink", linkname: "a/.." },
      ],
      /resolves outside/,
    ],
    [
      "write through a symlink",
      [
        { name: "d", type: "symlink", linkname: "sub" },
        { name: "sub/", type: "dir" },
        { name: "d/x.txt", content: "x" },
      ],
      /goes through a symlink/,
    ],
    ["hardlink escape", [{ name: "h", type: "hardlink", linkname: "../../etc/passwd" }], /path traversal/],
    ["hardlink to an absolute path", [{ name: "h", type: "hardlink", linkname: "/etc/passwd" }], /absolute/],
    ["hardlink to a non-member", [{ name: "h", type: "hardlink", linkname: "nope" }], /extracted earlier/],
    ["device file", [{ name: "dev", type: "chardev" }], /device file/],
    ["fifo", [{ name: "pipe", type: "fifo" }], /fifo/],
    [
      "gzip bomb (declared size)",
      [{ name: "zeros", content: Buffer.alloc(8 << 20) }],
      /more than 1048576 bytes/,
      { FASTBUILD_EXTRACT_MAX_BYTES: "1048576" },
    ],
    [
      "gzip bomb (hidden in a long-name header)",
      [{ name: "././@LongLink", type: "longname", content: Buffer.alloc(8 << 20, 0x61) }],
      /decompression bomb/,
      { FASTBUILD_EXTRACT_MAX_BYTES: "1048576", FASTBUILD_EXTRACT_MAX_FILES: "100" },
    ],
    [
      "too many files",
      Array.from({ length: 30 }, (_, i) => ({ name: `f${i}`, content: "" })),
      /more than 20 members/,
      { FASTBUILD_EXTRACT_MAX_FILES: "20" },
    ],
  ];
  for (const [name, entries, message, limits] of hostile) {
    it(`refuses ${name} and leaves nothing behind`, async () => {
      const { code, output, dest, dir } = await extract(entries, limits);
      assert.equal(code, 3, output);
      assert.match(output, /^refused: /m);
      assert.match(output, message);
      assert.equal(await exists(dest), false);
      assert.deepEqual((await readdir(dir)).sort(), ["a.tar.gz"]);
    });
  }

  it("refuses something that is not a tar.gz", async () => {
    const dir = join(scratch, "case-notgz");
    await mkdir(dir);
    await writeFile(join(dir, "a.tar.gz"), "plain text");
    const { code, output } = await run("python3", [SAFE_EXTRACT, join(dir, "a.tar.gz"), join(dir, "o")], {});
    assert.equal(code, 3);
    assert.match(output, /not a gzip'd tar/);
  });

  it("never writes outside its folder, whatever the member names and link targets", async () => {
    const segment = fc.constantFrom("a", "b", "..", ".", "", "/", "link");
    const path = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join("/"));
    const entry = fc.record({
      name: path,
      type: fc.constantFrom<TarEntry["type"]>("file", "dir", "symlink", "hardlink"),
      linkname: path,
      content: fc.constant("x"),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 6 }), async (entries) => {
        const { dir, code } = await extract(entries);
        // Everything the extractor may touch is under dir/out; the archive is the only other file.
        assert.deepEqual(
          (await readdir(dir)).filter((f) => f !== "out"),
          ["a.tar.gz"],
        );
        assert.ok(code === 0 || code === 3, `unexpected exit ${code}`);
        assert.deepEqual(
          (await readdir(scratch)).filter((f) => !f.startsWith("case")),
          [],
        );
      }),
      { numRuns: 40 },
    );
  });
});
