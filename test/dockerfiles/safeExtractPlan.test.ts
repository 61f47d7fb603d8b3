/**
 * dockerfiles/safe_extract.py --plan: the builder's side of content-addressed source. Packs are
 * served over real HTTP on loopback and counted; the cache is a real folder that tests delete,
 * damage and bound.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { CONTENT_CACHE_LIMIT } from "../../src/core/extractLimits.js";
import { canonicalManifest, type SourcePlan } from "../../src/core/sourceManifest.js";
import { MANIFEST_CASES, sha256Hex } from "../fixtures/manifestRules.js";
import { run, SAFE_EXTRACT, startFileServer, type FileServer } from "./helpers.js";
import { limitEnv } from "./hostileArchives.js";
import { hitsOf, PackStore, planFor, treeManifest, type TreeSpec } from "./sourcePlans.js";

let scratch: string;
let server: FileServer;
let counter = 0;

const TREE: TreeSpec = {
  "Cargo.toml": '[package]\nname = "app"\n',
  "src/main.rs": 'fn main() { println!("v1"); }\n',
  "src/lib.rs": "pub fn lib() {}\n",
  "README.md": "# app\n",
  "scripts/run.sh": { content: "#!/bin/sh\necho run\n", executable: true },
  "docs/LICENSE": { symlink: "../README.md" },
  "copy.rs": "pub fn lib() {}\n",
};

interface Materialized {
  code: number;
  output: string;
  dest: string;
}

/** Runs `--plan` with this plan (or plan text) into a fresh folder, with `cache` as the cache. */
async function materialize(
  plan: SourcePlan | string,
  digest: string,
  cache: string,
  env: Record<string, string> = {},
): Promise<Materialized> {
  const dir = join(scratch, `run${counter++}`);
  await mkdir(dir);
  const planFile = join(dir, "plan.json");
  await writeFile(planFile, typeof plan === "string" ? plan : JSON.stringify(plan));
  const dest = join(dir, "src");
  const result = await run(
    "python3",
    [SAFE_EXTRACT, "--plan", planFile, "--cache", cache, "--digest", digest, dest],
    { FASTBUILD_SOURCE_MAX_BYTES: String(64 << 20), ...env },
  );
  return { code: result.code, output: result.output, dest };
}

const exists = (path: string) =>
  lstat(path).then(
    () => true,
    () => false,
  );

async function cacheEntries(cache: string): Promise<string[]> {
  return (await readdir(cache).catch(() => [])).filter((n) => !n.startsWith(".")).sort();
}

function assertRefused(r: Materialized, code: string) {
  assert.equal(r.code, 3, r.output);
  assert.match(r.output, new RegExp(`^refused: ${code}: `, "m"));
}

