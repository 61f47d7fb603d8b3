/**
 * Blob gateways: the source archive store (`SourceStore`) and the live build log (`LogStore`).
 *
 * Two ways to sign SAS URLs, picked from the configuration:
 * - a connection string with an account key (Azurite, key-based accounts) → account-key SAS;
 * - a blob endpoint + a `TokenCredential` (managed identity in Azure) → user-delegation SAS, so the
 *   function app never holds an account key (needs "Storage Blob Delegator" + "Data Contributor").
 *
 * Every SAS names exactly one blob and carries only the permissions its holder needs.
 */
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import type { TokenCredential } from "@azure/identity";
import {
  BlobSASPermissions,
  BlobServiceClient,
  type ContainerClient,
  generateBlobSASQueryParameters,
  SASProtocol,
  StorageSharedKeyCredential,
  type StoragePipelineOptions,
  type UserDelegationKey,
} from "@azure/storage-blob";
import type { Config } from "../config/index.js";
import { ConfigError, InvalidInputError, NotFoundError } from "../core/errors.js";
import type { BlobStat, LogChunk, LogStore, SignedUrl, SourceStore } from "../core/ports.js";
import { toTypedError } from "./errors.js";

/** A write grant that outlives the upload is a standing risk: never sign one for longer. */
export const MAX_UPLOAD_SAS_MINUTES = 30;
/** Read / append grants live as long as a build may (the build timeout is ≤ 240 min). */
export const MAX_SAS_MINUTES = 24 * 60;
/** Clients and VMs with slightly fast clocks would otherwise see "not yet valid". */
const CLOCK_SKEW_MS = 5 * 60_000;
/** Azure's limit for one Append Block call. */
const MAX_APPEND_BLOCK_BYTES = 4 * 1024 * 1024;

export interface BlobStoresOptions {
  /** Passed to the SDK client, e.g. `{ retryOptions: { maxTries: 1 } }` in tests. */
  pipeline?: StoragePipelineOptions;
  /** Clock for SAS start/expiry (tests); defaults to the system clock. */
  now?: () => Date;
}

export interface BlobStores {
  sources: SourceStore;
  logs: LogStore;
  /** The account both stores use, for the other gateways over it (src/azure/contentStore.ts). */
  account: BlobAccount;
}

/**
 * Builds both stores from the app's storage settings. With a connection string the account key
 * signs; otherwise `blobEndpoint` + `credential` (user-delegation SAS).
 */
export function createBlobStores(
  storage: Pick<Config["storage"], "connectionString" | "blobEndpoint" | "sourceContainer" | "logContainer">,
  credential?: TokenCredential,
  options: BlobStoresOptions = {},
): BlobStores {
  const account = BlobAccount.create(storage, credential, options);
  return {
    sources: new BlobSourceStore(account, storage.sourceContainer),
    logs: new BlobLogStore(account, storage.logContainer),
    account,
  };
}

/** The service client plus the right SAS signer for it; shared by every blob gateway. */
export class BlobAccount {
  private readonly containers = new Map<string, Promise<ContainerClient>>();
  private delegationKey: Promise<UserDelegationKey> | undefined;
  private delegationKeyExpires = 0;

  private constructor(
    readonly service: BlobServiceClient,
    private readonly sharedKey: StorageSharedKeyCredential | undefined,
    private readonly protocol: SASProtocol,
    readonly now: () => Date,
  ) {}

  static create(
    storage: Pick<Config["storage"], "connectionString" | "blobEndpoint">,
    credential: TokenCredential | undefined,
    options: BlobStoresOptions,
  ): BlobAccount {
    const now = options.now ?? (() => new Date());
    let service: BlobServiceClient;
    let sharedKey: StorageSharedKeyCredential | undefined;
    if (storage.connectionString) {
      try {
        service = BlobServiceClient.fromConnectionString(storage.connectionString, options.pipeline);
      } catch (error) {
        throw new ConfigError([
          `AzureWebJobsStorage: not a usable storage connection string (${errorText(error)})`,
        ]);
      }
      if (!(service.credential instanceof StorageSharedKeyCredential)) {
        // A SAS-only connection string cannot mint new SAS URLs.
        throw new ConfigError([
          "AzureWebJobsStorage: needs an AccountKey to sign upload URLs; or set FASTBUILD_BLOB_ENDPOINT and use a managed identity",
        ]);
      }
      sharedKey = service.credential;
    } else if (storage.blobEndpoint && credential) {
      service = new BlobServiceClient(storage.blobEndpoint, credential, options.pipeline);
    } else {
      throw new ConfigError([
        "storage: set AzureWebJobsStorage (connection string) or FASTBUILD_BLOB_ENDPOINT with a managed identity",
      ]);
    }
    return new BlobAccount(service, sharedKey, sasProtocolFor(service.url), now);
  }

