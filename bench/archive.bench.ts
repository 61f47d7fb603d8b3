/**
 * The source archive (`createArchive`, src/cli/archive.ts: listing, tar, gzip, sha256 and md5)
 * against `tar czf - -T list | sha256sum` doing the same job: the same file list (given to tar,
 * so its side does not even pay for the listing), the same order and normalised metadata. Two
 * generated trees, no network:
 *   - a plain 10,000-file tree outside git (the `.gitignore` walk), source-like text of mixed sizes;
 *   - a 2,000-file Rust-like workspace in a git repository: crates with sources, tests, benches and
 *     a few binary assets, a Cargo.lock, an ignored `target/` full of build output, untracked files.
 * Candidate and baseline alternate round by round (bench/alternate.ts); medians, IQR and min-max
 * are printed, and the ratio of medians beside the goal (≤ 1.0, issue 10).
 *
 * `npm run bench -- archive`; `BENCH_ROUNDS=N` changes the number of rounds (default 11).
 */
import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createArchive } from "../src/cli/archive.js";
import { listSourceFiles } from "../src/cli/sourceTree.js";
import { alternate, printRatio } from "./alternate.js";

const exec = promisify(execFile);
const GOAL_RATIO = 1.0;

/** A small deterministic PRNG (mulberry32), so every run archives the same bytes. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = (
  "let mut self fn pub struct impl enum match if else return for in while loop use crate mod " +
  "Result Option Some None Ok Err String Vec HashMap Arc Mutex u64 usize i32 bool str &str " +
  "config builder request response handler state value key index count buffer error context " +
  "parse encode decode read write send receive spawn await async move clone into from iter map " +
  "filter collect unwrap expect len push insert remove get set new default debug trace info"
).split(" ");

/** Source-like text of about `bytes` bytes: lines of identifiers, indentation, punctuation. */
function sourceText(rand: () => number, bytes: number): string {
  const lines: string[] = [];
  let size = 0;
  while (size < bytes) {
    const depth = Math.floor(rand() * 4);
    const words = Array.from({ length: 2 + Math.floor(rand() * 8) }, () => {
      const word = WORDS[Math.floor(rand() * WORDS.length)]!;
      return rand() < 0.15 ? `${word}_${Math.floor(rand() * 1000)}` : word;
    });
    const end = [";", " {", "", ",", " }", ");"][Math.floor(rand() * 6)]!;
    const line = `${"    ".repeat(depth)}${words.join(rand() < 0.3 ? "." : " ")}${end}`;
    lines.push(line);
    size += line.length + 1;
  }
  return `${lines.join("\n")}\n`;
}

/** Sizes like a source tree's: most files small, a long tail of big ones (200 B .. ~64 KiB). */
function fileSize(rand: () => number): number {
  return Math.floor(200 * Math.pow(2, rand() * rand() * 8.3));
}

async function write(root: string, path: string, content: string | Uint8Array): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), content);
}

/** 10,000 files in nested folders, with a couple of .gitignore files (not a git repository). */
export async function generatePlainTree(root: string, files = 10_000): Promise<void> {
  const rand = random(10_000);
  await write(root, ".gitignore", "*.log\nbuild/\n");
  await write(root, "pkg0/.gitignore", "*.tmp\n");
  const writes: Promise<void>[] = [];
  for (let i = 0; i < files; i++) {
    const path = `pkg${i % 25}/module${Math.floor(i / 25) % 20}/sub${Math.floor(i / 500) % 4}/file${i}.rs`;
    writes.push(write(root, path, sourceText(rand, fileSize(rand))));
    if (writes.length >= 64) await Promise.all(writes.splice(0));
  }
  // Left out by the .gitignore files.
  for (let i = 0; i < 200; i++) writes.push(write(root, `build/out${i}.o`, sourceText(rand, 4000)));
  for (let i = 0; i < 50; i++) writes.push(write(root, `pkg0/scratch${i}.tmp`, "tmp\n"));
  await Promise.all(writes);
}

/**
 * A Cargo workspace of 2,000 archived files (tracked and untracked) in a git repository, plus an
 * ignored `target/` of build output as a real one has.
 */
