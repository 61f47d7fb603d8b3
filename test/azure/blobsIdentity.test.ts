/**
 * The production storage path: no account key anywhere, only the app's managed identity.
 * Real Azurite over HTTPS with `--oauth basic`, the real `ManagedIdentityCredential` getting its
 * token from the ARM emulator's identity endpoint, and user-delegation SAS URLs used by plain
 * SDK clients the way the CLI and the builder VM use them.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  AnonymousCredential,
  AppendBlobClient,
  BlobClient,
  BlobServiceClient,
  BlockBlobClient,
  type StoragePipelineOptions,
} from "@azure/storage-blob";
import { createBlobStores, type BlobStores } from "../../src/azure/blobs.js";
import { FastBuildError } from "../../src/core/errors.js";
import { createCredential, type TokenCredential } from "../../src/azure/credentials.js";
import { startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { startAzurite, type SecureAzurite } from "@fast-build/local-cloud/azurite";
import { LOCAL_OBJECT_ID, LOCAL_TENANT_ID, unsignedStorageToken } from "@fast-build/local-cloud/oauthToken";
import { outcome, sameSasOtherBlob } from "./sas.js";

let azurite: SecureAzurite;
let arm: ArmEmulator;
let credential: TokenCredential;
let stores: BlobStores;
/** Per-client trust of Azurite's certificate, plus no retries (they are not the subject here). */
let pipeline: StoragePipelineOptions;
const now = new Date();
const saved = { endpoint: process.env.IDENTITY_ENDPOINT, header: process.env.IDENTITY_HEADER };

before(async () => {
  [azurite, arm] = await Promise.all([
    startAzurite({ https: true, oauth: true }),
    startArmEmulator({ accessToken: unsignedStorageToken() }),
  ]);
  // What App Service / Functions set for the app's managed identity.
  process.env.IDENTITY_ENDPOINT = arm.identityEndpoint;
  process.env.IDENTITY_HEADER = arm.identityHeader;
  credential = createCredential({ mode: "managedIdentity" });
  // StoragePipelineOptions does not declare `tlsOptions`, but storage-blob hands its options to
  // core-rest-pipeline's createPipelineFromOptions, which honours it (without it: self-signed error).
  const options = { retryOptions: { maxTries: 1 }, tlsOptions: { ca: azurite.ca } };
  pipeline = options;
  stores = createBlobStores(
    {
      connectionString: undefined,
      blobEndpoint: azurite.blobEndpoint,
      sourceContainer: "build-sources",
      logContainer: "build-logs",
    },
    credential,
    { pipeline, now: () => now },
  );
});
after(async () => {
  if (saved.endpoint === undefined) delete process.env.IDENTITY_ENDPOINT;
  else process.env.IDENTITY_ENDPOINT = saved.endpoint;
  if (saved.header === undefined) delete process.env.IDENTITY_HEADER;
  else process.env.IDENTITY_HEADER = saved.header;
  await Promise.all([azurite?.stop(), arm?.stop()]);
});

/** Clients a SAS holder (CLI, builder VM) would build: the URL alone, no credential of ours. */
const sasBlock = (url: string) => new BlockBlobClient(url, new AnonymousCredential(), pipeline);
const sasBlob = (url: string) => new BlobClient(url, new AnonymousCredential(), pipeline);
const sasAppend = (url: string) => new AppendBlobClient(url, new AnonymousCredential(), pipeline);

