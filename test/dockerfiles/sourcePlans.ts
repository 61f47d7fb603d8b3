/**
 * Source plans for the builder's tests, made the way the function app makes them
 * (src/core/sourceManifest.ts): the contents the store lacks are packed with `planPacks` and
 * served (gzip of the concatenated contents), and every plan says where each of its manifest's
 * contents is: in a pack of this build or of an earlier one.
 */
import { readdir, readFile, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import {
  canonicalManifest,
  manifestContents,
  manifestDigest,
  planPacks,
  type ContentLocation,
  type SourceManifest,
  type SourcePlan,
} from "../../src/core/sourceManifest.js";
import { manifestOf } from "../fixtures/manifestRules.js";
import type { FileServer } from "./helpers.js";

export type TreeSpec = Record<string, string | { content: string; executable: true } | { symlink: string }>;

/** A manifest (paths in byte order) and its contents from a path → content/symlink table. */
export function treeManifest(tree: TreeSpec) {
  const paths = Object.keys(tree).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return manifestOf(
    paths.map((path) => {
      const spec = tree[path]!;
      if (typeof spec === "string") return { path, type: "file" as const, content: spec };
      if ("symlink" in spec) return { path, type: "symlink" as const, target: spec.symlink };
      return { path, type: "file" as const, content: spec.content, executable: true };
    }),
  );
}

export interface Planned {
  plan: SourcePlan;
  digest: string;
  /** URLs of the packs this plan uploaded (its new contents). */
  newPacks: string[];
}

export class PackStore {
  /** Where each stored content is (the URL stands for the pack's blob name). */
  readonly index = new Map<string, ContentLocation>();

  constructor(private readonly server: FileServer) {}

  /** Packs and serves the contents the store lacks, then writes the plan for the manifest. */
  plan(manifest: SourceManifest, contents: ReadonlyMap<string, Buffer>): Planned {
    const lacking = manifestContents(manifest).filter((c) => !this.index.has(c.sha256));
    const newPacks = planPacks(lacking).map((pack) => {
      const data = Buffer.concat(pack.map((c) => contents.get(c.sha256)!));
      const url = this.server.serve(gzipSync(data));
      let offset = 0;
      for (const c of pack) {
        this.index.set(c.sha256, { pack: url, offset, size: c.size });
        offset += c.size;
      }
      return url;
    });
    return { plan: planFor(manifest, this.index), digest: manifestDigest(manifest), newPacks };
  }
}

/** The plan of a manifest whose contents are all at `index`'s locations. */
export function planFor(manifest: SourceManifest, index: ReadonlyMap<string, ContentLocation>): SourcePlan {
  const packs = new Map<string, SourcePlan["packs"][number]["contents"]>();
  for (const c of manifestContents(manifest)) {
    const at = index.get(c.sha256);
    if (!at) throw new Error(`no location for ${c.sha256}`);
    const list = packs.get(at.pack) ?? [];
    list.push({ sha256: c.sha256, size: c.size, offset: at.offset });
    packs.set(at.pack, list);
  }
  return {
    version: 1,
    sourceDigest: manifestDigest(manifest),
    manifest: canonicalManifest(manifest),
    packs: [...packs].map(([url, list]) => ({ url, contents: list.sort((a, b) => a.offset - b.offset) })),
  };
}

/** The GETs `url` received. */
export const hitsOf = (server: FileServer, url: string) => {
  const u = new URL(url);
  return server.hits.get(u.pathname + u.search) ?? 0;
};

/** A folder on disk as a tree table (files with their executable bit, symlinks). */
export async function treeOfFolder(root: string): Promise<TreeSpec> {
  const tree: TreeSpec = {};
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const rel = prefix + entry.name;
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await walk(full, `${rel}/`);
      else if (entry.isSymbolicLink()) tree[rel] = { symlink: await readlink(full) };
      else {
        const content = await readFile(full, "utf8");
        tree[rel] = (await stat(full)).mode & 0o111 ? { content, executable: true } : content;
      }
    }
  };
  await walk(root, "");
  return tree;
}
