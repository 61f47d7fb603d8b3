/**
 * The source archive: the developer's working tree as a deterministic tar.gz, so the same tree
 * gives the same bytes and the same digest (the server skips builds whose digest it has seen).
 *
 * Which files: in a git repository git decides (tracked + untracked-but-not-ignored, submodules
 * included); elsewhere `.gitignore` files are honoured with the `ignore` package. Never `.git/`,
 * never a cargo `target/` directory.
 *
 * How: entries in byte order of their paths, mtime fixed, uid/gid 0 without names, modes
 * normalised to 0644/0755, symlinks kept as links (refused when they leave the tree), gzip at a
 * fixed level with a normalised header. At tar's speed or better (bench/archive.bench.ts): files
 * are read synchronously one after another into ustar/pax headers written directly
 * (src/cli/tarHeader.ts), the stream is compressed in fixed chunks on every core at once
 * (src/cli/parallelGzip.ts, still one deterministic gzip member), and hashed (sha256, md5) and
 * written as the compressed pieces come out: one pass over the tree, none over the archive.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  type Stats,
  writeSync,
} from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { promisify } from "node:util";
import ignore, { type Ignore } from "ignore";
import { InvalidInputError } from "../core/errors.js";
import { defaultExtractLimits } from "../core/extractLimits.js";
import {
  checkLinkTree,
  checkSymlink,
  LinkRuleError,
  type LinkLimits,
  type LinkRefusal,
} from "../core/linkRules.js";
import { ParallelGzip } from "./parallelGzip.js";
import { tarHeader, type TarEntry } from "./tarHeader.js";

const run = promisify(execFile);

/** Every entry's mtime: a fixed instant, so a touch or a fresh clone does not change the digest. */
export const ARCHIVE_MTIME = new Date("2000-01-01T00:00:00Z");
const MTIME_SECONDS = ARCHIVE_MTIME.getTime() / 1000;
/**
 * Fixed, so the compressed bytes depend on the content only. gzip's and `tar czf`'s default:
 * level 9 took 1.6× as long for an archive 0.5% smaller; level 4 would take half as long again,
 * for 4-7% more bytes to upload.
 */
const GZIP_LEVEL = 6;
/** git's output for big monorepos can be large. */
const GIT_MAX_BUFFER = 512 * 1024 * 1024;

export interface SourceFileList {
  /** `git` when git chose the files, `gitignore` when the tree is not a repository. */
  mode: "git" | "gitignore";
  /** Paths relative to the root, `/`-separated, in byte order. Files and symlinks only. */
  files: string[];
}

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

