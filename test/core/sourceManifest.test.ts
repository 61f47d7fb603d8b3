import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { defaultExtractLimits } from "../../src/core/extractLimits.js";
import {
  applyManifestDelta,
  canonicalManifest,
  checkManifest,
  compareManifestPaths,
  diffManifests,
  ManifestError,
  manifestContents,
  manifestDigest,
  manifestSchema,
  PACKS,
  planPacks,
  type ContentRef,
  type ManifestDelta,
  type SourceManifest,
} from "../../src/core/sourceManifest.js";
import { MANIFEST_CASES } from "../fixtures/manifestRules.js";

const hex = (c: string) => c.repeat(64);

describe("checkManifest: the manifest rules table (test/fixtures/manifest-rules.json)", () => {
  for (const c of MANIFEST_CASES) {
    it(`${c.checkManifest === undefined ? "accepts" : `refuses (${c.checkManifest})`} ${c.name}`, () => {
      assert.equal(manifestSchema.safeParse(c.manifest).success, true, "the case is a well-formed manifest");
      const limits = { ...defaultExtractLimits(), ...c.limits };
      if (c.checkManifest === undefined) {
        checkManifest(c.manifest, limits);
        return;
      }
      assert.throws(
        () => checkManifest(c.manifest, limits),
        (error: unknown) => error instanceof ManifestError && error.code === c.checkManifest,
      );
    });
  }
});

const sample: SourceManifest = {
  version: 1,
  entries: [
    { path: "a.rs", type: "file", size: 3, sha256: hex("a"), executable: false },
    { path: "bin/run", type: "file", size: 9, sha256: hex("b"), executable: true },
    { path: "link", type: "symlink", target: "a.rs" },
  ],
};

describe("canonicalManifest and manifestDigest", () => {
  it("write the same text for the same manifest, whatever the key order it was read with", () => {
    const shuffled = JSON.parse(
      '{"entries":[{"executable":false,"sha256":"' +
        hex("a") +
        '","size":3,"type":"file","path":"a.rs"},{"sha256":"' +
        hex("b") +
        '","executable":true,"path":"bin/run","size":9,"type":"file"},{"target":"a.rs","type":"symlink","path":"link"}],"version":1}',
    ) as SourceManifest;
    assert.equal(canonicalManifest(shuffled), canonicalManifest(sample));
    assert.equal(manifestDigest(shuffled), manifestDigest(sample));
  });

  it("is compact JSON with keys in a fixed order", () => {
    assert.equal(
      canonicalManifest(sample),
      `{"version":1,"entries":[{"path":"a.rs","type":"file","size":3,"sha256":"${hex("a")}","executable":false},` +
        `{"path":"bin/run","type":"file","size":9,"sha256":"${hex("b")}","executable":true},` +
        `{"path":"link","type":"symlink","target":"a.rs"}]}`,
    );
  });

  it("the digest is sha256 of the canonical text as UTF-8, and changes with any entry", () => {
    const text = canonicalManifest(sample);
    assert.equal(manifestDigest(sample), `sha256:${createHash("sha256").update(text, "utf8").digest("hex")}`);
    const changed: SourceManifest = {
      version: 1,
      entries: sample.entries.map((e) =>
        e.type === "file" && e.path === "bin/run" ? { ...e, executable: false } : e,
      ),
    };
    assert.notEqual(manifestDigest(changed), manifestDigest(sample));
  });

  it("lists each content once, in the order its first path appears", () => {
    const manifest: SourceManifest = {
      version: 1,
      entries: [
        { path: "a", type: "file", size: 1, sha256: hex("c"), executable: false },
        { path: "b", type: "file", size: 2, sha256: hex("d"), executable: false },
        { path: "c", type: "file", size: 1, sha256: hex("c"), executable: true },
      ],
    };
    assert.deepEqual(manifestContents(manifest), [
      { sha256: hex("c"), size: 1 },
      { sha256: hex("d"), size: 2 },
    ]);
  });
});

