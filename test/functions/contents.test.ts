/**
 * Content-addressed source (issue 10, item 4) through the real handlers, real Azurite and the real
 * orchestration: the start says which contents the store lacks and in which packs, the source
 * report verifies the packs, joins them to the environment's index and writes the builder's plan.
 */
import { call, cancelRunningBuilds, runsUntilStopped, startTestCloud, type TestCloud } from "./support.js";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import { BlockBlobClient } from "@azure/storage-blob";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import type { ContentUploads, ErrorResponse, StartBuildResponse } from "../../src/core/api.js";
import { BUILD_EVENTS, type BuildInput } from "../../src/core/buildInput.js";
import {
  canonicalManifest,
  CONTENT_STORE,
  contentBlobNames,
  diffManifests,
  contentIndexSchema,
  manifestContents,
  manifestDigest,
  planPacks,
  type ContentIndex,
  type PendingSource,
  type SourceManifest,
  type SourcePlan,
} from "../../src/core/sourceManifest.js";
import { cancelBuild } from "../../src/functions/cancelBuild.js";
import { setDeps, type Deps } from "../../src/functions/deps.js";
import { sourceUploaded } from "../../src/functions/sourceUploaded.js";
import { startBuild } from "../../src/functions/startBuild.js";

const BASE_KEY = "0123456789abcdef".repeat(4);
const DAY_MS = 24 * 3600_000;
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** A tree: path → bytes (plus optional symlinks), as the CLI would hash it. */
type Tree = Record<string, Buffer>;

function manifestOf(tree: Tree, links: Record<string, string> = {}): SourceManifest {
  const entries = [
    ...Object.entries(tree).map(([path, bytes]) => ({
      path,
      type: "file" as const,
      size: bytes.length,
      sha256: sha256(bytes),
      executable: false,
    })),
    ...Object.entries(links).map(([path, target]) => ({ path, type: "symlink" as const, target })),
  ].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  return { version: 1, entries };
}

/** A few small files of this test's own (so no other test has stored them), one shared content. */
function freshTree(files = 3): Tree {
  const salt = randomBytes(8).toString("hex");
  const tree: Tree = {};
  for (let i = 0; i < files; i++) tree[`src/f${i}.rs`] = Buffer.from(`fn f${i}() {} // ${salt}\n`);
  tree["Cargo.toml"] = Buffer.from(`[package]\nname = "t${salt}"\n`);
  tree["src/copy.rs"] = tree["src/f0.rs"]!;
  return tree;
}

function bytesBySha(tree: Tree): Map<string, Buffer> {
  return new Map(Object.values(tree).map((bytes) => [sha256(bytes), bytes]));
}