export async function generateRustWorkspace(root: string, files = 2_000): Promise<void> {
  const rand = random(2_000);
  const crates = 24;
  await write(root, ".gitignore", "/target\n*.swp\n");
  await write(root, "Cargo.toml", '[workspace]\nmembers = ["crates/*"]\nresolver = "2"\n');
  await write(root, "rust-toolchain.toml", '[toolchain]\nchannel = "1.91.1"\n');
  await write(root, "README.md", sourceText(rand, 6000));
  let lock = "version = 4\n";
  for (let p = 0; p < 400; p++) {
    const checksum = Array.from({ length: 64 }, () => "0123456789abcdef"[Math.floor(rand() * 16)]).join("");
    lock += `\n[[package]]\nname = "dep${p}"\nversion = "1.${p % 7}.${p}"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "${checksum}"\n`;
  }
  await write(root, "Cargo.lock", lock);
  let count = 4;
  const perCrate = Math.floor((files - count - 1) / crates);
  for (let c = 0; c < crates; c++) {
    const dir = `crates/crate${c}`;
    await write(
      root,
      `${dir}/Cargo.toml`,
      `[package]\nname = "crate${c}"\nversion = "0.1.0"\nedition = "2021"\n`,
    );
    count++;
    for (let f = 1; f < perCrate; f++) {
      const kind = f % 10;
      const path =
        kind === 0
          ? `${dir}/tests/it${f}.rs`
          : kind === 1
            ? `${dir}/benches/b${f}.rs`
            : kind === 2 && f % 40 === 2
              ? `${dir}/assets/icon${f}.png`
              : `${dir}/src/${["core", "net", "io", "util"][f % 4]}/m${f}.rs`;
      const content = path.endsWith(".png")
        ? Uint8Array.from({ length: 2000 + Math.floor(rand() * 30_000) }, () => Math.floor(rand() * 256))
        : sourceText(rand, fileSize(rand));
      await write(root, path, content);
      count++;
    }
  }
  // Build output: ignored, never archived.
  for (let i = 0; i < 600; i++) {
    await write(root, `target/debug/deps/lib${i}.rlib`, sourceText(rand, 3000));
  }
  await exec("git", ["init", "-q", "-b", "main"], { cwd: root });
  await exec("git", ["add", "-A"], { cwd: root });
  await exec("git", ["-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-qm", "init"], {
    cwd: root,
  });
  // Untracked but not ignored: archived too.
  while (count < files) {
    await write(root, `crates/crate0/src/new${count}.rs`, sourceText(rand, fileSize(rand)));
    count++;
  }
}

/**
 * What `tar` and `sha256sum` take for the same job: the list (NUL-separated), the same order, the
 * same normalised metadata, gzip at tar's default level, the digest of the compressed bytes.
 */
async function tarBaseline(root: string, listFile: string, out: string): Promise<void> {
  const tar = spawn(
    "tar",
    [
      "czf",
      "-",
      "-C",
      root,
      "--no-recursion",
      "--null",
      "-T",
      listFile,
      "--mtime=2000-01-01 00:00:00Z",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "--format=posix",
      "--pax-option=delete=atime,delete=ctime",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const sum = spawn("sha256sum", [], { stdio: ["pipe", "pipe", "inherit"] });
  let digest = "";
  sum.stdout.on("data", (chunk: Buffer) => (digest += chunk.toString()));
  const exited = (child: ReturnType<typeof spawn>) =>
    new Promise<void>((resolve, reject) =>
      child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}`)))),
    );
  await Promise.all([pipeline(tar.stdout, sum.stdin), exited(tar), exited(sum)]);
  await writeFile(out, digest);
}

async function measure(name: string, root: string, scratch: string): Promise<number> {
  const list = await listSourceFiles(root);
  const listFile = join(scratch, `${name}.list`);
  await writeFile(listFile, list.files.map((f) => `${f}\0`).join(""));
  const candidate = async () => {
    const archive = await createArchive(root, { outputDir: scratch });
    await archive.dispose();
    return archive;
  };
  const first = await candidate();
  const tarBytes = Number(
    (
      await exec("sh", [
        "-c",
        'tar czf - -C "$1" --no-recursion --null -T "$2" | wc -c',
        "sh",
        root,
        listFile,
      ])
    ).stdout,
  );
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;
  console.log(
    `${name}: ${first.fileCount} files (${first.mode} mode), ${mib(first.contentBytes)} of content; ` +
      `archive ${mib(first.bytes)}, tar czf ${mib(tarBytes)}`,
  );
  const [base, cand] = await alternate(
    [
      {
        label: "baseline: tar czf - -T list | sha256sum",
        run: () => tarBaseline(root, listFile, join(scratch, "baseline.sha256")),
      },
      { label: "candidate: createArchive (list, tar, gzip, sha256, md5)", run: candidate },
    ],
    { rounds: 11 },
  );
  return printRatio("createArchive / (tar czf + sha256sum)", cand!, base!, { atMost: GOAL_RATIO });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const scratch = await mkdtemp(join(tmpdir(), "fb-bench-archive-"));
  try {
    const plain = join(scratch, "plain");
    const rust = join(scratch, "rust");
    await generatePlainTree(plain);
    await generateRustWorkspace(rust);
    await measure("10k-file tree", plain, scratch);
    await measure("Rust workspace", rust, scratch);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
