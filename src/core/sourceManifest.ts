/**
 * Content-addressed source (issue 10, item 4): the developer's tree as a manifest (every path with
 * its content's sha256, size and mode, and every symlink), stored contents kept in packs, and the
 * builder's plan. The source digest of such a build is the manifest's: sha256 of its canonical
 * bytes (`canonicalManifest`). One definition of every rule here, used by the CLI (which makes the
 * manifest and the packs), the function app (which checks the manifest, says which contents the
 * store lacks, verifies the packs and writes the builder's plan) and, for the plan's shape, by
 * dockerfiles/safe_extract.py (`--plan`), which materializes the tree with the extraction rules.
 *
 * The store, in the content container (`FASTBUILD_CONTENT_CONTAINER`):
 * - `packs/<buildId>/<n>.gz`: one pack = gzip of the concatenated contents it was planned with
 *   (`planPacks`), uploaded by the CLI through a create/write SAS for that blob only;
 * - `index/<environment>.json` (`ContentIndex`): where each stored content is (pack, offset, size),
 *   updated with an ETag check by each accepted upload; entries whose pack is older than
 *   `CONTENT_STORE.reuseDays` are not reused (the lifecycle rule deletes packs after `retentionDays`);
 * - `pending/<buildId>.json` (`PendingSource`): the packs the start of a build asked for;
 * - `plans/<buildId>.json` (`SourcePlan`): what the builder fetches (read SAS per pack), written by
 *   the start beside the pending request, since every content's place is known then (stored, or
 *   at its offset in a planned pack); the orchestration names it to the builder only once the
 *   source report has verified the packs, and the builder checks every content's sha256 again;
 * - `manifests/<hex>.json`: every manifest a build started with, so the next build of the tree
 *   can send only its change (`ManifestDelta`); a delta whose base is gone is answered
 *   `BaseManifestUnknown`, and the client sends the whole manifest instead.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import type { ExtractLimits } from "./extractLimits.js";
import { checkLinkTree, checkSymlink, LinkRuleError } from "./linkRules.js";
import { ruleSchema, SOURCE_DIGEST } from "./rules.js";

export const MANIFEST_VERSION = 1;

/** The store's ages, in days; infra/app/storage.bicep's lifecycle rule deletes after `retentionDays` (a test compares). */
export const CONTENT_STORE = { retentionDays: 30, reuseDays: 20 } as const;

/**
 * Packs: about `targetBytes` of contents each (a bigger content gets a pack of its own), at most
 * `maxPacks` per build (then they grow), uploaded `uploadConcurrency` at a time.
 */
export const PACKS = {
  targetBytes: 4 * 1024 * 1024,
  maxPacks: 32,
  uploadConcurrency: 4,
  gzipLevel: 6,
} as const;

const SHA256_HEX = /^[0-9a-f]{64}$/;

export const manifestEntrySchema = z.discriminatedUnion("type", [
  z
    .object({
      path: z.string().min(1),
      type: z.literal("file"),
      size: z.number().int().min(0),
      sha256: z.string().regex(SHA256_HEX, "64 lower-case hex digits"),
      executable: z.boolean(),
    })
    .strict(),
  z
    .object({
      path: z.string().min(1),
      type: z.literal("symlink"),
      target: z.string().min(1),
    })
    .strict(),
]);
export type ManifestEntry = z.infer<typeof manifestEntrySchema>;
export type FileEntry = Extract<ManifestEntry, { type: "file" }>;

export const manifestSchema = z
  .object({ version: z.literal(MANIFEST_VERSION), entries: z.array(manifestEntrySchema).min(1) })
  .strict();
export type SourceManifest = z.infer<typeof manifestSchema>;

/**
 * The manifest's canonical text: keys in a fixed order, no spaces, entries as given (they must be
 * in byte order of their paths, `checkManifest`). Its sha256 is the source digest.
 */
export function canonicalManifest(manifest: SourceManifest): string {
  const entries = manifest.entries.map((e) =>
    e.type === "file"
      ? { path: e.path, type: e.type, size: e.size, sha256: e.sha256, executable: e.executable }
      : { path: e.path, type: e.type, target: e.target },
  );
  return JSON.stringify({ version: manifest.version, entries });
}

export function manifestDigest(manifest: SourceManifest): string {
  return `sha256:${createHash("sha256").update(canonicalManifest(manifest), "utf8").digest("hex")}`;
}

/**
 * A manifest said as the change from one the store already holds (`contentBlobNames.manifest`):
 * the entries that are new or differ, and the paths that are gone. A one-line change of a
 * 2,000-file tree is one entry, where the whole manifest is a quarter of the archive's bytes.
 */
