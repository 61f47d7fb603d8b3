import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { AnonymousCredential, AppendBlobClient, BlobClient, BlockBlobClient } from "@azure/storage-blob";
import fc from "fast-check";
import { charBoundaryBefore, createBlobStores, type BlobStores } from "../../src/azure/blobs.js";
import { ConfigError, InvalidInputError, NotFoundError } from "../../src/core/errors.js";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";
import { outcome, sameSasOtherBlob } from "./sas.js";

let azurite: Azurite;
let stores: BlobStores;

before(async () => {
  azurite = await startAzurite();
  stores = createBlobStores(
    {
      connectionString: azurite.connectionString,
      blobEndpoint: undefined,
      sourceContainer: "build-sources",
      logContainer: "build-logs",
    },
    undefined,
    { pipeline: { retryOptions: { maxTries: 1 } } },
  );
});
after(async () => {
  await azurite.stop();
});

describe("source store upload SAS", () => {
  it("lets its holder upload exactly that blob", async () => {
    const { url } = await stores.sources.createUploadUrl("b1.tar.gz", 15);
    const result = await outcome(() => new BlockBlobClient(url).upload("archive", 7));
    assert.equal(result, "ok");
    assert.equal((await stores.sources.stat("b1.tar.gz")).size, 7);
  });

  it("cannot read the blob back, list, or delete it", async () => {
    const { url } = await stores.sources.createUploadUrl("b2.tar.gz", 15);
    await new BlockBlobClient(url).upload("secret", 6);
    assert.equal(await outcome(() => new BlobClient(url).download()), 403);
    assert.equal(await outcome(() => new BlobClient(url).delete()), 403);
    const sas = new URL(url).search;
    const containerUrl = url.split("?")[0]!.replace(/\/[^/]+$/, "");
    const list = await fetch(`${containerUrl}${sas}&restype=container&comp=list`);
    assert.equal(list.status, 403);
  });

  it("cannot write a different blob", async () => {
    const { url } = await stores.sources.createUploadUrl("b3.tar.gz", 15);
    const other = sameSasOtherBlob(url, "other.tar.gz");
    assert.equal(await outcome(() => new BlockBlobClient(other).upload("x", 1)), 403);
    assert.equal((await stores.sources.stat("other.tar.gz")).exists, false);
  });

  it("grants only create+write, at most 30 minutes ahead", async () => {
    const { url, expiresOn } = await stores.sources.createUploadUrl("b4.tar.gz", 30);
    const params = new URL(url).searchParams;
    assert.equal(params.get("sp"), "cw");
    assert.equal(params.get("sr"), "b");
    const lifetime = Date.parse(expiresOn) - Date.now();
    assert.ok(lifetime <= 30 * 60_000 && lifetime > 25 * 60_000);
  });

  it("refuses a lifetime over 30 minutes with a clear error", async () => {
    await assert.rejects(stores.sources.createUploadUrl("b5.tar.gz", 31), (error: unknown) => {
      assert.ok(error instanceof InvalidInputError);
      assert.match(error.message, /between 1 and 30 minutes/);
      return true;
    });
  });

  it("refuses a blob name that could address another path", async () => {
    await assert.rejects(stores.sources.createUploadUrl("../x", 5), InvalidInputError);
  });
});

describe("source store read SAS", () => {
  it("reads the blob but cannot write it or another blob", async () => {
    const upload = await stores.sources.createUploadUrl("r1.tar.gz", 10);
    await new BlockBlobClient(upload.url).upload("content", 7);
    const { url } = await stores.sources.createReadUrl("r1.tar.gz", 60);
    assert.equal(new URL(url).searchParams.get("sp"), "r");
    assert.equal((await new BlobClient(url).downloadToBuffer()).toString(), "content");
    assert.equal(await outcome(() => new BlockBlobClient(url).upload("changed", 7)), 403);
    assert.equal(
      await outcome(() => new BlockBlobClient(sameSasOtherBlob(url, "r2.tar.gz")).upload("x", 1)),
      403,
    );
  });
});

describe("source store checks", () => {
  it("reports size and Content-MD5 of an uploaded blob, and the SHA-256 of its bytes", async () => {
    const body = Buffer.from("a".repeat(100_000));
    const md5 = createHash("md5").update(body).digest();
    const { url } = await stores.sources.createUploadUrl("s1.tar.gz", 10);
    await new BlockBlobClient(url).uploadData(body, {
      blockSize: 16 * 1024,
      maxSingleShotSize: 16 * 1024,
      concurrency: 4,
      blobHTTPHeaders: { blobContentMD5: md5 },
    });
    assert.deepEqual(await stores.sources.stat("s1.tar.gz"), {
      exists: true,
      size: body.length,
      contentMd5: md5.toString("base64"),
    });
    assert.equal(await stores.sources.sha256("s1.tar.gz"), createHash("sha256").update(body).digest("hex"));
  });

  it("says a missing blob does not exist, and its digest is NotFound with the storage code", async () => {
    assert.deepEqual(await stores.sources.stat("missing.tar.gz"), {
      exists: false,
      size: 0,
      contentMd5: undefined,
    });
    await assert.rejects(stores.sources.sha256("missing.tar.gz"), (error: unknown) => {
      assert.ok(error instanceof NotFoundError);
      assert.equal(error.code, "BlobNotFound");
      return true;
    });
  });
});

