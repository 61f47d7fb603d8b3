import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { makeTarGz, run, SAFE_EXTRACT, type TarEntry } from "./helpers.js";
import { defaultExtractLimits } from "../../src/core/extractLimits.js";
import { HOSTILE_ARCHIVES, limitEnv } from "./hostileArchives.js";

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

  for (const c of HOSTILE_ARCHIVES) {
    if (c.refusal === undefined) {
      it(`extracts ${c.name}`, async () => {
        const { code, output } = await extract(c.entries(), limitEnv(c.limits));
        assert.equal(code, 0, output);
      });
      continue;
    }
    it(`refuses ${c.name} (${c.refusal}) and leaves nothing behind`, async () => {
      const { code, output, dest, dir } = await extract(c.entries(), limitEnv(c.limits));
      assert.equal(code, 3, output);
      assert.match(output, new RegExp(`^refused: ${c.refusal}: `, "m"));
      if (c.message) assert.match(output, c.message);
      assert.equal(await exists(dest), false);
      assert.deepEqual((await readdir(dir)).sort(), ["a.tar.gz"]);
    });
  }

  it("uses the app's default limits when run without any (src/core/extractLimits.ts)", async () => {
    const { code, output } = await run("python3", [SAFE_EXTRACT, "--limits"], {});
    assert.equal(code, 0, output);
    assert.deepEqual(JSON.parse(output), defaultExtractLimits());
  });

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