  /** SAS are signed with the account key (else user delegation: an identity-only account). */
  get keyBased(): boolean {
    return this.sharedKey !== undefined;
  }

  /** The container, created on first use (once per process; a failed attempt is retried next time). */
  container(name: string): Promise<ContainerClient> {
    let ready = this.containers.get(name);
    if (!ready) {
      const client = this.service.getContainerClient(name);
      ready = client.createIfNotExists().then(
        () => client,
        (error: unknown) => {
          this.containers.delete(name);
          throw toTypedError(error, "blob", `container ${name}`);
        },
      );
      this.containers.set(name, ready);
    }
    return ready;
  }

  async sign(container: string, blobName: string, permissions: string, minutes: number): Promise<SignedUrl> {
    const now = this.now();
    const startsOn = new Date(now.getTime() - CLOCK_SKEW_MS);
    const expiresOn = new Date(now.getTime() + minutes * 60_000);
    const values = {
      containerName: container,
      blobName,
      permissions: BlobSASPermissions.parse(permissions),
      startsOn,
      expiresOn,
      protocol: this.protocol,
    };
    const query = this.sharedKey
      ? generateBlobSASQueryParameters(values, this.sharedKey)
      : generateBlobSASQueryParameters(
          values,
          await this.userDelegationKey(expiresOn),
          this.service.accountName,
        );
    const url = this.service.getContainerClient(container).getBlobClient(blobName).url;
    return { url: `${url}?${query.toString()}`, expiresOn: expiresOn.toISOString() };
  }

  /**
   * One delegation key serves many SAS URLs: fetch one valid for 6 hours and renew it once a new
   * SAS could outlive it (a SAS is only valid while its key is).
   */
  private userDelegationKey(sasExpiresOn: Date): Promise<UserDelegationKey> {
    if (!this.delegationKey || this.delegationKeyExpires <= sasExpiresOn.getTime()) {
      const now = this.now().getTime();
      const expires = now + Math.max(6 * 60, MAX_SAS_MINUTES + 60) * 60_000;
      this.delegationKeyExpires = expires;
      const pending: Promise<UserDelegationKey> = this.service
        .getUserDelegationKey(new Date(now - CLOCK_SKEW_MS), new Date(expires))
        .then(
          (key) => key as UserDelegationKey,
          (error: unknown) => {
            // Do not cache a failure: the next SAS request asks again.
            if (this.delegationKey === pending) this.delegationKey = undefined;
            throw toTypedError(error, "blob", "user delegation key");
          },
        );
      this.delegationKey = pending;
    }
    return this.delegationKey;
  }
}

/**
 * A container whose blobs clients reach through SAS URLs for exactly one blob: the upload grant,
 * the read grant, and a blob's size and MD5. Source archives and the content store
 * (src/azure/contentStore.ts) are both such.
 */
export class SignedContainer {
  constructor(
    protected readonly account: BlobAccount,
    protected readonly containerName: string,
  ) {}

  /**
   * Create + write for this blob only, ≤ 30 minutes, no read, delete or list: create alone ("write
   * a new blob") would refuse a client's second try of an upload that broke off; write lets it
   * replace the blob, and the API verifies whatever is there (BlobSasPermissions:
   * https://learn.microsoft.com/python/api/azure-storage-blob/azure.storage.blob.blobsaspermissions).
   */
  async createUploadUrl(blobName: string, minutes: number): Promise<SignedUrl> {
    checkBlobName(blobName);
    checkMinutes(minutes, MAX_UPLOAD_SAS_MINUTES, "upload SAS");
    await this.account.container(this.containerName);
    return this.account.sign(this.containerName, blobName, "cw", minutes);
  }

