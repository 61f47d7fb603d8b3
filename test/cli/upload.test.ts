import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createBlobStores, type BlobStores } from "../../src/azure/blobs.js";
import { uploadFileToSas } from "../../src/azure/storageUpload.js";
import { createContentStore } from "../../src/azure/contentStore.js";
import { createArchive } from "../../src/cli/archive.js";
import { createManifest, type SourceTree } from "../../src/cli/manifest.js";
import { uploadPacks } from "../../src/cli/packs.js";
import type { ContentUploads } from "../../src/core/api.js";
import { FastBuildError } from "../../src/core/errors.js";
import { startAzurite, type Azurite } from "@fast-build/local-cloud/azurite";

let azurite: Azurite;
let stores: BlobStores;
let root: string;

before(async () => {
  azurite = await startAzurite();
  stores = createBlobStores({
    connectionString: azurite.connectionString,
    blobEndpoint: undefined,
    sourceContainer: "build-sources",
    logContainer: "build-logs",
  });
  root = await mkdtemp(join(tmpdir(), "fb-upload-test-"));
  await mkdir(join(root, "src"));
  await writeFile(join(root, "Cargo.toml"), '[package]\nname = "app"\n');
  await writeFile(join(root, "src/main.rs"), "fn main() {}\n");
  // Incompressible, so the archive spans several 4 MiB blocks uploaded in parallel.
  await writeFile(join(root, "assets.bin"), randomBytes(9 * 1024 * 1024));
});
after(async () => {
  await azurite.stop();
  await rm(root, { recursive: true, force: true });
});

it("uploads the archive with the server-issued SAS; the stored blob has the archive's digest and MD5", async () => {
  const archive = await createArchive(root);
  try {
    const { url } = await stores.sources.createUploadUrl("build-1.tar.gz", 15);
    let progress = 0;
    await uploadFileToSas(archive.path, url, { md5: archive.md5, onProgress: (bytes) => (progress = bytes) });
    assert.equal(progress, archive.bytes);
    assert.equal(`sha256:${await stores.sources.sha256("build-1.tar.gz")}`, archive.digest);
    assert.deepEqual(await stores.sources.stat("build-1.tar.gz"), {
      exists: true,
      size: archive.bytes,
      contentMd5: archive.md5,
    });
  } finally {
    await archive.dispose();
  }
});

it("a read-only SAS cannot be used to upload: the error is typed and keeps the storage code", async () => {
  const archive = await createArchive(root);
  try {
    const { url } = await stores.sources.createReadUrl("build-2.tar.gz", 15);
    await assert.rejects(uploadFileToSas(archive.path, url), (error: unknown) => {
      assert.ok(error instanceof FastBuildError);
      assert.equal(error.code, "AuthorizationPermissionMismatch");
      assert.ok(!error.message.includes("sig="), "never prints the signature");
      return true;
    });
    assert.equal((await stores.sources.stat("build-2.tar.gz")).exists, false);
  } finally {
    await archive.dispose();
  }
});

describe("uploadPacks", () => {
  const contents = () => createContentStore(stores.account, "source-content");
  const answer = async (packs: string[][], maxBytes = 1024 * 1024): Promise<ContentUploads> => {
    const store = contents();
    const urls = await Promise.all(packs.map((_, n) => store.createUploadUrl(`packs/t-${salt}/${n}.gz`, 15)));
    return {
      packs: packs.map((shas, n) => ({ url: urls[n]!.url, contents: shas })),
      expiresOn: urls[0]!.expiresOn,
      maxBytes,
      stored: 0,
      missing: packs.flat().length,
      missingBytes: 0,
    };
  };
  const salt = randomBytes(4).toString("hex");
  const shaOf = (tree: SourceTree, path: string) => {
    const entry = tree.manifest.entries.find((e) => e.path === path);
    assert.ok(entry?.type === "file");
    return entry;
  };

  it("uploads each pack as the gzip of its contents in order, as the API verifies it", async () => {
    const tree = await createManifest(root);
    const order = [shaOf(tree, "src/main.rs"), shaOf(tree, "Cargo.toml")];
    const planned = await answer([[order[0]!.sha256], [order[1]!.sha256]]);
    const sent = await uploadPacks(tree, planned);
    assert.ok(sent > 0);
    for (const [n, entry] of order.entries()) {
      const check = await contents().verifyPack(`packs/t-${salt}/${n}.gz`, [entry]);
      assert.equal(check.ok, true, JSON.stringify(check));
    }
  });

  it("refuses packs over the answer's limit, and a content the manifest does not have, sending nothing", async () => {
    const tree = await createManifest(root);
    const big = shaOf(tree, "assets.bin");
    await assert.rejects(uploadPacks(tree, await answer([[big.sha256]], 1024)), { code: "SourceTooLarge" });
    await assert.rejects(uploadPacks(tree, await answer([["f".repeat(64)]])), (error: unknown) => {
      assert.ok(error instanceof FastBuildError);
      assert.equal(error.code, "UnexpectedAnswer");
      assert.match(error.hint ?? "", /different versions/);
      return true;
    });
  });
});
