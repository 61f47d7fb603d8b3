/**
 * The source archive: the developer's working tree as a deterministic tar.gz, so the same tree
 * gives the same bytes and the same digest (the server skips builds whose digest it has seen).
 *
 * Which files, and the link rules: src/cli/sourceTree.ts.
 *
 * How: entries in byte order of their paths, mtime fixed, uid/gid 0 without names, modes
 * normalised to 0644/0755, symlinks kept as links (refused when they leave the tree), gzip at a
 * fixed level with a normalised header. At tar's speed or better (bench/archive.bench.ts): files
 * are read synchronously one after another into ustar/pax headers written directly
 * (src/cli/tarHeader.ts), the stream is compressed in fixed chunks on every core at once
 * (src/cli/parallelGzip.ts, still one deterministic gzip member), and hashed (sha256, md5) and
 * written as the compressed pieces come out: one pass over the tree, none over the archive.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidInputError } from "../core/errors.js";
import { defaultExtractLimits } from "../core/extractLimits.js";
import type { LinkLimits } from "../core/linkRules.js";
import { ParallelGzip } from "./parallelGzip.js";
import {
  checkDirectory,
  checkNotEmpty,
  LinkChecker,
  listSourceFiles,
  mergeGenerated,
  readTreeEntry,
  type Entry,
  type GeneratedFiles,
  type SourceFileList,
} from "./sourceTree.js";
import { tarHeader, type TarEntry } from "./tarHeader.js";

/** Every entry's mtime: a fixed instant, so a touch or a fresh clone does not change the digest. */
export const ARCHIVE_MTIME = new Date("2000-01-01T00:00:00Z");
const MTIME_SECONDS = ARCHIVE_MTIME.getTime() / 1000;
/**
 * Fixed, so the compressed bytes depend on the content only. gzip's and `tar czf`'s default:
 * level 9 took 1.6× as long for an archive 0.5% smaller; level 4 would take half as long again,
 * for 4-7% more bytes to upload.
 */
const GZIP_LEVEL = 6;

export interface ArchiveOptions {
  /** Refuse (and stop writing) once the compressed archive grows past this many bytes. */
  maxBytes?: number;
  /** Where to write the archive; defaults to a new temporary directory. */
  outputDir?: string;
  /**
   * Generated files, each group added under its `prefix` (e.g. the dependency recipe under
   * `.fastbuild/recipe`, the Dockerfiles under `.fastbuild/kit`); they replace anything the tree
   * has under that prefix.
   */
  generated?: readonly GeneratedFiles[];
  /** The builder's link limits (default: the app's defaults, src/core/extractLimits.ts). */
  linkLimits?: LinkLimits;
}

export interface SourceArchive {
  /** The .tar.gz on disk. */
  path: string;
  /** `sha256:<hex>` of the archive bytes. */
  digest: string;
  /** Base64 MD5 of the archive bytes (sent as Content-MD5). */
  md5: string;
  /** Size of the archive in bytes. */
  bytes: number;
  /** Files and symlinks in it. */
  fileCount: number;
  /** Uncompressed size of the files' contents. */
  contentBytes: number;
  mode: SourceFileList["mode"];
  /** Paths left out because they are neither files nor symlinks (sockets, fifos, empty submodules). */
  skipped: string[];
  /** Deletes the archive (and the temporary directory it was made in). */
  dispose(): Promise<void>;
}

/**
 * Archives the working tree under `root`. Throws `InvalidInputError` for a symlink leaving the
 * tree, an empty tree, or an archive over `maxBytes`; nothing is left on disk then.
 */
