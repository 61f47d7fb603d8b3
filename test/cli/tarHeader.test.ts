/**
 * The archive's tar headers (src/cli/tarHeader.ts) as the builder's extractor (Python's tarfile),
 * GNU tar and node-tar read them: names that fit ustar, names split into prefix and name, names
 * and link targets that need pax records (too long, not ASCII, record lengths at a digit
 * boundary), sizes past ustar's field, and the fixed metadata.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { list } from "tar";
import { tarHeader, type TarEntry } from "../../src/cli/tarHeader.js";

const MTIME = 946684800;

interface Member extends TarEntry {
  content?: string;
}

function archive(members: readonly Member[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    const data = Buffer.from(m.content ?? "");
    parts.push(tarHeader({ ...m, size: m.type === "File" ? data.length : 0 }, MTIME), data);
    parts.push(Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

/** `n` bytes of UTF-8: a non-ASCII letter (2 bytes) and ASCII after it. */
const utf8Name = (n: number) => `é${"a".repeat(n - 2)}`;

const MEMBERS: Member[] = [
  { path: "a.txt", type: "File", mode: 0o644, size: 0, content: "hello\n" },
  { path: "run.sh", type: "File", mode: 0o755, size: 0, content: "#!/bin/sh\n" },
  { path: "empty", type: "File", mode: 0o644, size: 0, content: "" },
  { path: "block", type: "File", mode: 0o644, size: 0, content: "b".repeat(512) },
  { path: "n".repeat(100), type: "File", mode: 0o644, size: 0, content: "100" },
  { path: "n".repeat(101), type: "File", mode: 0o644, size: 0, content: "101" },
  { path: `${"d".repeat(120)}/long.rs`, type: "File", mode: 0o644, size: 0, content: "split" },
  { path: `${"p".repeat(155)}/${"q".repeat(100)}`, type: "File", mode: 0o644, size: 0, content: "256" },
  { path: `${"p".repeat(156)}/q.rs`, type: "File", mode: 0o644, size: 0, content: "prefix too long" },
  { path: `dir/${"q".repeat(101)}`, type: "File", mode: 0o644, size: 0, content: "name too long" },
  { path: `${"x/".repeat(150)}deep.rs`, type: "File", mode: 0o644, size: 0, content: "deep" },
  { path: "café/naïve.rs", type: "File", mode: 0o644, size: 0, content: "utf-8" },
  { path: "日本/ファイル.txt", type: "File", mode: 0o644, size: 0, content: "日本語\n" },
  // pax records whose length gains a digit when the length is added (99 → 100, 999 → 1000).
  ...[88, 89, 90, 91, 92, 93, 985, 986, 987, 988, 989, 990].map((n): Member => ({
    path: utf8Name(n),
    type: "File",
    mode: 0o644,
    size: 0,
    content: String(n),
  })),
  { path: "link", type: "SymbolicLink", mode: 0o777, size: 0, linkpath: "a.txt" },
  { path: "far", type: "SymbolicLink", mode: 0o777, size: 0, linkpath: `${"d".repeat(120)}/long.rs` },
  { path: "ulink", type: "SymbolicLink", mode: 0o777, size: 0, linkpath: "café/naïve.rs" },
];

const PYTHON_LIST = `
import json, sys, tarfile, hashlib
out = []
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
    for m in tar:
        data = tar.extractfile(m).read() if m.isfile() else b""
        out.append({"path": m.name, "type": "File" if m.isfile() else "SymbolicLink" if m.issym() else m.type.decode(),
                    "mode": m.mode, "size": m.size, "linkpath": m.linkname, "mtime": m.mtime, "uid": m.uid, "gid": m.gid,
                    "uname": m.uname, "gname": m.gname, "sha": hashlib.sha256(data).hexdigest()})
print(json.dumps(out))
`;

describe("tar headers", () => {
  const tar = archive(MEMBERS);

  it("read back by Python's tarfile (the builder's extractor) with every field as written", () => {
    const read = JSON.parse(
      execFileSync("python3", ["-c", PYTHON_LIST], { input: tar, encoding: "utf8" }),
    ) as Array<Record<string, unknown>>;
    assert.deepEqual(
      read,
      MEMBERS.map((m) => ({
        path: m.path,
        type: m.type,
        mode: m.mode,
        size: m.type === "File" ? Buffer.byteLength(m.content ?? "") : 0,
        linkpath: m.linkpath ?? "",
        mtime: MTIME,
        uid: 0,
        gid: 0,
        uname: "",
        gname: "",
        sha: sha(m.type === "File" ? (m.content ?? "") : ""),
      })),
    );
  });

  it("read back by GNU tar and node-tar with the same names", async () => {
    const names = MEMBERS.map((m) => m.path);
    const gnu = execFileSync("tar", ["-tf", "-", "--quoting-style=literal"], {
      input: tar,
      env: { ...process.env, LC_ALL: "C.UTF-8" },
    });
    assert.deepEqual(gnu.toString("utf8").split("\n").slice(0, -1), names);
    const dir = await mkdtemp(join(tmpdir(), "fb-tar-header-"));
    try {
      await writeFile(join(dir, "a.tar"), tar);
      const seen: Array<{ path: string; linkpath?: string }> = [];
      await list({
        file: join(dir, "a.tar"),
        onReadEntry: (e) => seen.push({ path: e.path, linkpath: e.linkpath }),
      });
      assert.deepEqual(
        seen.map((e) => e.path),
        names,
      );
      assert.deepEqual(
        seen.filter((e) => e.linkpath).map((e) => e.linkpath),
        MEMBERS.filter((m) => m.linkpath).map((m) => m.linkpath),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("gives a size past ustar's 8 GiB field a pax record", () => {
    const header = tarHeader({ path: "huge.bin", type: "File", mode: 0o644, size: 2 ** 34 + 5 }, MTIME);
    assert.equal(header.length, 3 * 512);
    assert.match(header.subarray(512, 1024).toString("latin1"), /^\d+ size=17179869189\n/);
    assert.equal(header.subarray(1024 + 124, 1024 + 136).toString("latin1"), "00000000000\0");
  });
});