describe("log store", () => {
  it("creates the log idempotently and hands out an append SAS (racw)", async () => {
    const first = await stores.logs.createAppendLog("l1.log", 60);
    await stores.logs.append("l1.log", "one\n");
    const second = await stores.logs.createAppendLog("l1.log", 60);
    assert.equal(new URL(second.url).searchParams.get("sp"), "racw");
    await new AppendBlobClient(first.url, new AnonymousCredential()).appendBlock("two\n", 4);
    assert.equal((await stores.logs.read("l1.log", 0, 1024)).text, "one\ntwo\n");
  });

  it("keeps every line when several writers append at once", async () => {
    const { url } = await stores.logs.createAppendLog("l2.log", 60);
    const vm = new AppendBlobClient(url, new AnonymousCredential());
    const writes = Array.from({ length: 20 }, (_, i) => {
      const line = `line ${i}\n`;
      return i % 2 === 0 ? stores.logs.append("l2.log", line) : vm.appendBlock(line, line.length);
    });
    await Promise.all(writes);
    const { text, size, nextOffset } = await stores.logs.read("l2.log", 0, 1 << 20);
    assert.equal(nextOffset, size);
    assert.deepEqual(
      text.trimEnd().split("\n").sort(),
      Array.from({ length: 20 }, (_, i) => `line ${i}`).sort(),
    );
  });

  it("reads from an offset in chunks and follows a growing log", async () => {
    await stores.logs.createAppendLog("l3.log", 60);
    await stores.logs.append("l3.log", "abcdef");
    const a = await stores.logs.read("l3.log", 0, 4);
    assert.deepEqual(a, { text: "abcd", nextOffset: 4, size: 6 });
    const b = await stores.logs.read("l3.log", a.nextOffset, 4);
    assert.deepEqual(b, { text: "ef", nextOffset: 6, size: 6 });
    const idle = await stores.logs.read("l3.log", b.nextOffset, 4);
    assert.deepEqual(idle, { text: "", nextOffset: 6, size: 6 });
    await stores.logs.append("l3.log", "gh");
    assert.deepEqual(await stores.logs.read("l3.log", idle.nextOffset, 4), {
      text: "gh",
      nextOffset: 8,
      size: 8,
    });
  });

  it("never splits a multi-byte character between reads", async () => {
    await stores.logs.createAppendLog("l4.log", 60);
    const text = "é→😀 done\n";
    await stores.logs.append("l4.log", text);
    let offset = 0;
    const pieces: string[] = [];
    for (let i = 0; i < 50 && offset < Buffer.byteLength(text); i++) {
      const chunk = await stores.logs.read("l4.log", offset, 4);
      assert.ok(!chunk.text.includes("\uFFFD"), `split character at ${offset}`);
      pieces.push(chunk.text);
      offset = chunk.nextOffset;
    }
    assert.equal(pieces.join(""), text);
  });

  it("says a log that does not exist yet is NotFound", async () => {
    await assert.rejects(stores.logs.read("nope.log", 0, 100), NotFoundError);
  });
});

describe("UTF-8 boundaries", () => {
  it("a prefix cut at charBoundaryBefore always decodes to a prefix of the text", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.nat(), (text, cut) => {
        const bytes = Buffer.from(text, "utf8");
        const end = charBoundaryBefore(bytes, Math.min(cut, bytes.length));
        assert.ok(end >= Math.min(cut, bytes.length) - 3);
        assert.ok(text.startsWith(bytes.subarray(0, end).toString("utf8")));
      }),
    );
  });
});

describe("configuration", () => {
  it("refuses plain http to a non-loopback storage endpoint", () => {
    const key = Buffer.from("k").toString("base64");
    assert.throws(
      () =>
        createBlobStores({
          connectionString: `DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=${key};BlobEndpoint=http://acct.blob.example.net;`,
          blobEndpoint: undefined,
          sourceContainer: "build-sources",
          logContainer: "build-logs",
        }),
      ConfigError,
    );
  });

  it("refuses a configuration with neither a connection string nor an endpoint and identity", () => {
    assert.throws(
      () =>
        createBlobStores({
          connectionString: undefined,
          blobEndpoint: undefined,
          sourceContainer: "build-sources",
          logContainer: "build-logs",
        }),
      ConfigError,
    );
  });
});
