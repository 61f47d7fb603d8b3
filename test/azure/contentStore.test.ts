/** The content store's gateway over real Azurite: ETag conditions, one-blob SAS, the streaming pack check. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { after, before, describe, it } from "node:test";
import { BlockBlobClient } from "@azure/storage-blob";
import { createBlobStores } from "../../src/azure/blobs.js";
import { createContentStore } from "../../src/azure/contentStore.js";
import { ConflictError } from "../../src/core/errors.js";
import type { ContentStore } from "../../src/core/ports.js";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { outcome, sameSasOtherBlob } from "./sas.js";

let azurite: Azurite;
let store: ContentStore;
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const ref = (bytes: Buffer) => ({ sha256: sha256(bytes), size: bytes.length });

before(async () => {
  azurite = await startAzurite();
  const { account } = createBlobStores(
    {
      connectionString: azurite.connectionString,
      blobEndpoint: undefined,
      sourceContainer: "build-sources",
      logContainer: "build-logs",
    },
    undefined,
    { pipeline: { retryOptions: { maxTries: 1 } } },
  );
  store = createContentStore(account, "source-content");
});
after(async () => {
  await azurite.stop();
});

describe("content store JSON blobs", () => {
  it("reads an absent blob as undefined", async () => {
    assert.equal(await store.readJson("index/absent.json"), undefined);
  });

  it("creates only once with If-None-Match: *, and replaces only over the ETag it read", async () => {
    const etag = await store.writeJson("index/env1.json", { n: 1 }, { ifNoneMatch: "*" });
    await assert.rejects(
      store.writeJson("index/env1.json", { n: 2 }, { ifNoneMatch: "*" }),
      (error: unknown) => error instanceof ConflictError,
    );
    const read = await store.readJson("index/env1.json");
    assert.deepEqual(read, { value: { n: 1 }, etag });
    const next = await store.writeJson("index/env1.json", { n: 3 }, { ifMatch: etag });
    // The ETag of the first write is stale now: a writer that read it loses.
    await assert.rejects(
      store.writeJson("index/env1.json", { n: 4 }, { ifMatch: etag }),
      (error: unknown) => error instanceof ConflictError,
    );
    assert.deepEqual(await store.readJson("index/env1.json"), { value: { n: 3 }, etag: next });
  });
});

describe("content store JSON blobs, read again", () => {
  it("answers an unchanged blob with the value it had (a 304, no download), and sees another instance's write", async () => {
    const { account } = createBlobStores({
      connectionString: azurite.connectionString,
      blobEndpoint: undefined,
      sourceContainer: "build-sources",
      logContainer: "build-logs",
    });
    const other = createContentStore(account, "source-content");
    const etag = await store.writeJson("index/cached.json", { n: 1 }, { ifNoneMatch: "*" });
    const first = await other.readJson("index/cached.json");
    assert.deepEqual(first, { value: { n: 1 }, etag });
    const again = await other.readJson("index/cached.json");
    assert.equal(again?.value, first?.value, "the same value: Azurite answered If-None-Match with 304");

    const next = await store.writeJson("index/cached.json", { n: 2 }, { ifMatch: etag });
    assert.deepEqual(await other.readJson("index/cached.json"), { value: { n: 2 }, etag: next });
    assert.deepEqual(await store.readJson("index/cached.json"), { value: { n: 2 }, etag: next });

    const blob = new BlockBlobClient(azurite.connectionString, "source-content", "index/cached.json");
    await blob.delete();
    assert.equal(await other.readJson("index/cached.json"), undefined, "a deleted blob is gone, not cached");
  });
});

describe("content store SAS", () => {
  it("signs a pack upload for that blob only, write-only, and a read grant that cannot write", async () => {
    const { url } = await store.createUploadUrl("packs/b1/0.gz", 15);
    assert.equal(await outcome(() => new BlockBlobClient(url).upload("x", 1)), "ok");
    // Create + write: the CLI's second try replaces a broken first upload.
    assert.equal(await outcome(() => new BlockBlobClient(url).upload("yy", 2)), "ok");
    assert.equal(await outcome(() => new BlockBlobClient(url).download()), 403);
    assert.equal(await outcome(() => new BlockBlobClient(sameSasOtherBlob(url, "1.gz")).upload("x", 1)), 403);
    const read = await store.createReadUrl("packs/b1/0.gz", store.maxReadMinutes);
    assert.equal((await fetch(read.url)).status, 200);
    assert.equal(await outcome(() => new BlockBlobClient(read.url).upload("z", 1)), 403);
    await assert.rejects(store.createUploadUrl("packs/b1/0.gz", 31), /InvalidSasLifetime|between 1 and 30/);
  });
});

describe("content store pack check", () => {
  const a = Buffer.from("first content\n");
  const b = Buffer.from("second\n");
  const empty = Buffer.alloc(0);
  const upload = async (name: string, bytes: Buffer) => {
    const { url } = await store.createUploadUrl(name, 15);
    await new BlockBlobClient(url).upload(bytes, bytes.length);
  };

  it("accepts exactly the contents in order, empty ones included, across gzip members", async () => {
    await upload("packs/c/0.gz", Buffer.concat([gzipSync(Buffer.concat([a, b])), gzipSync(empty)]));
    assert.deepEqual(await store.verifyPack("packs/c/0.gz", [ref(a), ref(empty), ref(b)]), { ok: true });
  });

  it("refuses contents in another order", async () => {
    await upload("packs/c/1.gz", gzipSync(Buffer.concat([b, a])));
    const check = await store.verifyPack("packs/c/1.gz", [ref(a), ref(b)]);
    assert.equal(check.ok, false);
    assert.match(!check.ok ? check.problem : "", /content 1 .* has sha256/);
  });

  it("stops inflating a bomb at the declared sizes", async () => {
    // 64 MiB of zeros gzip to about 64 KB; the check stops after the 14 bytes it was told of.
    await upload("packs/c/2.gz", gzipSync(Buffer.alloc(64 * 1024 * 1024)));
    const started = Date.now();
    const check = await store.verifyPack("packs/c/2.gz", [{ sha256: sha256(Buffer.alloc(14)), size: 14 }]);
    assert.equal(check.ok, false);
    assert.match(!check.ok ? check.problem : "", /more than the 14 bytes/);
    assert.ok(Date.now() - started < 5_000);
  });
});
