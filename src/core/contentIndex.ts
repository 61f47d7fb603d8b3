/**
 * What the function app decides over the content store (the shapes and the packing rule are
 * src/core/sourceManifest.ts's): which of a manifest's contents an environment's index still
 * holds, how an accepted upload joins the index, and the builder's plan. Pure: the handlers read
 * and write the blobs (src/functions/startBuild.ts, sourceUploaded.ts).
 */
import {
  CONTENT_STORE,
  contentIndexSchema,
  type ContentIndex,
  type ContentLocation,
  type ContentRef,
  type PendingSource,
} from "./sourceManifest.js";

const DAY_MS = 24 * 3600_000;

/** A planned pack: its blob name and the contents it holds, in order. */
export type PlannedPack = PendingSource["packs"][number];

/**
 * The index as read (absent, or not an index: empty; it is rebuilt by the next accepted upload).
 * The same value read again (the store answers an unchanged blob with the value it had) is not
 * checked again.
 */
export function indexOf(value: unknown): ContentIndex {
  if (typeof value === "object" && value !== null) {
    const known = CHECKED.get(value);
    if (known) return known;
  }
  const parsed = contentIndexSchema.safeParse(value);
  const index = parsed.success ? parsed.data : { version: 1 as const, packs: {}, contents: {} };
  if (typeof value === "object" && value !== null) CHECKED.set(value, index);
  return index;
}

const CHECKED = new WeakMap<object, ContentIndex>();

/**
 * A pack is reused while it is younger than `CONTENT_STORE.reuseDays`: the lifecycle rule deletes
 * it after `retentionDays`, so a build that takes it still has it for the days in between.
 */
export function isFreshPack(index: ContentIndex, pack: string, now: Date): boolean {
  const accepted = index.packs[pack];
  return accepted !== undefined && now.getTime() - Date.parse(accepted) < CONTENT_STORE.reuseDays * DAY_MS;
}

/** The contents the index holds in a fresh pack, by sha256. */
export function storedContents(
  index: ContentIndex,
  contents: readonly ContentRef[],
  now: Date,
): Record<string, ContentLocation> {
  const stored: Record<string, ContentLocation> = {};
  for (const content of contents) {
    const location = index.contents[content.sha256];
    if (location && location.size === content.size && isFreshPack(index, location.pack, now)) {
      stored[content.sha256] = location;
    }
  }
  return stored;
}

/** Where each content of a pack is: offsets in its gzip output, in order. */
export function packLocations(pack: PlannedPack): [string, ContentLocation][] {
  let offset = 0;
  return pack.contents.map((content) => {
    const location = { pack: pack.name, offset, size: content.size };
    offset += content.size;
    return [content.sha256, location];
  });
}

/**
 * The index after `packs` were accepted at `now`: stale packs and their entries dropped, the new
 * contents added (a content already indexed in a fresh pack keeps that place), and packs no entry
 * uses dropped. Merging the same packs again changes nothing (a retried upload report).
 */
export function mergeIntoIndex(index: ContentIndex, packs: readonly PlannedPack[], now: Date): ContentIndex {
  const fresh = Object.entries(index.packs).filter(([name]) => isFreshPack(index, name, now));
  const acceptedPacks: Record<string, string> = Object.fromEntries(fresh);
  for (const pack of packs) acceptedPacks[pack.name] ??= now.toISOString();
  const contents: Record<string, ContentLocation> = Object.fromEntries(
    Object.entries(index.contents).filter(([, location]) => Object.hasOwn(acceptedPacks, location.pack)),
  );
  for (const pack of packs) {
    for (const [sha256, location] of packLocations(pack)) contents[sha256] ??= location;
  }
  const used = new Set(Object.values(contents).map((location) => location.pack));
  const merged: ContentIndex = {
    version: 1,
    packs: Object.fromEntries(Object.entries(acceptedPacks).filter(([name]) => used.has(name))),
    contents,
  };
  // Written, then read back unchanged by this instance: already an index.
  CHECKED.set(merged, merged);
  return merged;
}

/**
 * For every pack holding a content of the manifest, the contents to take from it by offset,
 * ascending (each distinct content once; packs in the order their first content appears).
 */
export function planPacksOf(
  pending: Pick<PendingSource, "packs"> & { stored: Record<string, ContentLocation> },
  contents: readonly ContentRef[],
): { pack: string; contents: (ContentRef & { offset: number })[] }[] {
  const uploaded = new Map(pending.packs.flatMap((pack) => packLocations(pack)));
  const byPack = new Map<string, (ContentRef & { offset: number })[]>();
  for (const content of contents) {
    const location = pending.stored[content.sha256] ?? uploaded.get(content.sha256);
    if (!location) throw new Error(`content ${content.sha256} is neither stored nor in a pack`);
    const list = byPack.get(location.pack) ?? [];
    list.push({ sha256: content.sha256, size: content.size, offset: location.offset });
    byPack.set(location.pack, list);
  }
  return [...byPack].map(([pack, list]) => ({
    pack,
    contents: list.sort((a, b) => a.offset - b.offset),
  }));
}
