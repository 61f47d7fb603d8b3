import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { BlobServiceClient } from "@azure/storage-blob";
import { startAzurite, type Azurite } from "../src/azurite.js";

let azurite: Azurite;
before(async () => {
  azurite = await startAzurite();
});
after(async () => {
  await azurite.stop();
});

it("serves blobs through the real storage SDK", async () => {
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  const container = service.getContainerClient("smoke");
  await container.create();
  await container.getBlockBlobClient("a.txt").upload("hello", 5);
  const body = await container.getBlobClient("a.txt").downloadToBuffer();
  assert.equal(body.toString(), "hello");
});