export async function createArchive(root: string, options: ArchiveOptions = {}): Promise<SourceArchive> {
  await checkDirectory(root);
  const list = await listSourceFiles(root);
  checkNotEmpty(root, list);
  const ownDir = options.outputDir === undefined;
  const dir = options.outputDir ?? (await mkdtemp(join(tmpdir(), "fast-build-")));
  const path = join(dir, "source.tar.gz");
  const dispose = () => rm(ownDir ? dir : path, { recursive: true, force: true });
  const sha = createHash("sha256");
  const md5 = createHash("md5");
  const stats = { bytes: 0, fileCount: 0, contentBytes: 0, skipped: [] as string[] };
  const links = new LinkChecker(options.linkLimits ?? defaultExtractLimits());
  let fd: number | undefined;
  try {
    fd = openSync(path, "w");
    const out = fd;
    // Hashed and written as each compressed piece comes out, while the next ones compress.
    const gzip = new ParallelGzip({
      level: GZIP_LEVEL,
      onOutput: (chunk) => {
        stats.bytes += chunk.length;
        if (options.maxBytes !== undefined && stats.bytes > options.maxBytes) {
          throw sourceTooLarge(undefined, options.maxBytes);
        }
        sha.update(chunk);
        md5.update(chunk);
        writeAll(out, chunk);
      },
    });
    await writeTar(root, mergeGenerated(list.files, options.generated), stats, links, gzip);
    await gzip.end();
    links.checkTree();
    closeSync(fd);
    fd = undefined;
  } catch (error) {
    if (fd !== undefined) closeSync(fd);
    await dispose();
    throw error;
  }
  return {
    path,
    digest: `sha256:${sha.digest("hex")}`,
    md5: md5.digest("base64"),
    bytes: stats.bytes,
    fileCount: stats.fileCount,
    contentBytes: stats.contentBytes,
    mode: list.mode,
    skipped: stats.skipped,
    dispose,
  };
}

function writeAll(fd: number, data: Buffer): void {
  for (let offset = 0; offset < data.length;) offset += writeSync(fd, data, offset);
}

/**
 * The tar stream: one header (+ pax header for long or non-ASCII names) and the content per entry.
 * Reads are synchronous: one file after another is faster than a round trip through the thread
 * pool per call, and the pool is busy compressing meanwhile.
 */
async function writeTar(
  root: string,
  entries: readonly Entry[],
  stats: { fileCount: number; contentBytes: number; skipped: string[] },
  links: LinkChecker,
  out: ParallelGzip,
): Promise<void> {
  for (const entry of entries) {
    if (typeof entry !== "string") {
      await writeEntry(out, entry.path, entry.content, 0o644, stats);
      continue;
    }
    const read = readTreeEntry(root, entry, links);
    if (!read) continue;
    if (read.type === "symlink") {
      await out.write(
        header({ path: read.path, type: "SymbolicLink", mode: 0o777, size: 0, linkpath: read.target }),
      );
      stats.fileCount++;
    } else if (read.type === "file") {
      await writeEntry(out, read.path, read.bytes, read.executable ? 0o755 : 0o644, stats);
    } else {
      stats.skipped.push(read.path);
    }
  }
  // End of archive: two zero blocks.
  await out.write(ZERO_BLOCKS);
}

const ZERO_BLOCKS = Buffer.alloc(1024);

async function writeEntry(
  out: ParallelGzip,
  path: string,
  data: Buffer,
  mode: number,
  stats: { fileCount: number; contentBytes: number },
): Promise<void> {
  // Most writes only copy into the current chunk and return nothing to wait for.
  let wait = out.write(header({ path, type: "File", mode, size: data.length }));
  if (wait) await wait;
  wait = out.write(data);
  if (wait) await wait;
  const pad = (512 - (data.length % 512)) % 512;
  if (pad > 0) await out.write(ZERO_BLOCKS.subarray(0, pad));
  stats.contentBytes += data.length;
  stats.fileCount++;
}

function header(entry: TarEntry): Buffer {
  return tarHeader(entry, MTIME_SECONDS);
}

/** `12.3 MiB`-style sizes for messages. */
/** The archive is over the server's limit (`bytes` when known). Nothing was uploaded. */
export function sourceTooLarge(bytes: number | undefined, maxBytes: number): InvalidInputError {
  const size = bytes === undefined ? "" : ` (${formatBytes(bytes)})`;
  return new InvalidInputError(
    `the source archive${size} is larger than the server's limit of ${formatBytes(maxBytes)}`,
    {
      code: "SourceTooLarge",
      hint: "Add build outputs and large assets to .gitignore (find big untracked files with `git status --ignored`).",
    },
  );
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}