  /** Read-only SAS for the builder to download the blob. */
  async createReadUrl(blobName: string, minutes: number): Promise<SignedUrl> {
    checkBlobName(blobName);
    checkMinutes(minutes, MAX_SAS_MINUTES, "read SAS");
    await this.account.container(this.containerName);
    return this.account.sign(this.containerName, blobName, "r", minutes);
  }

  async stat(blobName: string): Promise<BlobStat> {
    checkBlobName(blobName);
    const container = await this.account.container(this.containerName);
    try {
      const props = await container.getBlobClient(blobName).getProperties();
      return {
        exists: true,
        size: props.contentLength ?? 0,
        contentMd5: props.contentMD5 ? Buffer.from(props.contentMD5).toString("base64") : undefined,
      };
    } catch (error) {
      const typed = toTypedError(error, "blob", `blob ${blobName}`);
      if (typed instanceof NotFoundError) return { exists: false, size: 0, contentMd5: undefined };
      throw typed;
    }
  }
}

/** Source archives: one block blob per build, uploaded by the CLI, read by the builder VM. */
export class BlobSourceStore extends SignedContainer implements SourceStore {
  /** Streams the blob through SHA-256 (never buffers it whole); hex digest. */
  async sha256(blobName: string): Promise<string> {
    checkBlobName(blobName);
    const container = await this.account.container(this.containerName);
    const hash = createHash("sha256");
    try {
      const download = await container.getBlobClient(blobName).download();
      const body = download.readableStreamBody as Readable | undefined;
      if (body) for await (const chunk of body) hash.update(chunk as Buffer);
    } catch (error) {
      throw toTypedError(error, "blob", `blob ${blobName}`);
    }
    return hash.digest("hex");
  }
}

/**
 * Build logs as append blobs: the VM (Run Command's outputBlobUri) and the functions append; the
 * API reads byte ranges so clients can follow a log live.
 */
export class BlobLogStore implements LogStore {
  /** @internal use {@link createBlobStores}. */
  constructor(
    private readonly account: BlobAccount,
    private readonly containerName: string,
  ) {}

  /** Creates the append blob if missing and returns a racw SAS for it (Run Command needs all four). */
  async createAppendLog(blobName: string, minutes: number): Promise<SignedUrl> {
    checkBlobName(blobName);
    checkMinutes(minutes, MAX_SAS_MINUTES, "log SAS");
    const container = await this.account.container(this.containerName);
    try {
      await container.getAppendBlobClient(blobName).createIfNotExists({
        blobHTTPHeaders: { blobContentType: "text/plain; charset=utf-8" },
      });
    } catch (error) {
      throw toTypedError(error, "blob", `log ${blobName}`);
    }
    return this.account.sign(this.containerName, blobName, "racw", minutes);
  }

  async runCommandLog(blobName: string, minutes: number): Promise<{ url: string; managedIdentity: boolean }> {
    checkBlobName(blobName);
    checkMinutes(minutes, MAX_SAS_MINUTES, "log SAS");
    const container = await this.account.container(this.containerName);
    if (!this.account.keyBased) return { url: container.getBlobClient(blobName).url, managedIdentity: true };
    const signed = await this.account.sign(this.containerName, blobName, "racw", minutes);
    return { url: signed.url, managedIdentity: false };
  }

  /** Appends text (split into ≤ 4 MiB blocks at character boundaries). The log must exist. */
  async append(blobName: string, text: string): Promise<void> {
    checkBlobName(blobName);
    const container = await this.account.container(this.containerName);
    const blob = container.getAppendBlobClient(blobName);
    const bytes = Buffer.from(text, "utf8");
    for (let start = 0; start < bytes.length;) {
      const end = charBoundaryBefore(bytes, Math.min(bytes.length, start + MAX_APPEND_BLOCK_BYTES), start);
      const block = bytes.subarray(start, end);
      try {
        await blob.appendBlock(block, block.length);
      } catch (error) {
        throw toTypedError(error, "blob", `log ${blobName}`);
      }
      start = end;
    }
  }