describe("planPacks", () => {
  const content = fc
    .tuple(fc.nat({ max: 1 << 20 }), fc.constantFrom(1, 1, 1, 16, 256))
    .map(([size, scale]): number => Math.min(size * scale, 64 << 20));
  const contentLists = fc
    .array(content, { minLength: 1, maxLength: 300 })
    .map((sizes) => sizes.map((size, i): ContentRef => ({ sha256: i.toString(16).padStart(64, "0"), size })));

  it("has no packs for no contents", () => {
    assert.deepEqual(planPacks([]), []);
  });

  it("never makes an empty pack, at most maxPacks, and keeps the contents' order", () => {
    fc.assert(
      fc.property(contentLists, (contents) => {
        const packs = planPacks(contents);
        assert.ok(packs.length >= 1 && packs.length <= PACKS.maxPacks);
        assert.ok(packs.every((p) => p.length > 0));
        assert.deepEqual(packs.flat(), contents);
      }),
      { numRuns: 300 },
    );
  });

  it("makes ceil(total / targetBytes) packs of about equal size (within one content of the share)", () => {
    fc.assert(
      fc.property(contentLists, (contents) => {
        const packs = planPacks(contents);
        const total = contents.reduce((s, c) => s + c.size, 0);
        const wanted = Math.min(
          PACKS.maxPacks,
          contents.length,
          Math.max(1, Math.ceil(total / PACKS.targetBytes)),
        );
        assert.ok(packs.length <= wanted);
        const share = total / wanted;
        const largest = Math.max(...contents.map((c) => c.size));
        for (const pack of packs) {
          assert.ok(
            pack.reduce((s, c) => s + c.size, 0) <= share + largest,
            "no pack holds more than its share",
          );
        }
      }),
      { numRuns: 300 },
    );
  });

  it("splits many equal contents into equal packs", () => {
    const contents = Array.from({ length: 64 }, (_, i): ContentRef => ({
      sha256: i.toString(16).padStart(64, "0"),
      size: PACKS.targetBytes / 4,
    }));
    assert.deepEqual(
      planPacks(contents).map((p) => p.length),
      Array.from({ length: 16 }, () => 4),
    );
  });

  it("gives a content larger than the target a pack of its own", () => {
    const small = { sha256: hex("1"), size: 1000 };
    const big = { sha256: hex("2"), size: 3 * PACKS.targetBytes };
    const packs = planPacks([small, big, { ...small, sha256: hex("3") }]);
    assert.equal(packs.length, 3);
    assert.deepEqual(packs[1], [big]);
  });
});

describe("diffManifests and applyManifestDelta", () => {
  const entry = fc.oneof(
    fc.record({
      type: fc.constant("file" as const),
      size: fc.nat({ max: 1000 }),
      sha256: fc.constantFrom("a", "b", "c").map(hex),
      executable: fc.boolean(),
    }),
    fc.record({ type: fc.constant("symlink" as const), target: fc.constantFrom("x", "y") }),
  );
  const manifest = fc
    .dictionary(fc.constantFrom("a", "b", "c/d", "c/é", "e", "f/g", "Z"), entry, { minKeys: 1 })
    .map((byPath): SourceManifest => ({
      version: 1,
      entries: Object.entries(byPath)
        .map(([path, e]) => ({ path, ...e }))
        .sort((x, y) => compareManifestPaths(x.path, y.path)),
    }));

  it("a delta applied to its base gives back exactly the next manifest (same digest)", () => {
    fc.assert(
      fc.property(manifest, manifest, (base, next) => {
        const delta = diffManifests(base, next, manifestDigest(base));
        assert.equal(manifestDigest(applyManifestDelta(base, delta)), manifestDigest(next));
        assert.equal(delta.base, manifestDigest(base));
      }),
    );
  });

  it("says only what changed: nothing for the same manifest, one entry for one edit", () => {
    assert.deepEqual(diffManifests(sample, sample, manifestDigest(sample)).changed, []);
    const changed = { path: "a.rs", type: "file", size: 4, sha256: hex("f"), executable: false } as const;
    const edited: SourceManifest = { version: 1, entries: [changed, ...sample.entries.slice(1)] };
    const delta = diffManifests(sample, edited, manifestDigest(sample));
    assert.deepEqual(delta.changed, [changed]);
    assert.deepEqual(delta.removed, []);
  });

  it("refuses a removed path the base lacks, and a path named twice", () => {
    const base = manifestDigest(sample);
    const refuses = (delta: ManifestDelta, code: string) =>
      assert.throws(
        () => applyManifestDelta(sample, delta),
        (error: unknown) => error instanceof ManifestError && error.code === code,
      );
    refuses({ base, changed: [], removed: ["not-there"] }, "DeltaBase");
    const path = sample.entries[0]!.path;
    refuses({ base, changed: [sample.entries[0]!], removed: [path] }, "DeltaTwice");
    refuses({ base, changed: [sample.entries[0]!, sample.entries[0]!], removed: [] }, "DeltaTwice");
  });
});
