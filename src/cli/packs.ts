/**
 * The packs of a manifest build (src/core/sourceManifest.ts): each the gzip of the contents the
 * API listed for it, concatenated in that order, put through its own SAS, `PACKS.uploadConcurrency`
 * at a time. Only the contents the store lacks are asked for, so an unchanged tree sends none.
 */
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import { uploadBytesToSas } from "../azure/storageUpload.js";
import type { ContentUploads } from "../core/api.js";
import { PermanentError } from "../core/errors.js";
import { PACKS } from "../core/sourceManifest.js";
import { sourceTooLarge } from "./archive.js";
import type { SourceTree } from "./manifest.js";

const compress = promisify(gzip);

export interface PackUploadOptions {
  signal?: AbortSignal;
  /** Bytes of packs uploaded so far. */
  onProgress?: (bytes: number) => void;
}

/** Uploads every pack; resolves to the bytes sent. A content the tree lacks or has changed is refused. */
export async function uploadPacks(
  tree: SourceTree,
  contents: ContentUploads,
  options: PackUploadOptions = {},
): Promise<number> {
  const known = new Set(tree.manifest.entries.flatMap((e) => (e.type === "file" ? [e.sha256] : [])));
  for (const sha256 of contents.packs.flatMap((pack) => pack.contents)) {
    if (!known.has(sha256)) {
      throw new PermanentError(`the API asked for content ${sha256}, which the manifest does not have`, {
        code: "UnexpectedAnswer",
        hint: "The CLI and the function app may be different versions; update the CLI.",
      });
    }
  }
  let sent = 0;
  let next = 0;
  const worker = async () => {
    while (next < contents.packs.length) {
      const pack = contents.packs[next++]!;
      const bytes = await compress(Buffer.concat(pack.contents.map((sha256) => tree.read(sha256))), {
        level: PACKS.gzipLevel,
      });
      if (sent + bytes.length > contents.maxBytes) throw sourceTooLarge(undefined, contents.maxBytes);
      await uploadBytesToSas(bytes, pack.url, options.signal ? { signal: options.signal } : {});
      sent += bytes.length;
      options.onProgress?.(sent);
    }
  };
  const workers = Math.min(PACKS.uploadConcurrency, contents.packs.length);
  await Promise.all(Array.from({ length: workers }, worker));
  return sent;
}