  /**
   * Up to `maxBytes` of the log from byte `offset`. The text never ends inside a multi-byte
   * character (the rest comes with the next read), and an offset inside one skips to the next
   * character. Throws `NotFoundError` when the log does not exist yet.
   */
  async read(blobName: string, offset: number, maxBytes: number): Promise<LogChunk> {
    checkBlobName(blobName);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new InvalidInputError(`offset must be a whole number ≥ 0, got ${offset}`, {
        code: "InvalidOffset",
        hint: "Start at 0 and pass the nextOffset of the previous answer.",
      });
    }
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 4) {
      // Fewer than 4 bytes may never fit one character: the reader would stall.
      throw new InvalidInputError(`maxBytes must be a whole number ≥ 4, got ${maxBytes}`, {
        code: "InvalidRange",
      });
    }
    const container = await this.account.container(this.containerName);
    const blob = container.getAppendBlobClient(blobName);
    try {
      const size = (await blob.getProperties()).contentLength ?? 0;
      if (offset >= size) return { text: "", nextOffset: offset, size };
      const download = await blob.download(offset, Math.min(maxBytes, size - offset));
      const bytes = await streamToBuffer(download.readableStreamBody as Readable | undefined);
      // The log may have grown between the two calls: Content-Range has the newer size.
      const total = Number(/\/(\d+)$/.exec(download.contentRange ?? "")?.[1] ?? size);
      const begin = skipContinuationBytes(bytes);
      const end = charBoundaryBefore(bytes, bytes.length, begin);
      return {
        text: bytes.subarray(begin, end).toString("utf8"),
        nextOffset: offset + end,
        size: Math.max(total, size),
      };
    } catch (error) {
      throw toTypedError(error, "blob", `log ${blobName}`);
    }
  }
}

/**
 * The largest index ≤ `end` (and ≥ `floor`) that does not cut a UTF-8 sequence in two. An
 * incomplete sequence at the end is left for the next read; invalid bytes are not waited for.
 */
export function charBoundaryBefore(bytes: Uint8Array, end: number, floor = 0): number {
  // A character is at most 4 bytes: look back at most 3 bytes for its lead byte.
  for (let i = end - 1; i >= Math.max(floor, end - 4); i--) {
    const byte = bytes[i] ?? 0;
    if ((byte & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead
    const length =
      byte < 0x80
        ? 1
        : (byte & 0xe0) === 0xc0
          ? 2
          : (byte & 0xf0) === 0xe0
            ? 3
            : (byte & 0xf8) === 0xf0
              ? 4
              : 1;
    return i + length > end ? i : end;
  }
  return end;
}

/** Bytes to skip when a read starts inside a character (a caller-chosen offset). */
function skipContinuationBytes(bytes: Uint8Array): number {
  let i = 0;
  while (i < 3 && i < bytes.length && ((bytes[i] ?? 0) & 0xc0) === 0x80) i++;
  return i;
}

async function streamToBuffer(stream: Readable | undefined): Promise<Buffer> {
  if (!stream) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** HTTPS-only SAS, except for plain-http loopback emulators (Azurite), which cannot serve TLS by default. */
function sasProtocolFor(endpoint: string): SASProtocol {
  const url = new URL(endpoint);
  if (url.protocol === "https:") return SASProtocol.Https;
  if (["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) return SASProtocol.HttpsAndHttp;
  throw new ConfigError([
    `storage endpoint ${url.origin}: plain http is only allowed for a local emulator; use https`,
  ]);
}

export function checkMinutes(minutes: number, max: number, what: string): void {
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > max) {
    throw new InvalidInputError(`${what} lifetime must be between 1 and ${max} minutes, got ${minutes}`, {
      code: "InvalidSasLifetime",
      hint: `Ask for at most ${max} minutes (FASTBUILD_UPLOAD_SAS_MINUTES for uploads).`,
    });
  }
}

export function checkBlobName(name: string): void {
  // Our names are ids we make (`<buildId>.tar.gz`); anything else is a bug or an attack.
  if (!/^[A-Za-z0-9][A-Za-z0-9._/-]{0,253}$/.test(name) || name.includes("..") || name.includes("//")) {
    throw new InvalidInputError(`invalid blob name ${JSON.stringify(name)}`, {
      code: "InvalidBlobName",
      hint: "Blob names are letters, digits and . _ - / without '..'.",
    });
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