describe("storage over the managed identity (no account key)", () => {
  it("is refused without a token: the account really demands authorization", async () => {
    const anonymous = new BlobServiceClient(azurite.blobEndpoint, new AnonymousCredential(), pipeline);
    assert.equal(await outcome(() => anonymous.getContainerClient("anon").create()), 403);
  });

  it("signs upload URLs as user-delegation SAS of the identity, never with a key", async () => {
    const { url, expiresOn } = await stores.sources.createUploadUrl("u0.tar.gz", 30);
    const params = new URL(url).searchParams;
    assert.equal(new URL(url).protocol, "https:");
    assert.equal(params.get("skoid"), LOCAL_OBJECT_ID);
    assert.equal(params.get("sktid"), LOCAL_TENANT_ID);
    assert.ok(params.get("skt") && params.get("ske") && params.get("skv"));
    assert.equal(params.get("sks"), "b");
    assert.equal(params.get("sp"), "cw");
    assert.equal(params.get("sr"), "b");
    assert.equal(params.get("spr"), "https");
    assert.equal(Date.parse(expiresOn), now.getTime() + 30 * 60_000);
  });

  it("lets the upload SAS holder create exactly that blob", async () => {
    const { url } = await stores.sources.createUploadUrl("u1.tar.gz", 15);
    assert.equal(await outcome(() => sasBlock(url).upload("archive", 7)), "ok");
    assert.deepEqual(await stores.sources.stat("u1.tar.gz"), {
      exists: true,
      size: 7,
      contentMd5: createHash("md5").update("archive").digest("base64"),
    });
  });

  it("does not let the upload SAS read the blob back or write another blob", async () => {
    const { url } = await stores.sources.createUploadUrl("u2.tar.gz", 15);
    await sasBlock(url).upload("secret", 6);
    assert.equal(await outcome(() => sasBlob(url).download()), 403);
    assert.equal(await outcome(() => sasBlob(url).delete()), 403);
    assert.equal(await outcome(() => sasBlock(sameSasOtherBlob(url, "u2-other.tar.gz")).upload("x", 1)), 403);
    assert.equal((await stores.sources.stat("u2-other.tar.gz")).exists, false);
  });

  it("rejects a SAS whose delegated identity was altered (the signature covers it)", async () => {
    const { url } = await stores.sources.createUploadUrl("u3.tar.gz", 15);
    const forged = new URL(url);
    forged.searchParams.set("skoid", "00000000-0000-0000-0000-0000000000ff");
    assert.equal(await outcome(() => sasBlock(forged.toString()).upload("x", 1)), 403);
    assert.equal((await stores.sources.stat("u3.tar.gz")).exists, false);
  });

  it("lets the read SAS download the blob and nothing more", async () => {
    const upload = await stores.sources.createUploadUrl("r1.tar.gz", 10);
    await sasBlock(upload.url).upload("content", 7);
    const { url } = await stores.sources.createReadUrl("r1.tar.gz", 60);
    const params = new URL(url).searchParams;
    assert.equal(params.get("sp"), "r");
    assert.equal(params.get("skoid"), LOCAL_OBJECT_ID);
    assert.equal((await sasBlob(url).downloadToBuffer()).toString(), "content");
    assert.equal(await outcome(() => sasBlock(url).upload("changed", 7)), 403);
    assert.equal(await outcome(() => sasBlob(sameSasOtherBlob(url, "u1.tar.gz")).download()), 403);
  });

  it("computes stat and SHA-256 of an uploaded archive with the identity", async () => {
    const body = Buffer.from("fast-build ".repeat(10_000));
    const { url } = await stores.sources.createUploadUrl("h1.tar.gz", 10);
    await sasBlock(url).uploadData(body, {
      blockSize: 16 * 1024,
      maxSingleShotSize: 16 * 1024,
      concurrency: 4,
    });
    assert.equal((await stores.sources.stat("h1.tar.gz")).size, body.length);
    assert.equal(await stores.sources.sha256("h1.tar.gz"), createHash("sha256").update(body).digest("hex"));
    assert.equal((await stores.sources.stat("h1-missing.tar.gz")).exists, false);
  });

  it("lets the log SAS holder append while the app appends and reads with the identity", async () => {
    const { url } = await stores.logs.createAppendLog("l1.log", 60);
    const params = new URL(url).searchParams;
    assert.equal(params.get("sp"), "racw");
    assert.equal(params.get("sktid"), LOCAL_TENANT_ID);
    await stores.logs.append("l1.log", "from the app\n");
    await sasAppend(url).appendBlock("from the vm\n", 12);
    assert.equal((await stores.logs.read("l1.log", 0, 1024)).text, "from the app\nfrom the vm\n");
    assert.equal(await outcome(() => sasAppend(sameSasOtherBlob(url, "l1-other.log")).create()), 403);
  });
});

describe("user delegation key reuse", () => {
  it("reuses one key while it outlives new SAS URLs, and renews it before one would outlive it", async () => {
    // Start the clock 23 h back so the first key (valid 25 h) ends 2 h from now, then catch up.
    let clock = new Date(Date.now() - 23 * 3600_000);
    const clocked = createBlobStores(
      {
        connectionString: undefined,
        blobEndpoint: azurite.blobEndpoint,
        sourceContainer: "renew-sources",
        logContainer: "renew-logs",
      },
      credential,
      { pipeline, now: () => clock },
    );
    const early = (await clocked.sources.createReadUrl("k1.tar.gz", 24 * 60)).url;
    clock = new Date();
    const short = (await clocked.sources.createReadUrl("k1.tar.gz", 60)).url;
    const long = (await clocked.sources.createReadUrl("k1.tar.gz", 24 * 60)).url;
    await sasBlock((await clocked.sources.createUploadUrl("k1.tar.gz", 10)).url).upload("key", 3);

    for (const url of [early, short, long]) {
      assert.equal((await sasBlob(url).downloadToBuffer()).toString(), "key");
    }
    const [earlyKey, shortKey, longKey] = [early, short, long].map((url) => new URL(url).searchParams);
    assert.equal(shortKey!.get("ske"), earlyKey!.get("ske"), "a SAS inside the key's lifetime reuses it");
    assert.notEqual(
      longKey!.get("ske"),
      earlyKey!.get("ske"),
      "a SAS past the key's lifetime gets a new key",
    );
    for (const params of [earlyKey!, shortKey!, longKey!]) {
      assert.ok(Date.parse(params.get("ske")!) >= Date.parse(params.get("se")!), "SAS outlives its key");
    }
  });
});

describe("storage with an identity the account does not accept", () => {
  it("fails to sign with a non-retryable error that names the storage code, not the URL", async () => {
    // A token for the wrong audience (ARM's): what a misconfigured identity scope would produce.
    const wrongAudience: TokenCredential = {
      getToken: () =>
        Promise.resolve({
          token: unsignedStorageToken({ audience: "https://management.azure.com" }),
          expiresOnTimestamp: Date.now() + 3600_000,
        }),
    };
    const refused = createBlobStores(
      {
        connectionString: undefined,
        blobEndpoint: azurite.blobEndpoint,
        sourceContainer: "refused-sources",
        logContainer: "refused-logs",
      },
      wrongAudience,
      { pipeline },
    );
    await assert.rejects(refused.sources.createUploadUrl("x1.tar.gz", 10), (error: unknown) => {
      assert.ok(error instanceof FastBuildError, String(error));
      assert.equal(error.retryable, false);
      assert.equal(error.code, "AuthenticationFailed");
      assert.doesNotMatch(error.message, /https?:\/\//);
      return true;
    });
  });
});
