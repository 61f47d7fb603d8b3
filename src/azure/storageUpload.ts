/**
 * The client side of a source upload: puts a file on a server-issued SAS URL. Lives here because
 * this folder is the only one that talks to the storage SDK; the CLI calls it.
 */
import { AnonymousCredential, BlockBlobClient } from "@azure/storage-blob";
import { InvalidInputError, PermanentError } from "../core/errors.js";
import { toTypedError } from "./errors.js";

/** Blocks of 4 MiB, 4 in flight: a good pace on a home uplink without hogging memory. */
const BLOCK_BYTES = 4 * 1024 * 1024;
const BLOCKS = { blockSize: BLOCK_BYTES, maxSingleShotSize: BLOCK_BYTES, concurrency: 4 } as const;

export interface UploadOptions {
  /** Base64 MD5 of the file, stored as the blob's Content-MD5 (the server can compare it). */
  md5?: string;
  onProgress?: (uploadedBytes: number) => void;
  signal?: AbortSignal;
}

/** Uploads `path` to the blob a SAS URL names, in parallel blocks. */
export async function uploadFileToSas(
  path: string,
  sasUrl: string,
  options: UploadOptions = {},
): Promise<void> {
  await putWith(sasUrl, "the source upload", (client) =>
    client.uploadFile(path, { ...BLOCKS, ...requestOptions(options) }),
  );
}

/** Uploads bytes held in memory (a pack of contents) to the blob a SAS URL names. */
export async function uploadBytesToSas(
  bytes: Buffer,
  sasUrl: string,
  options: UploadOptions = {},
): Promise<void> {
  await putWith(sasUrl, "a pack upload", (client) =>
    client.uploadData(bytes, { ...BLOCKS, ...requestOptions(options) }),
  );
}

function requestOptions(options: UploadOptions) {
  return {
    blobHTTPHeaders: {
      blobContentType: "application/gzip",
      ...(options.md5 ? { blobContentMD5: Buffer.from(options.md5, "base64") } : {}),
    },
    ...(options.onProgress
      ? { onProgress: (p: { loadedBytes: number }) => options.onProgress?.(p.loadedBytes) }
      : {}),
    ...(options.signal ? { abortSignal: options.signal } : {}),
  };
}

/** One upload through a server-issued SAS, its failures typed; an expired or wrong grant says what to do. */
async function putWith(sasUrl: string, what: string, put: (client: BlockBlobClient) => Promise<unknown>) {
  let client: BlockBlobClient;
  try {
    client = new BlockBlobClient(sasUrl, new AnonymousCredential());
  } catch (error) {
    throw new InvalidInputError("the upload URL from the server is not a blob URL", {
      code: "InvalidUploadUrl",
      cause: error,
    });
  }
  try {
    await put(client);
  } catch (error) {
    const mapped = toTypedError(error, "blob", what);
    if (mapped instanceof PermanentError && mapped.code === "AuthenticationFailed") {
      throw new InvalidInputError("the upload URL was refused (expired?)", {
        code: "UploadUrlRejected",
        hint: "Run the command again to get a fresh upload URL; check your clock if it keeps happening.",
        cause: error,
      });
    }
    throw mapped;
  }
}