describe("safe_extract.py --plan", () => {
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "fb-plan-"));
    server = await startFileServer();
  });
  after(async () => {
    await server?.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  describe("a cache across builds", () => {
    let store: PackStore;
    let cache: string;
    const first = treeManifest(TREE);

    before(() => {
      store = new PackStore(server);
      cache = join(scratch, "cache-builds");
    });

    it("a first build (empty cache) fetches every content and writes the tree: files, modes, symlinks", async () => {
      const { plan, digest, newPacks } = store.plan(first.manifest, first.contents);
      const r = await materialize(plan, digest, cache);
      assert.equal(r.code, 0, r.output);
      assert.match(
        r.output,
        /^source: 6 files, 1 symlinks, 0 contents from the builder's cache, 5 fetched \(1 pack, \d+ bytes\)/m,
      );
      assert.equal(await readFile(join(r.dest, "src/main.rs"), "utf8"), TREE["src/main.rs"]);
      assert.equal(await readFile(join(r.dest, "copy.rs"), "utf8"), TREE["copy.rs"]);
      assert.equal(await readlink(join(r.dest, "docs/LICENSE")), "../README.md");
      assert.equal((await stat(join(r.dest, "scripts/run.sh"))).mode & 0o7777, 0o755);
      assert.equal((await stat(join(r.dest, "README.md"))).mode & 0o7777, 0o644);
      // Copies, not links into the cache: a build may change its tree.
      assert.equal((await stat(join(r.dest, "src/main.rs"))).nlink, 1);
      assert.deepEqual(await cacheEntries(cache), [...first.contents.keys()].sort());
      assert.deepEqual(
        newPacks.map((u) => hitsOf(server, u)),
        [1],
      );
    });

    it("a second build of the same tree takes everything from the cache and fetches no pack", async () => {
      const { plan, digest } = store.plan(first.manifest, first.contents);
      const before = [...server.hits.values()].reduce((a, b) => a + b, 0);
      const r = await materialize(plan, digest, cache);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /5 contents from the builder's cache, 0 fetched \(0 packs, 0 bytes\)/);
      assert.equal(
        [...server.hits.values()].reduce((a, b) => a + b, 0),
        before,
      );
      assert.equal(await readFile(join(r.dest, "src/lib.rs"), "utf8"), TREE["src/lib.rs"]);
    });

    it("a changed content fetches only the pack holding it", async () => {
      const next = treeManifest({ ...TREE, "src/main.rs": 'fn main() { println!("v2"); }\n' });
      const { plan, digest, newPacks } = store.plan(next.manifest, next.contents);
      assert.equal(plan.packs.length, 2);
      const oldPack = plan.packs.find((p) => !newPacks.includes(p.url))!.url;
      const oldHits = hitsOf(server, oldPack);
      const r = await materialize(plan, digest, cache);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /4 contents from the builder's cache, 1 fetched \(1 pack, \d+ bytes\)/);
      assert.equal(hitsOf(server, oldPack), oldHits);
      assert.deepEqual(
        newPacks.map((u) => hitsOf(server, u)),
        [1],
      );
      assert.equal(await readFile(join(r.dest, "src/main.rs"), "utf8"), 'fn main() { println!("v2"); }\n');
    });

    it("a build after the cache was lost fetches everything again", async () => {
      await rm(cache, { recursive: true, force: true });
      const { plan, digest } = store.plan(first.manifest, first.contents);
      const r = await materialize(plan, digest, cache);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /0 contents from the builder's cache, 5 fetched/);
      assert.equal(await readFile(join(r.dest, "Cargo.toml"), "utf8"), TREE["Cargo.toml"]);
    });

    it("a cache entry that no longer hashes right is deleted, fetched again, and the tree is right", async () => {
      const sha = sha256Hex(TREE["src/lib.rs"] as string);
      const original = await readFile(join(cache, sha));
      await writeFile(join(cache, sha), Buffer.alloc(original.length, 0x21));
      const { plan, digest } = store.plan(first.manifest, first.contents);
      const pack = plan.packs.find((p) => p.contents.some((c) => c.sha256 === sha))!.url;
      const hits = hitsOf(server, pack);
      const r = await materialize(plan, digest, cache);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /4 contents from the builder's cache, 1 fetched \(1 pack/);
      assert.equal(hitsOf(server, pack), hits + 1);
      assert.equal(await readFile(join(r.dest, "src/lib.rs"), "utf8"), TREE["src/lib.rs"]);
      assert.equal(await readFile(join(r.dest, "copy.rs"), "utf8"), TREE["src/lib.rs"]);
      assert.deepEqual(await readFile(join(cache, sha)), original);
    });

    it("a cache entry of the wrong size is fetched again before anything is written", async () => {
      const sha = sha256Hex(TREE["README.md"] as string);
      await writeFile(join(cache, sha), "short");
      const { plan, digest } = store.plan(first.manifest, first.contents);
      const r = await materialize(plan, digest, cache);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /4 contents from the builder's cache, 1 fetched/);
      assert.equal(await readFile(join(r.dest, "README.md"), "utf8"), TREE["README.md"]);
    });
  });

  describe("refusals (exit 3, `refused: <code>: …`, nothing left in the destination)", () => {
    const tree = treeManifest({ "a.rs": "fn a() {}\n", "b.rs": "fn b() {}\n" });
    let good: { plan: SourcePlan; digest: string };
    let cache: string;

    before(() => {
      good = new PackStore(server).plan(tree.manifest, tree.contents);
      cache = join(scratch, "cache-refusals");
    });

    async function refused(
      plan: SourcePlan | string,
      code: string,
      env: Record<string, string> = {},
      digest = good.digest,
    ) {
      const r = await materialize(plan, digest, cache, env);
      assertRefused(r, code);
      assert.equal(await exists(r.dest), false);
      return r;
    }

    const withPack = (plan: SourcePlan, data: Buffer, offsets?: number[]): SourcePlan => ({
      ...plan,
      packs: [
        {
          url: server.serve(data),
          contents: plan.packs
            .flatMap((p) => p.contents)
            .map((c, i) => ({ ...c, offset: offsets?.[i] ?? c.offset })),
        },
      ],
    });

    it("a pack with wrong bytes (content-mismatch), caching none of them", async () => {
      const wrong = Buffer.concat([...tree.contents.values()].map((b) => Buffer.alloc(b.length, 0x3f)));
      await refused(withPack(good.plan, gzipSync(wrong)), "content-mismatch");
      assert.deepEqual(await cacheEntries(cache), []);
    });

    it("a pack that is not gzip (damaged-pack)", async () => {
      await refused(withPack(good.plan, Buffer.from("plain text, not gzip")), "damaged-pack");
    });

    it("a pack shorter than its listed contents (damaged-pack)", async () => {
      await refused(withPack(good.plan, gzipSync(Buffer.from("fn a() {}\n"))), "damaged-pack");
    });

    it("a --digest the manifest does not hash to (digest-mismatch)", async () => {
      const other = `sha256:${"0".repeat(64)}`;
      await refused({ ...good.plan, sourceDigest: other }, "digest-mismatch", {}, other);
    });

    it("a plan for another source (digest-mismatch)", async () => {
      await refused({ ...good.plan, sourceDigest: `sha256:${"1".repeat(64)}` }, "digest-mismatch");
    });

    it("a manifest text changed after its digest was taken (digest-mismatch)", async () => {
      await refused(
        { ...good.plan, manifest: good.plan.manifest.replace("a.rs", "c.rs") },
        "digest-mismatch",
      );
    });

    it("a plan that is not JSON, or not a version 1 plan (bad-plan)", async () => {
      await refused("{not json", "bad-plan");
      await refused(JSON.stringify({ ...good.plan, version: 2 }), "bad-plan");
      await refused(JSON.stringify({ ...good.plan, extra: 1 }), "bad-plan");
      await refused(JSON.stringify(good.plan).replace('"version":1', '"version":1,"version":1'), "bad-plan");
    });

    it("a plan that does not say where a content is, or says a wrong size (bad-plan)", async () => {
      const [pack] = good.plan.packs;
      await refused({ ...good.plan, packs: [{ ...pack!, contents: pack!.contents.slice(1) }] }, "bad-plan");
      await refused(
        {
          ...good.plan,
          packs: [{ ...pack!, contents: pack!.contents.map((c) => ({ ...c, size: c.size + 1 })) }],
        },
        "bad-plan",
      );
    });

    it("a pack listing overlapping contents, or no contents (bad-plan)", async () => {
      await refused(withPack(good.plan, gzipSync(Buffer.from("x")), [0, 3]), "bad-plan");
      await refused(
        { ...good.plan, packs: [...good.plan.packs, { url: good.plan.packs[0]!.url, contents: [] }] },
        "bad-plan",
      );
    });

    it("a pack offset beyond what any tree may hold (bad-plan: no decompression without end)", async () => {
      const offsets = [0, 1 << 20];
      await refused(
        withPack(good.plan, gzipSync(Buffer.from("x")), offsets),
        "bad-plan",
        limitEnv({ maxBytes: 1 << 20 }),
      );
    });

    it("a pack URL over plain http to a host other than loopback (bad-url)", async () => {
      const plan = {
        ...good.plan,
        packs: good.plan.packs.map((p) => ({ ...p, url: p.url.replace("127.0.0.1", "example.com") })),
      };
      await refused(plan, "bad-url");
    });

    it("packs larger than FASTBUILD_SOURCE_MAX_BYTES (download-too-large)", async () => {
      const big = treeManifest({ "noise.bin": randomBytes(4000).toString("base64") });
      const planned = new PackStore(server).plan(big.manifest, big.contents);
      await refused(
        planned.plan,
        "download-too-large",
        { FASTBUILD_SOURCE_MAX_BYTES: "1000" },
        planned.digest,
      );
    });

    it("a manifest that is not a manifest (bad-manifest)", async () => {
      for (const manifest of [
        '{"version":1,"entries":[]}',
        '{"version":1,"entries":[{"path":"a","type":"dir"}]}',
        "[]",
      ]) {
        const digest = `sha256:${sha256Hex(manifest)}`;
        await refused({ ...good.plan, sourceDigest: digest, manifest }, "bad-manifest", {}, digest);
      }
    });
  });

  describe("the manifest rules table (test/fixtures/manifest-rules.json), as checkManifest has it", () => {
    const cache = () => join(scratch, "cache-rules");
    let store: PackStore;
    before(() => {
      store = new PackStore(server);
    });
    for (const c of MANIFEST_CASES) {
      it(`${c.safeExtract === undefined ? "materializes" : `refuses (${c.safeExtract})`} ${c.name}`, async () => {
        const { plan, digest, newPacks } = store.plan(c.manifest, c.contents);
        const r = await materialize(plan, digest, cache(), limitEnv(c.limits));
        if (c.safeExtract === undefined) {
          assert.equal(r.code, 0, r.output);
          for (const e of c.manifest.entries) {
            if (e.type === "file") assert.equal(sha256Hex(await readFile(join(r.dest, e.path))), e.sha256);
            else assert.equal(await readlink(join(r.dest, e.path)), e.target);
          }
          return;
        }
        assertRefused(r, c.safeExtract);
        assert.equal(await exists(r.dest), false);
        // Refused before any pack was fetched.
        for (const url of newPacks) assert.equal(hitsOf(server, url), 0);
      });
    }
  });

  describe("fetching", () => {
    it("retries a pack the store failed to serve (HTTP 503 twice), then builds", async () => {
      const tree = treeManifest({ "a.rs": "fn a() {}\n" });
      const data = gzipSync(Buffer.concat([...tree.contents.values()]));
      let requests = 0;
      const flaky: Server = createServer((_req, res) => {
        requests++;
        if (requests <= 2) res.writeHead(503).end();
        else res.writeHead(200, { "content-length": data.length }).end(data);
      });
      await new Promise<void>((resolve) => flaky.listen(0, "127.0.0.1", resolve));
      try {
        const url = `http://127.0.0.1:${(flaky.address() as AddressInfo).port}/packs/1.gz?sig=x`;
        const plan = planFor(
          tree.manifest,
          new Map([[[...tree.contents.keys()][0]!, { pack: url, offset: 0, size: 10 }]]),
        );
        const r = await materialize(plan, plan.sourceDigest, join(scratch, "cache-flaky"));
        assert.equal(r.code, 0, r.output);
        assert.equal(requests, 3);
        assert.match(r.output, /pack 1: HTTP 503; trying again/);
      } finally {
        flaky.closeAllConnections();
        flaky.close();
      }
    });

    it("a pack the store refuses (HTTP 404: no retry) is a fetch failure: exit 4, `failed: …`", async () => {
      const tree = treeManifest({ "a.rs": "fn a() {}\n" });
      const missing = server.serve(Buffer.alloc(0)).replace("/blobs/", "/nothing/");
      const plan = planFor(
        tree.manifest,
        new Map([[[...tree.contents.keys()][0]!, { pack: missing, offset: 0, size: 10 }]]),
      );
      const r = await materialize(plan, plan.sourceDigest, join(scratch, "cache-404"));
      assert.equal(r.code, 4, r.output);
      assert.match(r.output, /^failed: could not fetch pack 1 of the plan \(HTTP 404\)/m);
      assert.equal(hitsOf(server, missing), 1);
      assert.equal(await exists(r.dest), false);
    });

    it("fetches many packs (more than its 4 threads) in one build", async () => {
      const spec: TreeSpec = {};
      for (let i = 0; i < 10; i++) spec[`f${i}`] = `content ${i}\n`;
      const tree = treeManifest(spec);
      const index = new Map(
        [...tree.contents].map(([sha, data]) => [
          sha,
          { pack: server.serve(gzipSync(data)), offset: 0, size: data.length },
        ]),
      );
      const plan = planFor(tree.manifest, index);
      const r = await materialize(plan, plan.sourceDigest, join(scratch, "cache-many"));
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /10 fetched \(10 packs/);
      for (const [, at] of index) assert.equal(hitsOf(server, at.pack), 1);
    });

    it("reads a pack only as far as the last content it needs", async () => {
      // One content at the start of a pack whose rest is 8 MiB of gzip'd noise that is never needed.
      const wanted = Buffer.from("fn wanted() {}\n");
      const noise = Buffer.from(Array.from({ length: 1 << 17 }, (_, i) => sha256Hex(String(i))).join(""));
      const tree = treeManifest({ "w.rs": wanted.toString() });
      const url = server.serve(gzipSync(Buffer.concat([wanted, noise]), { level: 1 }));
      const plan = planFor(
        tree.manifest,
        new Map([[sha256Hex(wanted), { pack: url, offset: 0, size: wanted.length }]]),
      );
      const r = await materialize(plan, plan.sourceDigest, join(scratch, "cache-partial"));
      assert.equal(r.code, 0, r.output);
      const fetched = Number(/\(1 pack, (\d+) bytes\)/.exec(r.output)?.[1]);
      assert.ok(
        fetched < 4 << 20,
        `read ${fetched} bytes of a pack of ${gzipSync(noise, { level: 1 }).length}`,
      );
    });
  });

  describe("the cache's bound (FASTBUILD_CONTENT_CACHE_MAX_BYTES)", () => {
    it("uses the default of src/core/extractLimits.ts when run without one", async () => {
      const r = await run("python3", [SAFE_EXTRACT, "--cache-limit"], {});
      assert.equal(r.code, 0, r.output);
      assert.equal(Number(r.output.trim()), CONTENT_CACHE_LIMIT.default);
    });

    it("evicts the least recently used contents beyond the bound, never this build's", async () => {
      const cache = join(scratch, "cache-bound");
      const store = new PackStore(server);
      const a = treeManifest({ a1: "a".repeat(400), a2: "b".repeat(400) });
      const b = treeManifest({ b1: "c".repeat(400), b2: "d".repeat(400) });
      const c = treeManifest({ c1: "e".repeat(400) });
      const bound = { FASTBUILD_CONTENT_CACHE_MAX_BYTES: "1700" };
      for (const t of [a, b]) {
        const { plan, digest } = store.plan(t.manifest, t.contents);
        assert.equal((await materialize(plan, digest, cache, bound)).code, 0);
        // Distinct use times (the cache orders by mtime).
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal((await cacheEntries(cache)).length, 4);
      // a is used again, so b is now the least recently used.
      const again = store.plan(a.manifest, a.contents);
      assert.equal((await materialize(again.plan, again.digest, cache, bound)).code, 0);
      await new Promise((resolve) => setTimeout(resolve, 20));
      const third = store.plan(c.manifest, c.contents);
      const r = await materialize(third.plan, third.digest, cache, bound);
      assert.equal(r.code, 0, r.output);
      // 2000 bytes: one of b's (the least recently used) goes, and the rest fits.
      assert.match(r.output, /the cache holds 1600 bytes \(1 evicted\)/);
      const left = await cacheEntries(cache);
      for (const sha of [...a.contents.keys(), ...c.contents.keys()]) assert.ok(left.includes(sha));
      assert.equal(left.filter((sha) => b.contents.has(sha)).length, 1);
      // A bound below one build's own contents keeps exactly that build's.
      const r0 = await materialize(again.plan, again.digest, cache, {
        FASTBUILD_CONTENT_CACHE_MAX_BYTES: "0",
      });
      assert.equal(r0.code, 0, r0.output);
      assert.deepEqual(await cacheEntries(cache), [...a.contents.keys()].sort());
    });
  });

  it("needs FASTBUILD_SOURCE_MAX_BYTES and the four arguments (usage: exit 2)", async () => {
    const tree = treeManifest({ "a.rs": "x" });
    const plan = JSON.stringify({
      version: 1,
      sourceDigest: "x",
      manifest: canonicalManifest(tree.manifest),
      packs: [],
    });
    const dir = join(scratch, "usage");
    await mkdir(dir);
    await writeFile(join(dir, "plan.json"), plan);
    const digest = `sha256:${"0".repeat(64)}`;
    const noLimit = await run(
      "python3",
      [
        SAFE_EXTRACT,
        "--plan",
        join(dir, "plan.json"),
        "--cache",
        join(dir, "c"),
        "--digest",
        digest,
        join(dir, "o"),
      ],
      {},
    );
    assert.equal(noLimit.code, 2, noLimit.output);
    assert.match(noLimit.output, /FASTBUILD_SOURCE_MAX_BYTES must be a whole number/);
    const noDigest = await run("python3", [SAFE_EXTRACT, "--plan", join(dir, "plan.json"), join(dir, "o")], {
      FASTBUILD_SOURCE_MAX_BYTES: "1",
    });
    assert.equal(noDigest.code, 2, noDigest.output);
  });
});