export interface GeneratedFiles {
  prefix: string;
  files: readonly { path: string; content: string | Uint8Array }[];
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
  if (list.files.length === 0) {
    throw new InvalidInputError(`nothing to build: no files under ${root}`, {
      code: "EmptySource",
      hint: "Run fast-build in your project folder (or pass --dir); check that .gitignore does not exclude everything.",
    });
  }
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

type Entry = string | { path: string; content: Buffer };

/** The tree's files plus the generated ones, in byte order of their paths (determinism). */
function mergeGenerated(files: readonly string[], generated: ArchiveOptions["generated"] = []): Entry[] {
  const prefixes = generated.map((group) => `${group.prefix.replace(/\/+$/, "")}/`);
  const entries: Entry[] = files.filter((f) => !prefixes.some((prefix) => f.startsWith(prefix)));
  generated.forEach((group, i) => {
    for (const file of group.files) {
      entries.push({ path: prefixes[i] + file.path, content: Buffer.from(file.content) });
    }
  });
  return sortBytes(entries, (e) => (typeof e === "string" ? e : e.path));
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
    const rel = entry;
    const full = join(root, rel);
    const info = lstatOrUndefined(full);
    // Deleted since listing (git still tracks it): the working tree is what we archive.
    if (!info) continue;
    if (info.isSymbolicLink()) {
      const target = readable(rel, () => readlinkSync(full));
      links.add(rel, target);
      await out.write(header({ path: rel, type: "SymbolicLink", mode: 0o777, size: 0, linkpath: target }));
      stats.fileCount++;
    } else if (info.isFile()) {
      // Read whole, so the header's size matches the bytes even if the file changes meanwhile.
      const data = readable(rel, () => readFileSync(full));
      await writeEntry(out, rel, data, info.mode & 0o111 ? 0o755 : 0o644, stats);
    } else {
      stats.skipped.push(rel);
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

/**
 * The builder's link rules, applied here first (src/core/linkRules.ts): each symlink as it is
 * met, then the whole tree's chains once every link is known. The builder must not see the
 * developer's disk, and an archive it would refuse is better refused before the upload.
 */
class LinkChecker {
  private readonly links = new Map<string, string>();

  constructor(private readonly limits: LinkLimits) {}

  add(rel: string, target: string): void {
    this.links.set(rel, target);
    guarded(() => checkSymlink(rel, target, this.links.size, this.limits));
  }

  checkTree(): void {
    guarded(() => checkLinkTree(this.links, this.limits.maxLinkDepth));
  }
}

const OUTSIDE_TREE = {
  code: "SymlinkOutsideTree",
  hint: "Replace it with a relative link inside the project or a copy of what it points to, or add it to .gitignore.",
};

const LINK_ERRORS: Record<LinkRefusal, { code: string; hint: string }> = {
  "absolute-symlink": OUTSIDE_TREE,
  "symlink-escape": OUTSIDE_TREE,
  "link-chain": {
    code: "SymlinkChainTooDeep",
    hint: "Point the link at its final target directly (the builder follows a bounded number of links).",
  },
  "too-many-links": {
    code: "TooManySymlinks",
    hint: "Replace symlinks with the files they point to, or add them to .gitignore.",
  },
  "path-too-long": { code: "SymlinkTargetTooLong", hint: "Shorten the link's target." },
};

function guarded(check: () => void): void {
  try {
    check();
  } catch (error) {
    if (!(error instanceof LinkRuleError)) throw error;
    throw new InvalidInputError(error.message, { ...LINK_ERRORS[error.refusal], cause: error });
  }
}

/** The files to archive under `root`, in byte order of their paths. */
export async function listSourceFiles(root: string): Promise<SourceFileList> {
  const inRepo = await run("git", ["-C", root, "rev-parse", "--is-inside-work-tree"]).then(
    ({ stdout }) => stdout.trim() === "true",
    // No git, or not a repository: fall back to reading .gitignore files ourselves.
    () => false,
  );
  const files = inRepo ? await gitFiles(root, "") : walkFiles(root);
  return { mode: inRepo ? "git" : "gitignore", files: sortBytes(dropExcluded(files)) };
}

/**
 * Tracked and untracked-but-not-ignored files of one repository, then of each checked-out
 * submodule. git 2.39 refuses `--recurse-submodules` together with `--others`, so untracked files
 * of submodules would be lost that way: each submodule is listed by its own git instead.
 */
async function gitFiles(root: string, prefix: string): Promise<string[]> {
  const { stdout } = await run(
    "git",
    ["-C", join(root, prefix), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    { maxBuffer: GIT_MAX_BUFFER, encoding: "buffer" },
  );
  const entries = [...new Set(splitNul(stdout).map((name) => utf8Name(name, prefix)))];
  const files: string[] = [];
  for (const entry of entries) {
    // "dir/": an untracked nested repository, opaque to git; not part of this tree's sources.
    if (entry.endsWith("/")) continue;
    const rel = prefix ? `${prefix}/${entry}` : entry;
    const info = lstatOrUndefined(join(root, rel));
    // Tracked but deleted in the working tree: the working tree is what we archive.
    if (!info) continue;
    if (info.isDirectory()) {
      // A gitlink: recurse when the submodule is checked out (it has its own .git).
      const checkedOut = lstatOrUndefined(join(root, rel, ".git")) !== undefined;
      if (checkedOut) files.push(...(await gitFiles(root, rel)));
      continue;
    }
    files.push(rel);
  }
  return files;
}

/** Outside git: walk the tree, honouring every .gitignore the way git does (deepest verdict wins). */
function walkFiles(root: string): string[] {
  const files: string[] = [];
  const visit = (dirRel: string, rules: ReadonlyArray<{ base: string; rules: Ignore }>) => {
    const entries = readable(dirRel || ".", () =>
      readdirSync(join(root, dirRel), { withFileTypes: true, encoding: "buffer" }),
    ).map((entry) => ({ entry, name: utf8Name(entry.name, dirRel) }));
    let own = rules;
    if (entries.some(({ entry, name }) => name === ".gitignore" && entry.isFile())) {
      const gitignore = dirRel ? `${dirRel}/.gitignore` : ".gitignore";
      const text = readable(gitignore, () => readFileSync(join(root, gitignore), "utf8"));
      own = [...rules, { base: dirRel, rules: ignore().add(text) }];
    }
    for (const { entry, name } of entries) {
      const rel = dirRel ? `${dirRel}/${name}` : name;
      const isDir = entry.isDirectory();
      if (isIgnored(own, rel, isDir)) continue;
      if (isDir) visit(rel, own);
      else files.push(rel);
    }
  };
  visit("", []);
  return files;
}

function isIgnored(
  levels: ReadonlyArray<{ base: string; rules: Ignore }>,
  rel: string,
  isDir: boolean,
): boolean {
  for (let i = levels.length - 1; i >= 0; i--) {
    const level = levels[i]!;
    const path = (level.base ? rel.slice(level.base.length + 1) : rel) + (isDir ? "/" : "");
    const verdict = level.rules.test(path);
    if (verdict.ignored) return true;
    if (verdict.unignored) return false;
  }
  return false;
}

/**
 * Drops `.git` anywhere and cargo build output: a `target` directory at the root or next to a
 * Cargo.toml (a folder merely named `target` elsewhere is source and stays).
 */
function dropExcluded(files: readonly string[]): string[] {
  const cargoDirs = new Set(
    files.filter((f) => f === "Cargo.toml" || f.endsWith("/Cargo.toml")).map((f) => posix.dirname(f)),
  );
  return files.filter((file) => {
    const parts = file.split("/");
    return parts.every((part, i) => {
      if (part === ".git") return false;
      if (part !== "target" || i === parts.length - 1) return true;
      const parent = i === 0 ? "." : parts.slice(0, i).join("/");
      return !(i === 0 || cargoDirs.has(parent));
    });
  });
}

function sortBytes(files: string[]): string[];
function sortBytes<T>(items: T[], path: (item: T) => string): T[];
function sortBytes<T>(items: T[], path: (item: T) => string = String): T[] {
  // Byte order of the UTF-8 names, not UTF-16 order: the same everywhere, like git's.
  return items
    .map((item) => ({ item, key: Buffer.from(path(item), "utf8") }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map(({ item }) => item);
}

/** NUL-separated names (git's `-z` output), as raw bytes. */
function splitNul(bytes: Buffer): Buffer[] {
  const names: Buffer[] = [];
  for (let start = 0; start < bytes.length;) {
    let end = bytes.indexOf(0, start);
    if (end < 0) end = bytes.length;
    if (end > start) names.push(bytes.subarray(start, end));
    start = end + 1;
  }
  return names;
}

const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A file name as text, or a refusal naming it. The archive's names, the base key and the builder's
 * extractor all work on UTF-8 names; a name in another encoding would be dropped (it cannot be
 * opened by its lossy decoding) or renamed on the way, so the tree is refused instead of archived
 * without it.
 */
function utf8Name(name: Buffer, dir: string): string {
  try {
    return STRICT_UTF8.decode(name);
  } catch {
    const shown = [...name]
      .map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`))
      .join("");
    const path = dir ? `${dir}/${shown}` : shown;
    throw new InvalidInputError(`the file name "${path}" is not valid UTF-8`, {
      code: "FileNameNotUtf8",
      hint: "Rename it to a UTF-8 name (e.g. convmv -f latin1 -t utf8), or add it to .gitignore.",
    });
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

/** Runs a read of `rel`; a file we may not read stops the archive with its name and what to do. */
function readable<T>(rel: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") {
      throw new InvalidInputError(`cannot read ${rel}: permission denied`, {
        code: "FileUnreadable",
        hint: `Make it readable (chmod u+r ${JSON.stringify(rel)}), or add it to .gitignore so it is not sent.`,
        cause: error,
      });
    }
    throw error;
  }
}

async function checkDirectory(root: string): Promise<void> {
  const info = await stat(root).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new InvalidInputError(`${root} is not a directory`, {
      code: "InvalidSourceDir",
      hint: "Pass --dir with your project's folder, or run fast-build inside it.",
    });
  }
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