export const manifestDeltaSchema = z
  .object({
    /** The digest of the manifest this one is a change of. */
    base: ruleSchema(SOURCE_DIGEST),
    changed: z.array(manifestEntrySchema),
    removed: z.array(z.string().min(1)),
  })
  .strict();
export type ManifestDelta = z.infer<typeof manifestDeltaSchema>;

/** Byte order of paths, the manifest's order (`checkManifest`). */
export function compareManifestPaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** What turns `base` into `next` (`applyManifestDelta(base, diffManifests(base, next))` equals `next`). */
export function diffManifests(base: SourceManifest, next: SourceManifest, baseDigest: string): ManifestDelta {
  const before = new Map(base.entries.map((e) => [e.path, canonicalEntry(e)]));
  const changed = next.entries.filter((e) => before.get(e.path) !== canonicalEntry(e));
  const paths = new Set(next.entries.map((e) => e.path));
  const removed = base.entries.filter((e) => !paths.has(e.path)).map((e) => e.path);
  return { base: baseDigest, changed, removed };
}

/**
 * The manifest a delta describes: `base` without `removed`, with `changed` put in (replacing the
 * entry of the same path), in byte order. A removed path the base lacks, or a path both changed and
 * removed or named twice, is refused: such a delta was not made from this base.
 */
export function applyManifestDelta(base: SourceManifest, delta: ManifestDelta): SourceManifest {
  const entries = new Map(base.entries.map((e) => [e.path, e]));
  for (const path of delta.removed) {
    if (!entries.delete(path)) {
      throw new ManifestError(
        "DeltaBase",
        `${JSON.stringify(path)} is removed but the base has no such entry`,
      );
    }
  }
  const named = new Set(delta.removed);
  for (const entry of delta.changed) {
    if (named.has(entry.path)) {
      throw new ManifestError("DeltaTwice", `${JSON.stringify(entry.path)} is named twice in the change`);
    }
    named.add(entry.path);
    entries.set(entry.path, entry);
  }
  const merged = [...entries.values()].sort((a, b) => compareManifestPaths(a.path, b.path));
  return { version: MANIFEST_VERSION, entries: merged };
}

function canonicalEntry(entry: ManifestEntry): string {
  return canonicalManifest({ version: MANIFEST_VERSION, entries: [entry] });
}

/** Why a manifest is refused; callers map the code to their own error (400 at the API, the CLI's exit). */
export class ManifestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ManifestError";
  }
}

/**
 * The extraction rules, for a manifest (safe_extract.py applies the same to the tree it writes):
 * clean relative paths (no `/` at the start, no `.`, `..` or empty parts, no backslash or NUL),
 * strictly increasing byte order (so no duplicates), nothing under a file or a symlink, the
 * limits of `ExtractLimits`, and the link rules of src/core/linkRules.ts.
 */
export function checkManifest(manifest: SourceManifest, limits: ExtractLimits): void {
  const { entries } = manifest;
  if (entries.length > limits.maxFiles) {
    throw new ManifestError(
      "TooManyFiles",
      `the tree has ${entries.length} entries, more than ${limits.maxFiles}`,
    );
  }
  const links = new Map<string, string>();
  let bytes = 0;
  let previous: Buffer | undefined;
  let previousPath = "";
  for (const entry of entries) {
    checkPath(entry.path, limits);
    const current = Buffer.from(entry.path, "utf8");
    if (previous && Buffer.compare(previous, current) >= 0) {
      throw new ManifestError(
        "ManifestOrder",
        `${JSON.stringify(entry.path)} comes after ${JSON.stringify(previousPath)}: entries must be unique and in byte order of their paths`,
      );
    }
    previous = current;
    previousPath = entry.path;
    if (entry.type === "file") {
      if (entry.size > limits.maxFileBytes) {
        throw new ManifestError(
          "FileTooLarge",
          `${JSON.stringify(entry.path)} is ${entry.size} bytes, more than ${limits.maxFileBytes}`,
        );
      }
      bytes += entry.size;
      if (bytes > limits.maxBytes) {
        throw new ManifestError("TreeTooLarge", `the tree's files hold more than ${limits.maxBytes} bytes`);
      }
    } else {
      links.set(entry.path, entry.target);
      guarded(() => checkSymlink(entry.path, entry.target, links.size, limits));
    }
  }
  const names = new Set(entries.map((e) => e.path));
  for (const entry of entries) {
    for (let slash = entry.path.indexOf("/"); slash > 0; slash = entry.path.indexOf("/", slash + 1)) {
      const parent = entry.path.slice(0, slash);
      if (names.has(parent)) {
        throw new ManifestError(
          "ThroughLink",
          `${JSON.stringify(entry.path)} goes through ${JSON.stringify(parent)}, which is a file or a symlink`,
        );
      }
    }
  }
  guarded(() => checkLinkTree(links, limits.maxLinkDepth));
}

