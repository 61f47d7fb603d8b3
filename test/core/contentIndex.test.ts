import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  indexOf,
  mergeIntoIndex,
  planPacksOf,
  storedContents,
  type PlannedPack,
} from "../../src/core/contentIndex.js";
import { CONTENT_STORE, type ContentIndex } from "../../src/core/sourceManifest.js";

const DAY_MS = 24 * 3600_000;
const sha = (c: string) => c.repeat(64);
const now = new Date("2026-06-01T00:00:00.000Z");
const daysAgo = (days: number) => new Date(now.getTime() - days * DAY_MS).toISOString();

const index: ContentIndex = {
  version: 1,
  packs: { "packs/old/0.gz": daysAgo(CONTENT_STORE.reuseDays + 1), "packs/new/0.gz": daysAgo(1) },
  contents: {
    [sha("a")]: { pack: "packs/old/0.gz", offset: 0, size: 3 },
    [sha("b")]: { pack: "packs/new/0.gz", offset: 0, size: 5 },
  },
};
const pack: PlannedPack = {
  name: "packs/this/0.gz",
  contents: [
    { sha256: sha("a"), size: 3 },
    { sha256: sha("c"), size: 2 },
  ],
};

describe("content index", () => {
  it("reads something that is not an index as an empty one", () => {
    assert.deepEqual(indexOf({ version: 2 }), { version: 1, packs: {}, contents: {} });
    assert.deepEqual(indexOf(undefined).contents, {});
  });

  it("counts a content stored only while its pack is younger than reuseDays", () => {
    const stored = storedContents(
      index,
      [
        { sha256: sha("a"), size: 3 },
        { sha256: sha("b"), size: 5 },
      ],
      now,
    );
    assert.deepEqual(Object.keys(stored), [sha("b")]);
  });

  it("merges a pack: stale packs and their entries go, new contents get their offsets, and again changes nothing", () => {
    const merged = mergeIntoIndex(index, [pack], now);
    assert.deepEqual(merged.packs, { "packs/new/0.gz": daysAgo(1), "packs/this/0.gz": now.toISOString() });
    assert.deepEqual(merged.contents[sha("a")], { pack: "packs/this/0.gz", offset: 0, size: 3 });
    assert.deepEqual(merged.contents[sha("c")], { pack: "packs/this/0.gz", offset: 3, size: 2 });
    assert.deepEqual(mergeIntoIndex(merged, [pack], new Date(now.getTime() + 60_000)), merged);
  });

  it("drops a pack no entry uses (its contents were indexed in a fresh pack already)", () => {
    const twin: PlannedPack = { name: "packs/twin/0.gz", contents: [{ sha256: sha("b"), size: 5 }] };
    assert.equal(mergeIntoIndex(index, [twin], now).packs["packs/twin/0.gz"], undefined);
  });

  it("plans each content once, per pack by ascending offset", () => {
    const plan = planPacksOf(
      { packs: [pack], stored: { [sha("b")]: { pack: "packs/new/0.gz", offset: 9, size: 5 } } },
      [
        { sha256: sha("c"), size: 2 },
        { sha256: sha("b"), size: 5 },
        { sha256: sha("a"), size: 3 },
      ],
    );
    assert.deepEqual(plan, [
      {
        pack: "packs/this/0.gz",
        contents: [
          { sha256: sha("a"), size: 3, offset: 0 },
          { sha256: sha("c"), size: 2, offset: 3 },
        ],
      },
      { pack: "packs/new/0.gz", contents: [{ sha256: sha("b"), size: 5, offset: 9 }] },
    ]);
  });
});
