/**
 * The content store's gateway (src/core/sourceManifest.ts has the layout): JSON blobs read and
 * written with ETag conditions (the environments' indexes, each build's pending request and plan),
 * SAS URLs for exactly one blob, and the streaming check of an uploaded pack. It signs over the
 * same `BlobAccount` as the source and log stores (account key locally, user delegation in Azure).
 */
import { createHash, type Hash } from "node:crypto";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { NotFoundError } from "../core/errors.js";
import type { ContentStore, JsonBlob, PackCheck, WriteCondition } from "../core/ports.js";
import { type BlobAccount, checkBlobName, MAX_SAS_MINUTES, SignedContainer } from "./blobs.js";
import { toTypedError } from "./errors.js";

export function createContentStore(account: BlobAccount, containerName: string): ContentStore {
  return new BlobContentStore(account, containerName);
}

/** How many JSON blobs a store instance keeps with their ETags (each an index, a manifest or less). */
const KNOWN_BLOBS = 32;

/** Thrown inside the pack check's pipeline to stop the download at the first wrong byte. */
class PackProblem extends Error {}

class BlobContentStore extends SignedContainer implements ContentStore {
  readonly maxReadMinutes = MAX_SAS_MINUTES;

  /**
   * The JSON blobs this instance last read or wrote, with their ETags: a read asks with
   * `If-None-Match: <etag>` and, answered 304 Not Modified, returns the same value without a
   * download or a parse ("Specify this header to perform the operation only if the resource's ETag
   * doesn't match the value specified", Get Blob's conditional headers:
   * https://learn.microsoft.com/rest/api/storageservices/specifying-conditional-headers-for-blob-service-operations).
   * The environments' indexes are read by every build's start and report; most reads find the
   * version this instance wrote. Values are never changed after they are read or written.
   */
  private readonly known = new Map<string, JsonBlob>();

  /** A blob that is not JSON reads as `value: undefined` with its ETag, so a caller can replace it. */
  async readJson(blobName: string): Promise<JsonBlob | undefined> {
    checkBlobName(blobName);
    const container = await this.account.container(this.containerName);
    const cached = this.known.get(blobName);
    let text: string;
    let etag: string;
    try {
      const download = await container
        .getBlobClient(blobName)
        .download(0, undefined, cached ? { conditions: { ifNoneMatch: cached.etag } } : {});
      const chunks: Buffer[] = [];
      const body = download.readableStreamBody as Readable | undefined;
      if (body) for await (const chunk of body) chunks.push(chunk as Buffer);
      text = Buffer.concat(chunks).toString("utf8");
      etag = download.etag ?? "";
    } catch (error) {
      if (cached && (error as { statusCode?: number }).statusCode === 304)
        return this.remember(blobName, cached);
      this.known.delete(blobName);
      const typed = toTypedError(error, "blob", `blob ${blobName}`);
      if (typed instanceof NotFoundError) return undefined;
      throw typed;
    }
    let value: unknown;
    try {
      value = JSON.parse(text) as unknown;
    } catch {
      value = undefined;
    }
    return this.remember(blobName, { value, etag });
  }

  private remember(blobName: string, blob: JsonBlob): JsonBlob {
    this.known.delete(blobName);
    if (blob.etag) this.known.set(blobName, blob);
    if (this.known.size > KNOWN_BLOBS) this.known.delete(this.known.keys().next().value!);
    return blob;
  }

  /**
   * Put Blob with `If-Match: <etag>` (replace only what was read) or `If-None-Match: *` (create
   * only): "Specify the wildcard character (*) to perform the operation only if the resource does
   * not exist, and fail the operation if it does exist"; a failed condition answers 412, or 409
   * for a create over an existing blob, both `ConflictError` here (src/azure/errors.ts)
   * (https://learn.microsoft.com/rest/api/storageservices/specifying-conditional-headers-for-blob-service-operations).
   */
  async writeJson(blobName: string, value: unknown, condition: WriteCondition): Promise<string> {
    checkBlobName(blobName);
    const container = await this.account.container(this.containerName);
    const bytes = Buffer.from(JSON.stringify(value), "utf8");
    try {
      const response = await container.getBlockBlobClient(blobName).upload(bytes, bytes.length, {
        blobHTTPHeaders: { blobContentType: "application/json" },
        ...(condition ? { conditions: condition } : {}),
      });
      const etag = response.etag ?? "";
      this.remember(blobName, { value, etag });
      return etag;
    } catch (error) {
      this.known.delete(blobName);
      throw toTypedError(error, "blob", `blob ${blobName}`);
    }
  }

  /**
   * Download → gunzip → one hash per content, chunk by chunk. It stops at the first content whose
   * sha256 differs and as soon as the output passes the declared sizes (a gzip bomb inflates no
   * further than the contents it claims to hold); gunzip itself refuses bytes after the last gzip
   * member that do not start another one.
   */
  async verifyPack(
    blobName: string,
    contents: readonly { sha256: string; size: number }[],
  ): Promise<PackCheck> {
    checkBlobName(blobName);
    const container = await this.account.container(this.containerName);
    let body: Readable | undefined;
    try {
      body = (await container.getBlobClient(blobName).download()).readableStreamBody as Readable | undefined;
    } catch (error) {
      throw toTypedError(error, "blob", `blob ${blobName}`);
    }
    if (!body) return { ok: false, problem: "the pack is empty" };

    let index = 0;
    let remaining = contents[0]?.size ?? 0;
    let hash: Hash = createHash("sha256");
    let offset = 0;
    let stopped: PackProblem | undefined;
    const stop = (message: string): never => {
      stopped = new PackProblem(message);
      throw stopped;
    };
    /** Closes every content that is complete (size 0 ones at once); throws at the first wrong one. */
    const settle = () => {
      while (index < contents.length && remaining === 0) {
        const expected = contents[index]!;
        const actual = hash.digest("hex");
        if (actual !== expected.sha256) {
          stop(
            `content ${index + 1} (${expected.size} bytes from offset ${offset - expected.size}) has sha256 ${actual}, not ${expected.sha256}`,
          );
        }
        index++;
        remaining = contents[index]?.size ?? 0;
        hash = createHash("sha256");
      }
    };
    try {
      settle();
      await pipeline(body, createGunzip(), async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) {
          let at = 0;
          while (at < chunk.length) {
            if (index >= contents.length) {
              stop(`the pack holds more than the ${offset} bytes of its contents`);
            }
            const take = Math.min(remaining, chunk.length - at);
            hash.update(chunk.subarray(at, at + take));
            at += take;
            offset += take;
            remaining -= take;
            settle();
          }
        }
      });
    } catch (error) {
      // Stopping the pipeline aborts the download too, and it may reject with that abort instead.
      if (stopped) return { ok: false, problem: stopped.message };
      if (error instanceof PackProblem) return { ok: false, problem: error.message };
      if (isZlibError(error)) return { ok: false, problem: `not a gzip stream (${error.message})` };
      throw toTypedError(error, "blob", `blob ${blobName}`);
    }
    if (index < contents.length) {
      return {
        ok: false,
        problem: `the pack ends after ${offset} bytes, inside content ${index + 1} of ${contents.length}`,
      };
    }
    return { ok: true };
  }
}

function isZlibError(error: unknown): error is Error {
  const code = (error as { code?: unknown } | undefined)?.code;
  return error instanceof Error && typeof code === "string" && code.startsWith("Z_");
}