function checkPath(path: string, limits: ExtractLimits): void {
  if (path.includes("\0") || path.includes("\\")) {
    throw new ManifestError("BadPath", `${JSON.stringify(path)}: no NUL or backslash in paths`);
  }
  // A second character ":" reads as a drive letter (safe_extract.py's clean_name refuses it too).
  if (path.startsWith("/") || path[1] === ":") {
    throw new ManifestError("AbsolutePath", `${JSON.stringify(path)} is absolute`);
  }
  // A lone surrogate has no UTF-8 form: the builder could not write the name it was given.
  if (/\p{Cs}/u.test(path)) {
    throw new ManifestError("BadPath", `${JSON.stringify(path)} is not valid Unicode`);
  }
  if (path.split("/").some((part) => part === "" || part === "." || part === "..")) {
    throw new ManifestError("BadPath", `${JSON.stringify(path)}: no empty, "." or ".." parts`);
  }
  if (Buffer.byteLength(path, "utf8") > limits.maxPathBytes) {
    throw new ManifestError(
      "PathTooLong",
      `${JSON.stringify(path)} is longer than ${limits.maxPathBytes} bytes`,
    );
  }
}

function guarded(check: () => void): void {
  try {
    check();
  } catch (error) {
    if (error instanceof LinkRuleError) throw new ManifestError(`Link:${error.refusal}`, error.message);
    throw error;
  }
}

/** A content: its sha256 (hex) and size. */
export interface ContentRef {
  sha256: string;
  size: number;
}

/** The distinct contents of a manifest, in the order their first paths appear. */
export function manifestContents(manifest: SourceManifest): ContentRef[] {
  const seen = new Map<string, ContentRef>();
  for (const e of manifest.entries) {
    if (e.type === "file" && !seen.has(e.sha256)) seen.set(e.sha256, { sha256: e.sha256, size: e.size });
  }
  return [...seen.values()];
}

/**
 * Splits contents (in order) into packs of about equal size: ceil(total / targetBytes) of them,
 * at most `maxPacks`; never an empty pack. The one packing rule: the API plans, the CLI writes
 * exactly this, the API verifies it.
 */
export function planPacks(contents: readonly ContentRef[]): ContentRef[][] {
  if (contents.length === 0) return [];
  const total = contents.reduce((sum, c) => sum + c.size, 0);
  const count = Math.min(PACKS.maxPacks, contents.length, Math.max(1, Math.ceil(total / PACKS.targetBytes)));
  const share = total / count;
  const packs: ContentRef[][] = [[]];
  let filled = 0;
  for (const content of contents) {
    let pack = packs[packs.length - 1]!;
    if (pack.length > 0 && filled + content.size / 2 > share * packs.length && packs.length < count) {
      pack = [];
      packs.push(pack);
    }
    pack.push(content);
    filled += content.size;
  }
  return packs;
}

/** Where a stored content is: in pack `pack` (a blob name), `size` bytes from `offset` of its gzip stream's output. */
export interface ContentLocation {
  pack: string;
  offset: number;
  size: number;
}

export const contentIndexSchema = z
  .object({
    version: z.literal(1),
    /** Pack blob name → when it was accepted (ISO time). */
    packs: z.record(z.string(), z.iso.datetime()),
    /** Content sha256 (hex) → location. */
    contents: z.record(
      z.string(),
      z.object({ pack: z.string(), offset: z.number().int().min(0), size: z.number().int().min(0) }).strict(),
    ),
  })
  .strict();
export type ContentIndex = z.infer<typeof contentIndexSchema>;

/** What the start of a build asked the CLI to upload: the source report verifies exactly these. */
export interface PendingSource {
  version: 2;
  sourceDigest: string;
  /** The packs to be uploaded: blob name and contents in order. */
  packs: { name: string; contents: ContentRef[] }[];
}

/**
 * What the builder fetches (FASTBUILD_SOURCE_PLAN_URL): the manifest's exact text (its sha256 is
 * FASTBUILD_SOURCE_DIGEST) and, for every pack holding a content of it, a read URL and the
 * contents to take from it (by offset in the pack's gzip output, ascending).
 */
export interface SourcePlan {
  version: 1;
  sourceDigest: string;
  manifest: string;
  packs: { url: string; contents: (ContentRef & { offset: number })[] }[];
}

export const contentBlobNames = {
  pack: (buildId: string, n: number) => `packs/${buildId}/${n}.gz`,
  index: (environment: string) => `index/${encodeURIComponent(environment)}.json`,
  pending: (buildId: string) => `pending/${buildId}.json`,
  plan: (buildId: string) => `plans/${buildId}.json`,
  /** A manifest by its digest (`sha256:<hex>`), the base a later build's delta names. */
  manifest: (digest: string) => `manifests/${digest.replace(/^sha256:/, "")}.json`,
} as const;
