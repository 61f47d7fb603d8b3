/**
 * The developer's tree as a manifest (content-addressed source, src/core/sourceManifest.ts): the
 * same files, generated files and link rules as the archive (src/cli/sourceTree.ts), each file
 * hashed where the archive would compress it. Only the manifest travels at the start; the contents
 * follow in packs, and only those the store lacks (src/cli/packs.ts).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidInputError } from "../core/errors.js";
import { defaultExtractLimits } from "../core/extractLimits.js";
import type { LinkLimits } from "../core/linkRules.js";
import {
  checkManifest,
  ManifestError,
  manifestDigest,
  MANIFEST_VERSION,
  type ManifestEntry,
  type SourceManifest,
} from "../core/sourceManifest.js";
import {
  checkDirectory,
  checkNotEmpty,
  LeftOutLog,
  LinkChecker,
  listSourceFiles,
  mergeGenerated,
  readable,
  readTreeEntry,
  type GeneratedFiles,
  type LeftOut,
  type SourceFileList,
} from "./sourceTree.js";

export interface ManifestOptions {
  /** Generated files added under their prefixes, as for the archive. */
  generated?: readonly GeneratedFiles[];
  /** The builder's link limits (default: the app's defaults, src/core/extractLimits.ts). */
  linkLimits?: LinkLimits;
  /** Also report what was left out and why (`fast-build plan`; costs one more git call). */
  explain?: boolean;
}

export interface SourceTree {
  manifest: SourceManifest;
  /** `sha256:<hex>` of the manifest's canonical text: the build's source digest. */
  digest: string;
  /** Files and symlinks in it. */
  fileCount: number;
  /** Size of the files' contents. */
  contentBytes: number;
  mode: SourceFileList["mode"];
  /** Paths left out because they are neither files nor symlinks. */
  skipped: string[];
  /** With `explain`: every path left out, by reason (these `skipped` ones included). */
  leftOut?: LeftOut;
  /** A content's bytes, read again from the tree and checked against its sha256. */
  read(sha256: string): Buffer;
}

/**
 * Hashes the working tree under `root` into a manifest. Refuses what the archive refuses (a
 * symlink leaving the tree, an empty tree, a name that is not UTF-8) and what the builder's
 * manifest rules refuse; the size limits are the server's to apply.
 */
export async function createManifest(root: string, options: ManifestOptions = {}): Promise<SourceTree> {
  await checkDirectory(root);
  const list = await listSourceFiles(root, { explain: options.explain ?? false });
  checkNotEmpty(root, list);
  const log = list.leftOut && new LeftOutLog(list.leftOut);
  const limits = { ...defaultExtractLimits(), ...options.linkLimits };
  const links = new LinkChecker(limits);
  const where = new Map<string, string | Buffer>();
  const entries: ManifestEntry[] = [];
  const skipped: string[] = [];
  let contentBytes = 0;
  const addFile = (path: string, bytes: Buffer, executable: boolean, from: string | Buffer) => {
    const sha256 = hash(bytes);
    if (!where.has(sha256)) where.set(sha256, from);
    entries.push({ path, type: "file", size: bytes.length, sha256, executable });
    contentBytes += bytes.length;
  };
  for (const entry of mergeGenerated(list.files, options.generated, log)) {
    if (typeof entry !== "string") {
      addFile(entry.path, entry.content, false, entry.content);
      continue;
    }
    const read = readTreeEntry(root, entry, links);
    if (!read) continue;
    if (read.type === "symlink") {
      entries.push({ path: read.path, type: "symlink", target: read.target });
    } else if (read.type === "file") {
      addFile(read.path, read.bytes, read.executable, read.path);
    } else {
      skipped.push(read.path);
      log?.add("not-a-regular-file", read.path);
    }
  }
  links.checkTree();
  const manifest: SourceManifest = { version: MANIFEST_VERSION, entries };
  // Paths and order here; the server applies its own size limits, which the CLI does not know.
  const unbounded = { maxFiles: Infinity, maxBytes: Infinity, maxFileBytes: Infinity };
  try {
    checkManifest(manifest, { ...limits, ...unbounded });
  } catch (error) {
    if (!(error instanceof ManifestError)) throw error;
    throw new InvalidInputError(`the tree cannot be sent: ${error.message}`, {
      code: `InvalidManifest:${error.code}`,
      hint: "Rename or remove the entry named above, or add it to .gitignore.",
      cause: error,
    });
  }
  return {
    manifest,
    digest: manifestDigest(manifest),
    fileCount: entries.length,
    contentBytes,
    mode: list.mode,
    skipped,
    ...(log ? { leftOut: log.reasons } : {}),
    read(sha256) {
      const from = where.get(sha256);
      if (from === undefined) throw new Error(`no content ${sha256} in this tree`);
      if (typeof from !== "string") return from;
      const bytes = readable(from, () => readFileSync(join(root, from)));
      if (hash(bytes) !== sha256) {
        throw new InvalidInputError(`${from} changed while it was being sent`, {
          code: "SourceChanged",
          hint: "Run the command again once nothing is writing to the project folder.",
        });
      }
      return bytes;
    },
  };
}

function hash(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}
