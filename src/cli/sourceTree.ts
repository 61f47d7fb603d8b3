/**
 * The developer's tree as the CLI sends it, one definition for both ways of sending it (the
 * archive, src/cli/archive.ts, and the manifest, src/cli/manifest.ts): which files, their names,
 * the generated files added under their prefixes, and the builder's link rules applied first.
 *
 * Which files: in a git repository git decides (tracked + untracked-but-not-ignored, submodules
 * included); elsewhere `.gitignore` files are honoured with the `ignore` package. Never `.git/`,
 * never a cargo `target/` directory. Names must be UTF-8; order is the byte order of the names.
 */
import { execFile } from "node:child_process";
import { lstatSync, readdirSync, readFileSync, readlinkSync, type Stats } from "node:fs";
import { stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { promisify } from "node:util";
import ignore, { type Ignore } from "ignore";
import { InvalidInputError } from "../core/errors.js";
import {
  checkLinkTree,
  checkSymlink,
  LinkRuleError,
  type LinkLimits,
  type LinkRefusal,
} from "../core/linkRules.js";

const run = promisify(execFile);

/** git's output for big monorepos can be large. */
const GIT_MAX_BUFFER = 512 * 1024 * 1024;

/** Refuses an empty tree before anything is sent. */
export function checkNotEmpty(root: string, list: SourceFileList): void {
  if (list.files.length === 0) {
    throw new InvalidInputError(`nothing to build: no files under ${root}`, {
      code: "EmptySource",
      hint: "Run fast-build in your project folder (or pass --dir); check that .gitignore does not exclude everything.",
    });
  }
}

export interface SourceFileList {
  /** `git` when git chose the files, `gitignore` when the tree is not a repository. */
  mode: "git" | "gitignore";
  /** Paths relative to the root, `/`-separated, in byte order. Files and symlinks only. */
  files: string[];
  /** What was not listed and why: only with `{ explain: true }` (`fast-build plan`). */
  leftOut?: LeftOut;
}

/** Why a path of the tree is not sent. */
export type LeftOutReason =
  | "gitignored"
  | "cargo-target"
  | "git-dir"
  | "submodule-not-checked-out"
  | "nested-repository"
  | "not-a-regular-file"
  | "replaced-by-generated";

/** How many paths each reason left out, with the first few of them (an ignored folder counts once, as `dir/`). */
export type LeftOut = Partial<Record<LeftOutReason, { count: number; examples: string[] }>>;

/** Examples kept per reason: enough to recognise it, bounded for a tree with a huge ignored folder. */
export const LEFT_OUT_EXAMPLES = 5;

/** Records left-out paths, bounded: counts per reason and the first {@link LEFT_OUT_EXAMPLES}. */
export class LeftOutLog {
  constructor(readonly reasons: LeftOut = {}) {}

  add(reason: LeftOutReason, path: string): void {
    const entry = (this.reasons[reason] ??= { count: 0, examples: [] });
    entry.count++;
    if (entry.examples.length < LEFT_OUT_EXAMPLES) entry.examples.push(path);
  }
}

export interface ListOptions {
  /**
   * Also say what was left out and why. Off by default: it costs an extra `git ls-files` of the
   * ignored paths, and the normal path (dev, the archive benchmark) must not pay for it.
   */
  explain?: boolean;
}

export interface GeneratedFiles {
  prefix: string;
  files: readonly { path: string; content: string | Uint8Array }[];
}

/** A tree file by its path under the root, or a generated file with its bytes. */
export type Entry = string | { path: string; content: Buffer };

/** The tree's files plus the generated ones, in byte order of their paths (determinism). */
export function mergeGenerated(
  files: readonly string[],
  generated: readonly GeneratedFiles[] = [],
  log?: LeftOutLog,
): Entry[] {
  const prefixes = generated.map((group) => `${group.prefix.replace(/\/+$/, "")}/`);
  const entries: Entry[] = files.filter((f) => {
    const replaced = prefixes.some((prefix) => f.startsWith(prefix));
    if (replaced) log?.add("replaced-by-generated", f);
    return !replaced;
  });
  generated.forEach((group, i) => {
    for (const file of group.files) {
      entries.push({ path: prefixes[i] + file.path, content: Buffer.from(file.content) });
    }
  });
  return sortBytes(entries, (e) => (typeof e === "string" ? e : e.path));
}

/**
 * The builder's link rules, applied here first (src/core/linkRules.ts): each symlink as it is
 * met, then the whole tree's chains once every link is known. The builder must not see the
 * developer's disk, and an archive it would refuse is better refused before the upload.
 */
export class LinkChecker {
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

/** The files to send under `root`, in byte order of their paths. */
export async function listSourceFiles(root: string, options: ListOptions = {}): Promise<SourceFileList> {
  const inRepo = await run("git", ["-C", root, "rev-parse", "--is-inside-work-tree"]).then(
    ({ stdout }) => stdout.trim() === "true",
    // No git, or not a repository: fall back to reading .gitignore files ourselves.
    () => false,
  );
  const log = options.explain ? new LeftOutLog() : undefined;
  const files = inRepo ? await gitFiles(root, "", log) : walkFiles(root, log);
  if (log && inRepo) await gitIgnored(root, "", log);
  const kept = sortBytes(dropExcluded(files, log));
  return { mode: inRepo ? "git" : "gitignore", files: kept, ...(log ? { leftOut: log.reasons } : {}) };
}

/**
 * The ignored paths of one repository and of each checked-out submodule, as git reports them
 * (`--directory`: an ignored folder once, as `dir/`). Only for `explain`.
 */
async function gitIgnored(root: string, prefix: string, log: LeftOutLog): Promise<void> {
  const { stdout } = await run(
    "git",
    [
      "-C",
      join(root, prefix),
      "ls-files",
      "-z",
      "--others",
      "--ignored",
      "--exclude-standard",
      "--directory",
    ],
    { maxBuffer: GIT_MAX_BUFFER, encoding: "buffer" },
  );
  for (const name of splitNul(stdout)) {
    // Names that are not UTF-8 are only reported here, never sent: no refusal for them.
    const entry = name.toString("utf8");
    log.add("gitignored", prefix ? `${prefix}/${entry}` : entry);
  }
}

/**
 * Tracked and untracked-but-not-ignored files of one repository, then of each checked-out
 * submodule. git 2.39 refuses `--recurse-submodules` together with `--others`, so untracked files
 * of submodules would be lost that way: each submodule is listed by its own git instead.
 */
async function gitFiles(root: string, prefix: string, log?: LeftOutLog): Promise<string[]> {
  const { stdout } = await run(
    "git",
    ["-C", join(root, prefix), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    { maxBuffer: GIT_MAX_BUFFER, encoding: "buffer" },
  );
  const entries = [...new Set(splitNul(stdout).map((name) => utf8Name(name, prefix)))];
  const files: string[] = [];
  for (const entry of entries) {
    // "dir/": an untracked nested repository, opaque to git; not part of this tree's sources.
    if (entry.endsWith("/")) {
      log?.add("nested-repository", prefix ? `${prefix}/${entry}` : entry);
      continue;
    }
    const rel = prefix ? `${prefix}/${entry}` : entry;
    const info = lstatOrUndefined(join(root, rel));
    // Tracked but deleted in the working tree: the working tree is what we archive.
    if (!info) continue;
    if (info.isDirectory()) {
      // A gitlink: recurse when the submodule is checked out (it has its own .git).
      const checkedOut = lstatOrUndefined(join(root, rel, ".git")) !== undefined;
      if (checkedOut) {
        files.push(...(await gitFiles(root, rel, log)));
        if (log) await gitIgnored(root, rel, log);
      } else log?.add("submodule-not-checked-out", `${rel}/`);
      continue;
    }
    files.push(rel);
  }
  return files;
}

/** Outside git: walk the tree, honouring every .gitignore the way git does (deepest verdict wins). */
function walkFiles(root: string, log?: LeftOutLog): string[] {
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
      if (isIgnored(own, rel, isDir)) {
        log?.add("gitignored", isDir ? `${rel}/` : rel);
        continue;
      }
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
function dropExcluded(files: readonly string[], log?: LeftOutLog): string[] {
  const cargoDirs = new Set(
    files.filter((f) => f === "Cargo.toml" || f.endsWith("/Cargo.toml")).map((f) => posix.dirname(f)),
  );
  return files.filter((file) => {
    const parts = file.split("/");
    const dropped = parts.findIndex((part, i) => {
      if (part === ".git") return true;
      if (part !== "target" || i === parts.length - 1) return false;
      const parent = i === 0 ? "." : parts.slice(0, i).join("/");
      return i === 0 || cargoDirs.has(parent);
    });
    if (dropped >= 0 && log) log.add(parts[dropped] === ".git" ? "git-dir" : "cargo-target", file);
    return dropped < 0;
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

/** A listed path as it is now, read whole (so a size told with it matches its bytes). */
export type TreeEntry =
  | { type: "file"; path: string; bytes: Buffer; executable: boolean }
  | { type: "symlink"; path: string; target: string }
  | { type: "other"; path: string };

/**
 * Reads one listed path for the archive or the manifest: undefined when it was deleted since the
 * listing (git still tracks it: the working tree is what is sent); a symlink goes through the
 * builder's link rules as it is met; anything neither a file nor a symlink is `other`.
 */
export function readTreeEntry(root: string, rel: string, links: LinkChecker): TreeEntry | undefined {
  const full = join(root, rel);
  const info = lstatOrUndefined(full);
  if (!info) return undefined;
  if (info.isSymbolicLink()) {
    const target = readable(rel, () => readlinkSync(full));
    links.add(rel, target);
    return { type: "symlink", path: rel, target };
  }
  if (info.isFile()) {
    const bytes = readable(rel, () => readFileSync(full));
    return { type: "file", path: rel, bytes, executable: (info.mode & 0o111) !== 0 };
  }
  return { type: "other", path: rel };
}

export function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

/** Runs a read of `rel`; a file we may not read stops the archive with its name and what to do. */
export function readable<T>(rel: string, read: () => T): T {
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

export async function checkDirectory(root: string): Promise<void> {
  const info = await stat(root).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new InvalidInputError(`${root} is not a directory`, {
      code: "InvalidSourceDir",
      hint: "Pass --dir with your project's folder, or run fast-build inside it.",
    });
  }
}