describe("content-addressed source", () => {
  let cloud: TestCloud;

  before(async () => {
    cloud = await startTestCloud();
    setDeps(cloud.deps);
  });
  after(async () => {
    setDeps(undefined);
    await cloud.stop();
  });
  beforeEach(() => {
    setDeps(cloud.deps);
    cloud.arm.setRunCommandExecutor(runsUntilStopped());
  });
  afterEach(() => cancelRunningBuilds(cloud, cancelBuild));

  const errorOf = (body: unknown) => (body as ErrorResponse).error;
  const post = (body: unknown) =>
    call(cloud.rpc, startBuild, "startBuild", { method: "POST", path: "builds", body: JSON.stringify(body) });
  const complete = (id: string) =>
    call(cloud.rpc, sourceUploaded, "sourceUploaded", {
      method: "POST",
      path: `builds/${id}/source`,
      params: { id },
    });
  const instanceCount = async () => (await cloud.engine.listInstances()).length;
  const request = (manifest: SourceManifest, extra: Record<string, unknown> = {}) => ({
    environment: "dev",
    sourceDigest: manifestDigest(manifest),
    baseKey: BASE_KEY,
    manifest,
    ...extra,
  });

  type Started = StartBuildResponse & { contents: ContentUploads; input: BuildInput };
  async function started(manifest: SourceManifest, environment = "dev"): Promise<Started> {
    const res = await post(request(manifest, { environment }));
    assert.equal(res.status, 202, res.text);
    const body = res.body as StartBuildResponse;
    assert.ok(body.contents, "a manifest build is answered with its contents");
    const input = (await cloud.engine.getStatus(body.buildId))?.input as BuildInput;
    return { ...body, contents: body.contents, input };
  }

  const put = (url: string, bytes: Buffer) =>
    fetch(url, { method: "PUT", body: bytes, headers: { "x-ms-blob-type": "BlockBlob" } });
  /** Each pack as the CLI writes it: the gzip of its listed contents, concatenated in order. */
  const packBytes = (tree: Tree, shas: readonly string[]) => {
    const bytes = bytesBySha(tree);
    return gzipSync(Buffer.concat(shas.map((sha) => bytes.get(sha)!)));
  };
  async function uploadPacks(build: Started, tree: Tree): Promise<number> {
    let size = 0;
    for (const pack of build.contents.packs) {
      const bytes = packBytes(tree, pack.contents);
      size += bytes.length;
      assert.equal((await put(pack.url, bytes)).status, 201);
    }
    return size;
  }
  const readIndex = async (environment = "dev"): Promise<ContentIndex> =>
    contentIndexSchema.parse(
      (await cloud.deps.contents.readJson(contentBlobNames.index(environment)))?.value,
    );
  const readPlan = async (buildId: string) =>
    (await cloud.deps.contents.readJson(contentBlobNames.plan(buildId)))?.value as SourcePlan | undefined;
  const eventsOf = (buildId: string) => cloud.engine.events.filter((e) => e.instanceId === buildId);

  /** What the builder does with the plan: fetch each pack by its URL, take the contents by offset. */
  async function materialize(plan: SourcePlan): Promise<Map<string, Buffer>> {
    const found = new Map<string, Buffer>();
    for (const pack of plan.packs) {
      const res = await fetch(pack.url);
      assert.equal(res.status, 200, "the plan's read URL works");
      const output = gunzipSync(Buffer.from(await res.arrayBuffer()));
      let last = -1;
      for (const content of pack.contents) {
        assert.ok(content.offset > last, "offsets ascend");
        last = content.offset;
        const bytes = output.subarray(content.offset, content.offset + content.size);
        assert.equal(sha256(bytes), content.sha256);
        found.set(content.sha256, bytes);
      }
    }
    return found;
  }

  /** Starts, uploads and reports a tree's build, as the CLI does. */
  async function build(tree: Tree): Promise<Started> {
    const one = await started(manifestOf(tree));
    await uploadPacks(one, tree);
    const res = await complete(one.buildId);
    assert.equal(res.status, 202, res.text);
    return one;
  }

  describe("POST /api/builds with a manifest", () => {
    it("plans every content of a first build into packs as planPacks does, with write-only pack URLs", async () => {
      const tree = freshTree();
      const manifest = manifestOf(tree);
      const build = await started(manifest);
      const contents = manifestContents(manifest);
      const planned = planPacks(contents);

      assert.equal(build.upload, undefined, "no archive upload");
      assert.equal(build.input.sourceFormat, "manifest");
      assert.equal(build.input.sourceDigest, manifestDigest(manifest));
      assert.deepEqual(
        build.contents.packs.map((pack) => pack.contents),
        planned.map((pack) => pack.map((c) => c.sha256)),
      );
      assert.equal(build.contents.stored, 0);
      assert.equal(build.contents.missing, contents.length);
      assert.equal(
        build.contents.missingBytes,
        contents.reduce((sum, c) => sum + c.size, 0),
      );
      assert.equal(build.contents.maxBytes, cloud.config.builds.maxUploadBytes);
      assert.ok(Date.parse(build.contents.expiresOn) > Date.now());

      const pending = (await cloud.deps.contents.readJson(contentBlobNames.pending(build.buildId)))
        ?.value as PendingSource;
      assert.deepEqual(
        pending.packs.map((pack) => pack.name),
        planned.map((_, n) => contentBlobNames.pack(build.buildId, n)),
      );
      assert.equal(pending.sourceDigest, build.input.sourceDigest);
      const plan = await readPlan(build.buildId);
      assert.equal(`sha256:${sha256(Buffer.from(plan!.manifest))}`, build.input.sourceDigest);

      const url = build.contents.packs[0]!.url;
      assert.equal((await put(url, packBytes(tree, build.contents.packs[0]!.contents))).status, 201);
      assert.equal((await fetch(url)).status, 403, "the upload grant cannot read");
    });

    it("splits a bigger tree into several packs, as planPacks does", async () => {
      // Limits of their own: the test cloud's 2 KiB upload limit keeps every other tree in one pack.
      const MiB = 1024 * 1024;
      const builds = {
        ...cloud.config.builds,
        maxUploadBytes: 64 * MiB,
        extractLimits: { ...cloud.config.builds.extractLimits, maxBytes: 64 * MiB, maxFileBytes: 8 * MiB },
      };
      setDeps({ ...cloud.deps, config: { ...cloud.config, builds } } satisfies Deps);
      const salt = randomBytes(4).toString("hex");
      // Compressible (one byte repeated), so the upload stays small; the check inflates 9 MiB.
      const tree: Tree = Object.fromEntries(
        [0, 1, 2].map((i) => [`big${i}.bin`, Buffer.concat([Buffer.from(salt), Buffer.alloc(3 * MiB, i)])]),
      );
      const manifest = manifestOf(tree);
      const build = await started(manifest);
      const planned = planPacks(manifestContents(manifest));
      assert.equal(planned.length, 3);
      assert.deepEqual(
        build.contents.packs.map((pack) => pack.contents),
        planned.map((pack) => pack.map((c) => c.sha256)),
      );
      await uploadPacks(build, tree);
      assert.equal((await complete(build.buildId)).status, 202);
      const plan = await readPlan(build.buildId);
      assert.equal(plan?.packs.length, 3);
      assert.equal((await materialize(plan)).size, 3);
    });

    it("asks for nothing when the same tree is built again, and for only the changed file after an edit", async () => {
      const tree = freshTree();
      const first = await build(tree);
      await cancelRunningBuilds(cloud, cancelBuild);

      const again = await started(manifestOf(tree));
      assert.deepEqual(again.contents.packs, []);
      assert.equal(again.contents.missing, 0);
      assert.equal(again.contents.stored, manifestContents(manifestOf(tree)).length);
      // Zero packs: nothing to verify, the plan is still written and the event raised.
      const res = await complete(again.buildId);
      assert.equal(res.status, 202, res.text);
      assert.equal((eventsOf(again.buildId)[0]?.data as { size: number }).size, 0);
      const plan = await readPlan(again.buildId);
      assert.deepEqual(
        plan?.packs.map((pack) => new URL(pack.url).pathname.split("/").slice(3).join("/")),
        [contentBlobNames.pack(first.buildId, 0)],
        "the plan takes every content from the first build's pack",
      );
      assert.equal((await materialize(plan)).size, manifestContents(manifestOf(tree)).length);
      await cancelRunningBuilds(cloud, cancelBuild);

      const edited = {
        ...tree,
        "src/f1.rs": Buffer.from(`fn f1() { edited() } ${randomBytes(4).toString("hex")}\n`),
      };
      const third = await started(manifestOf(edited));
      assert.equal(third.contents.missing, 1);
      assert.deepEqual(
        third.contents.packs.map((pack) => pack.contents),
        [[sha256(edited["src/f1.rs"])]],
      );
      await uploadPacks(third, edited);
      assert.equal((await complete(third.buildId)).status, 202);
      const contents = await materialize((await readPlan(third.buildId))!);
      for (const bytes of Object.values(edited)) assert.deepEqual(contents.get(sha256(bytes)), bytes);
    });

    it("asks again for contents whose pack is older than CONTENT_STORE.reuseDays, and reindexes them", async () => {
      const tree = freshTree();
      const first = await build(tree);
      await cancelRunningBuilds(cloud, cancelBuild);

      const later = new Date(Date.now() + (CONTENT_STORE.reuseDays + 1) * DAY_MS);
      setDeps({ ...cloud.deps, now: () => later });
      const again = await started(manifestOf(tree));
      assert.equal(again.contents.stored, 0);
      assert.equal(again.contents.missing, manifestContents(manifestOf(tree)).length);
      await uploadPacks(again, tree);
      assert.equal((await complete(again.buildId)).status, 202);
      const index = await readIndex();
      assert.equal(
        index.packs[contentBlobNames.pack(first.buildId, 0)],
        undefined,
        "the stale pack left the index",
      );
      assert.equal(index.packs[contentBlobNames.pack(again.buildId, 0)], later.toISOString());
      for (const content of manifestContents(manifestOf(tree))) {
        assert.equal(index.contents[content.sha256]?.pack, contentBlobNames.pack(again.buildId, 0));
      }
    });

    it("refuses a manifest whose digest is not the sourceDigest, and starts nothing", async () => {
      const manifest = manifestOf(freshTree());
      const before = await instanceCount();
      const res = await post(request(manifest, { sourceDigest: `sha256:${"0".repeat(64)}` }));
      assert.equal(res.status, 400);
      assert.equal(errorOf(res.body).code, "SourceDigestMismatch");
      assert.match(errorOf(res.body).message, new RegExp(manifestDigest(manifest)));
      assert.match(errorOf(res.body).hint ?? "", /canonical/);
      assert.equal(await instanceCount(), before);
    });

    for (const [what, manifest, code] of [
      [
        "entries out of byte order",
        { version: 1, entries: [...manifestOf(freshTree()).entries].reverse() },
        "InvalidManifest:ManifestOrder",
      ],
      ["a path with ..", manifestOf({ "src/../../etc/passwd": Buffer.from("x") }), "InvalidManifest:BadPath"],
      ["an absolute path", manifestOf({ "/etc/passwd": Buffer.from("x") }), "InvalidManifest:AbsolutePath"],
      [
        "a symlink out of the tree",
        manifestOf({ a: Buffer.from("x") }, { b: "../../outside" }),
        "InvalidManifest:Link:",
      ],
      [
        "files over the extraction limit together",
        manifestOf({ a: Buffer.alloc(5000, 1), b: Buffer.alloc(5000, 2) }),
        "InvalidManifest:TreeTooLarge",
      ],
    ] as const) {
      it(`refuses a manifest with ${what}, saying why, and starts nothing`, async () => {
        const before = await instanceCount();
        const res = await post(request(manifest));
        assert.equal(res.status, 400, res.text);
        assert.ok(errorOf(res.body).code.startsWith(code), errorOf(res.body).code);
        assert.match(errorOf(res.body).message, /The manifest is refused: /);
        assert.match(errorOf(res.body).hint ?? "", /nothing was started/);
        assert.equal(await instanceCount(), before);
      });
    }

    it("takes a manifest bigger than the 16 KB of other requests", async () => {
      const tree: Tree = {};
      for (let i = 0; i < 200; i++) tree[`src/m${String(i).padStart(3, "0")}.rs`] = Buffer.from(`${i}`);
      const res = await post(request(manifestOf(tree)));
      assert.equal(res.status, 202, res.text);
    });
  });

  describe("POST /api/builds with a manifest delta", () => {
    const deltaRequest = (
      base: SourceManifest,
      next: SourceManifest,
      extra: Record<string, unknown> = {},
    ) => ({
      environment: "dev",
      sourceDigest: manifestDigest(next),
      baseKey: BASE_KEY,
      manifestDelta: diffManifests(base, next, manifestDigest(base)),
      ...extra,
    });

    it("keeps each manifest by its digest and builds the next from its change alone", async () => {
      const tree = freshTree();
      const first = await build(tree);
      const kept = await cloud.deps.contents.readJson(contentBlobNames.manifest(first.input.sourceDigest));
      assert.deepEqual(kept?.value, manifestOf(tree), "the start kept the manifest");
      await cancelRunningBuilds(cloud, cancelBuild);

      const edited: Tree = {
        ...tree,
        "src/f1.rs": Buffer.from(`fn f1() { edited() } ${randomBytes(4).toString("hex")}\n`),
      };
      delete edited["src/f2.rs"];
      edited["src/new.rs"] = Buffer.from(`fn new() {} ${randomBytes(4).toString("hex")}\n`);
      const body = deltaRequest(manifestOf(tree), manifestOf(edited));
      assert.equal(body.manifestDelta.changed.length, 2);
      assert.deepEqual(body.manifestDelta.removed, ["src/f2.rs"]);
      const res = await post(body);
      assert.equal(res.status, 202, res.text);
      const next = res.body as StartBuildResponse;
      assert.equal(next.contents?.missing, 2, "only the two new contents");
      const input = (await cloud.engine.getStatus(next.buildId))?.input as BuildInput;
      assert.equal(input.sourceDigest, manifestDigest(manifestOf(edited)));
      assert.equal(input.sourceFormat, "manifest");
      await uploadPacks({ ...next, contents: next.contents, input }, edited);
      assert.equal((await complete(next.buildId)).status, 202);
      const plan = (await readPlan(next.buildId))!;
      assert.equal(
        plan.manifest,
        canonicalManifest(manifestOf(edited)),
        "the builder gets the whole new manifest",
      );
      const contents = await materialize(plan);
      for (const bytes of Object.values(edited)) assert.deepEqual(contents.get(sha256(bytes)), bytes);
    });

    it("takes a delta whose base blob is gone when this instance still holds that manifest", async () => {
      const tree = freshTree();
      const first = await build(tree);
      await cancelRunningBuilds(cloud, cancelBuild);
      await new BlockBlobClient(
        cloud.azurite.connectionString,
        cloud.config.storage.contentContainer,
        contentBlobNames.manifest(first.input.sourceDigest),
      ).delete();
      const edited: Tree = {
        ...tree,
        "src/f0.rs": Buffer.from(`fn f0() { again() } ${randomBytes(4).toString("hex")}\n`),
      };
      const res = await post(deltaRequest(manifestOf(tree), manifestOf(edited)));
      assert.equal(res.status, 202, res.text);
      assert.equal((res.body as StartBuildResponse).contents?.missing, 1);
    });

    it("answers 409 BaseManifestUnknown for a base the store does not have, and starts nothing", async () => {
      const base = manifestOf(freshTree());
      const before = await instanceCount();
      const res = await post(deltaRequest(base, manifestOf(freshTree())));
      assert.equal(res.status, 409, res.text);
      assert.equal(errorOf(res.body).code, "BaseManifestUnknown");
      assert.match(errorOf(res.body).hint ?? "", /whole manifest/);
      assert.equal(await instanceCount(), before);
    });

    it("refuses a change whose result is not the sourceDigest, or that was not made from the base", async () => {
      const tree = freshTree();
      await started(manifestOf(tree));
      await cancelRunningBuilds(cloud, cancelBuild);
      const base = manifestOf(tree);
      const next = manifestOf({ ...tree, "src/f0.rs": Buffer.from("changed\n") });
      const before = await instanceCount();

      const wrongDigest = await post(deltaRequest(base, next, { sourceDigest: manifestDigest(base) }));
      assert.equal(wrongDigest.status, 400, wrongDigest.text);
      assert.equal(errorOf(wrongDigest.body).code, "SourceDigestMismatch");

      const delta = diffManifests(base, next, manifestDigest(base));
      const notInBase = await post({
        ...deltaRequest(base, next),
        manifestDelta: { ...delta, removed: ["nope.rs"] },
      });
      assert.equal(notInBase.status, 400, notInBase.text);
      assert.equal(errorOf(notInBase.body).code, "InvalidManifestDelta:DeltaBase");
      assert.match(errorOf(notInBase.body).hint ?? "", /whole manifest/);

      const both = await post({ ...deltaRequest(base, next), manifest: next });
      assert.equal(both.status, 400, both.text);
      assert.match(errorOf(both.body).message, /either manifest or manifestDelta/);
      assert.equal(await instanceCount(), before);
    });

    it("checks the manifest a change makes with the extraction rules", async () => {
      const tree = freshTree();
      await started(manifestOf(tree));
      await cancelRunningBuilds(cloud, cancelBuild);
      const base = manifestOf(tree);
      const hostile = manifestOf({ ...tree, "src/../../etc/passwd": Buffer.from("x") });
      const res = await post(deltaRequest(base, hostile));
      assert.equal(res.status, 400, res.text);
      assert.equal(errorOf(res.body).code, "InvalidManifest:BadPath");
    });
  });

  describe("POST /api/builds/{id}/source for a manifest build", () => {
    it("raises SourceUploaded with the packs' bytes, indexes them and writes a plan with working read URLs", async () => {
      const tree = freshTree();
      const build = await started(manifestOf(tree));
      const size = await uploadPacks(build, tree);
      const res = await complete(build.buildId);
      assert.equal(res.status, 202, res.text);
      const events = eventsOf(build.buildId);
      assert.equal(events.length, 1);
      assert.equal(events[0]?.name, BUILD_EVENTS.sourceUploaded);
      assert.equal((events[0]?.data as { size: number }).size, size);

      const plan = await readPlan(build.buildId);
      assert.equal(plan?.sourceDigest, build.input.sourceDigest);
      assert.equal(`sha256:${sha256(Buffer.from(plan.manifest))}`, build.input.sourceDigest);
      const contents = await materialize(plan);
      for (const bytes of Object.values(tree)) assert.deepEqual(contents.get(sha256(bytes)), bytes);
      // Read only: the builder's grant cannot replace a pack.
      assert.equal((await put(plan.packs[0]!.url, Buffer.from("x"))).status, 403);

      const index = await readIndex();
      for (const content of manifestContents(manifestOf(tree))) {
        assert.equal(index.contents[content.sha256]?.pack, contentBlobNames.pack(build.buildId, 0));
      }
    });

    it("says which pack is missing, and raises nothing", async () => {
      const build = await started(manifestOf(freshTree()));
      const res = await complete(build.buildId);
      assert.equal(res.status, 400);
      assert.equal(errorOf(res.body).code, "SourceNotUploaded");
      assert.match(errorOf(res.body).message, new RegExp(contentBlobNames.pack(build.buildId, 0)));
      assert.match(errorOf(res.body).hint ?? "", /PUT each pack/);
      assert.equal(eventsOf(build.buildId).length, 0);
    });

    for (const [what, wrong, problem] of [
      ["other bytes", (good: Buffer) => Buffer.concat([Buffer.from("X"), good.subarray(1)]), /has sha256/],
      ["bytes after its contents", (good: Buffer) => Buffer.concat([good, Buffer.from("more")]), /more than/],
      ["fewer bytes than its contents", (good: Buffer) => good.subarray(0, good.length - 2), /ends after/],
    ] as const) {
      it(`refuses a pack with ${what}, changes nothing, and takes the right pack afterwards`, async () => {
        const tree = freshTree();
        const build = await started(manifestOf(tree));
        const pack = build.contents.packs[0]!;
        const shas = pack.contents;
        const bytes = bytesBySha(tree);
        const good = Buffer.concat(shas.map((sha) => bytes.get(sha)!));
        await put(pack.url, gzipSync(wrong(good)));
        const res = await complete(build.buildId);
        assert.equal(res.status, 400, res.text);
        assert.equal(errorOf(res.body).code, "PackMismatch");
        assert.match(errorOf(res.body).message, problem);
        assert.match(errorOf(res.body).hint ?? "", /Upload the packs again/);
        // The build is not told: the orchestration never names the plan to the builder.
        assert.equal(eventsOf(build.buildId).length, 0);

        await put(pack.url, gzipSync(good));
        assert.equal((await complete(build.buildId)).status, 202);
      });
    }

    it("refuses a pack with bytes after its gzip stream, or no gzip at all", async () => {
      const tree = freshTree();
      const build = await started(manifestOf(tree));
      const pack = build.contents.packs[0]!;
      for (const bytes of [
        Buffer.concat([packBytes(tree, pack.contents), Buffer.from("trailing garbage")]),
        Buffer.from("not gzip"),
      ]) {
        await put(pack.url, bytes);
        const res = await complete(build.buildId);
        assert.equal(res.status, 400, res.text);
        assert.equal(errorOf(res.body).code, "PackMismatch");
        assert.match(errorOf(res.body).message, /not a gzip stream/);
      }
    });

    it("refuses packs over the upload limit together with 413", async () => {
      // Incompressible: within the tree's extraction limit, over the 2 KiB upload limit once packed.
      const tree: Tree = { "noise.bin": randomBytes(3000) };
      const build = await started(manifestOf(tree));
      await uploadPacks(build, tree);
      const res = await complete(build.buildId);
      assert.equal(res.status, 413, res.text);
      assert.equal(errorOf(res.body).code, "SourceTooLarge");
      assert.equal(eventsOf(build.buildId).length, 0);
    });

    it("keeps every build's contents when reports update the index at once (ETag, re-read, merge)", async () => {
      const trees = [freshTree(), freshTree(), freshTree(), freshTree()];
      const builds = await Promise.all(trees.map((tree) => started(manifestOf(tree), "prod")));
      await Promise.all(builds.map((one, n) => uploadPacks(one, trees[n]!)));
      const results = await Promise.all(builds.map((one) => complete(one.buildId)));
      for (const res of results) assert.equal(res.status, 202, res.text);
      // They read the index before the others wrote it: writes lost their If-Match and merged again.
      const logs = results.flatMap((res) => res.logs);
      assert.ok(
        logs.some((line) => line.includes("changed meanwhile: merging again")),
        logs.join("\n"),
      );
      const index = await readIndex("prod");
      builds.forEach((one, n) => {
        for (const content of manifestContents(manifestOf(trees[n]!))) {
          assert.ok(index.contents[content.sha256], `${one.buildId}'s content ${content.sha256} is indexed`);
        }
        assert.ok(index.packs[contentBlobNames.pack(one.buildId, 0)]);
      });
    });
  });
});
