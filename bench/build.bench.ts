/**
 * Build-slice benchmark on a generated Cargo workspace of realistic shape (40 crates, ~3,000 source
 * files, a 300-package Cargo.lock):
 *   - base-key computation vs a baseline that hashes every file of the tree (what a naive
 *     "hash the sources" cache key would cost);
 *   - safe_extract.py vs plain `tar xzf` of the same archive.
 * Medians of several runs, printed as ratios against the baseline measured in the same run, so
 * numbers from different machines compare.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { computeBaseKey } from "../src/core/baseKey.js";

const exec = promisify(execFile);
const RUNS = 7;
const CRATES = 40;
const FILES_PER_CRATE = 75;
const LOCK_PACKAGES = 300;
const SAFE_EXTRACT = join(import.meta.dirname, "..", "dockerfiles", "safe_extract.py");
/** The commit whose extractor the candidate is compared with. */
const EXTRACTOR_BEFORE = "9015fbc";
const ALTERNATING_RUNS = 11;

async function generateWorkspace(root: string): Promise<number> {
  let files = 0;
  const write = async (path: string, content: string) => {
    await mkdir(join(root, path, ".."), { recursive: true });
    await writeFile(join(root, path), content);
    files++;
  };
  await write("Cargo.toml", '[workspace]\nmembers = ["crates/*"]\nresolver = "2"\n');
  await write("rust-toolchain.toml", '[toolchain]\nchannel = "1.91.1"\n');
  const body = "pub fn f() -> u64 {\n" + "    let x = 1u64;\n".repeat(60) + "    x\n}\n";
  for (let c = 0; c < CRATES; c++) {
    const deps = Array.from({ length: 8 }, (_, d) => `dep${(c * 7 + d) % LOCK_PACKAGES} = "1"`).join("\n");
    const local = c > 0 ? `\ncrate${c - 1} = { path = "../crate${c - 1}", version = "0.1.0" }` : "";
    await write(
      `crates/crate${c}/Cargo.toml`,
      `[package]\nname = "crate${c}"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n${deps}${local}\n`,
    );
    await write(`crates/crate${c}/src/lib.rs`, body);
    if (c === 0) await write(`crates/crate${c}/src/main.rs`, "fn main() {}\n");
    for (let f = 0; f < FILES_PER_CRATE; f++) await write(`crates/crate${c}/src/m${f}.rs`, body);
  }
  let lock = "version = 4\n";
  for (let p = 0; p < LOCK_PACKAGES; p++) {
    lock +=
      `\n[[package]]\nname = "dep${p}"\nversion = "1.0.${p}"\n` +
      `source = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "${"a".repeat(64)}"\n`;
  }
  for (let c = 0; c < CRATES; c++) lock += `\n[[package]]\nname = "crate${c}"\nversion = "0.1.0"\n`;
  await write("Cargo.lock", lock);
  return files;
}

async function hashWholeTree(dir: string): Promise<string> {
  const hash = createHash("sha256");
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const paths = entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  for (const path of paths) hash.update(path).update(await readFile(path));
  return hash.digest("hex");
}

async function median(label: string, fn: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  await fn(); // warm the page cache and the JIT
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now();
    await fn();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const m = times[Math.floor(times.length / 2)]!;
  console.log(`  ${label.padEnd(44)} median ${m.toFixed(1).padStart(8)} ms  (${RUNS} runs)`);
  return m;
}

/**
 * Runs the contestants in turn, round after round (never one block after another, so a drift of
 * the machine — caches, other load — touches all alike); prints each one's median and spread.
 */
async function alternate(
  contestants: Array<{ label: string; fn: () => Promise<unknown> }>,
): Promise<number[]> {
  const times = contestants.map(() => [] as number[]);
  for (const c of contestants) await c.fn(); // warm the page cache
  for (let round = 0; round < ALTERNATING_RUNS; round++) {
    for (const [i, c] of contestants.entries()) {
      const start = performance.now();
      await c.fn();
      times[i]!.push(performance.now() - start);
    }
  }
  return contestants.map((c, i) => {
    const sorted = times[i]!.sort((a, b) => a - b);
    const m = sorted[Math.floor(sorted.length / 2)]!;
    const q1 = sorted[Math.floor(sorted.length / 4)]!;
    const q3 = sorted[Math.floor((3 * sorted.length) / 4)]!;
    console.log(
      `  ${c.label.padEnd(44)} median ${m.toFixed(1).padStart(8)} ms  ` +
        `IQR ${q1.toFixed(1)}-${q3.toFixed(1)}  min-max ${sorted[0]!.toFixed(1)}-${sorted.at(-1)!.toFixed(1)}  (${sorted.length} runs, alternating)`,
    );
    return m;
  });
}

const scratch = await mkdtemp(join(tmpdir(), "fb-bench-build-"));
try {
  const root = join(scratch, "ws");
  const files = await generateWorkspace(root);
  console.log(`workspace: ${CRATES} crates, ${files} files, ${LOCK_PACKAGES} locked packages`);

  console.log("base key:");
  const baseline = await median("baseline: sha256 of every file", () => hashWholeTree(root));
  const key = await median("computeBaseKey", () => computeBaseKey(root, { dockerfileBase: "FROM rust\n" }));
  console.log(`  ratio computeBaseKey / baseline: ${(key / baseline).toFixed(2)}`);

  console.log("extraction:");
  const archive = join(scratch, "src.tar.gz");
  await exec("tar", ["czf", archive, "-C", root, "."]);
  // The interpreter itself, not a version-manager shim whose start-up would dominate.
  const python = (await exec("python3", ["-c", "import sys; print(sys.executable)"])).stdout.trim();
  // The extractor before the hostile-archive work, as the second baseline (git history).
  const before = join(scratch, "safe_extract_before.py");
  await writeFile(
    before,
    (await exec("git", ["show", `${EXTRACTOR_BEFORE}:dockerfiles/safe_extract.py`])).stdout,
  );
  let n = 0;
  const extractWith = (script: string) => async () => {
    const dest = join(scratch, `safe${n++}`);
    await exec(python, [script, archive, dest]);
    await rm(dest, { recursive: true });
  };
  const [plain = NaN, old = NaN, safe = NaN] = await alternate([
    {
      label: "baseline: tar xzf",
      fn: async () => {
        const dest = join(scratch, `plain${n++}`);
        await mkdir(dest);
        await exec("tar", ["xzf", archive, "-C", dest]);
        await rm(dest, { recursive: true });
      },
    },
    { label: `baseline: safe_extract.py at ${EXTRACTOR_BEFORE}`, fn: extractWith(before) },
    { label: "candidate: safe_extract.py", fn: extractWith(SAFE_EXTRACT) },
  ]);
  console.log(`  ratio safe_extract / tar xzf: ${(safe / plain).toFixed(2)}`);
  console.log(`  ratio safe_extract / safe_extract at ${EXTRACTOR_BEFORE}: ${(safe / old).toFixed(2)}`);
} finally {
  await rm(scratch, { recursive: true, force: true });
}
