/**
 * Build-slice benchmark on a generated Cargo workspace of realistic shape (40 crates, ~3,000 source
 * files, a 300-package Cargo.lock):
 *   - base-key computation vs sha256 of the same files the key covers (the manifests, Cargo.lock,
 *     the toolchain file: what the key reads), so the ratio is the cost of parsing and normalising;
 *   - safe_extract.py vs plain `tar xzf` of the same archive, and vs the extractor before the
 *     hostile-archive work.
 * Candidate and baselines alternate (bench/alternate.ts); medians and spread, ratios of medians.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { computeBaseKey } from "../src/core/baseKey.js";
import { alternate, printRatio } from "./alternate.js";

const exec = promisify(execFile);
const CRATES = 40;
const FILES_PER_CRATE = 75;
const LOCK_PACKAGES = 300;
const SAFE_EXTRACT = join(import.meta.dirname, "..", "dockerfiles", "safe_extract.py");
/** The commit whose extractor the candidate is compared with. */
const EXTRACTOR_BEFORE = "9015fbc";
const DOCKERFILE_BASE = "FROM rust\n";

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

/**
 * The baseline for the base key: sha256 over the raw bytes of exactly the files the key covers
 * (every Cargo.toml the recipe read, Cargo.lock, the toolchain and cargo-config files) and the
 * Dockerfile.base bytes, read with the same calls. The same job minus the parsing and normalising
 * that make the key stable, so the ratio is what that work costs. The list comes from a first
 * computeBaseKey run (finding the manifests is part of the candidate's job; the baseline is handed it).
 */
function hashSameFiles(root: string, paths: readonly string[], dockerfileBase: string) {
  return async (): Promise<string> => {
    const hash = createHash("sha256");
    for (const path of paths) hash.update(path).update(await readFile(join(root, path)));
    return hash.update(dockerfileBase).digest("hex");
  };
}

const scratch = await mkdtemp(join(tmpdir(), "fb-bench-build-"));
try {
  const root = join(scratch, "ws");
  const files = await generateWorkspace(root);
  console.log(`workspace: ${CRATES} crates, ${files} files, ${LOCK_PACKAGES} locked packages`);

  console.log("base key:");
  const options = { dockerfileBase: DOCKERFILE_BASE };
  const { recipe } = await computeBaseKey(root, options);
  const covered = [
    ...recipe.manifests.map((m) => m.path),
    ...(recipe.lockfile === undefined ? [] : ["Cargo.lock"]),
    ...recipe.extraFiles.map((f) => f.path),
  ];
  const [hashed, key] = await alternate([
    {
      label: `baseline: sha256 of the same ${covered.length} files`,
      run: hashSameFiles(root, covered, DOCKERFILE_BASE),
    },
    { label: "candidate: computeBaseKey", run: () => computeBaseKey(root, options) },
  ]);
  printRatio("computeBaseKey / sha256 of the same files", key!, hashed!);

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
  const [plain, old, safe] = await alternate([
    {
      label: "baseline: tar xzf",
      run: async () => {
        const dest = join(scratch, `plain${n++}`);
        await mkdir(dest);
        await exec("tar", ["xzf", archive, "-C", dest]);
        await rm(dest, { recursive: true });
      },
    },
    { label: `baseline: safe_extract.py at ${EXTRACTOR_BEFORE}`, run: extractWith(before) },
    { label: "candidate: safe_extract.py", run: extractWith(SAFE_EXTRACT) },
  ]);
  printRatio("safe_extract / tar xzf", safe!, plain!);
  printRatio(`safe_extract / safe_extract at ${EXTRACTOR_BEFORE}`, safe!, old!);
} finally {
  await rm(scratch, { recursive: true, force: true });
}
