/**
 * A managed Run Command's output and error blobs, written the way the Linux handler writes them
 * (Azure/run-command-handler-linux `internal/cmds/cmds.go` `enable` / `createOrReplaceAppendBlob`,
 * `pkg/download/blob.go` `CreateOrReplaceAppendBlob`):
 * - before the script starts, each blob is created or replaced as an empty append blob (an
 *   existing blob is cleared); if that fails the command fails and the script never runs;
 * - with a SAS in the URI it tries the SAS first, and on failure falls back to the VM's managed
 *   identity (`outputBlobManagedIdentity` / `errorBlobManagedIdentity`: `{clientId}` for a
 *   user-assigned one, `{}` or nothing for the system-assigned one; `{objectId}` is refused);
 * - output is then appended block by block; a failed append is logged and ignored.
 * Only loopback endpoints are written: the emulator never sends anything off this machine.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { LOCAL_TENANT_ID, unsignedStorageToken } from "../oauthToken.js";
import type { VmIdentity } from "./types.js";

/** `{}` = system-assigned; `{clientId}` / `{objectId}` = user-assigned (RunCommandManagedIdentity). */
export interface BlobManagedIdentity {
  clientId?: string;
  objectId?: string;
}

export interface BlobTarget {
  uri: string;
  managedIdentity: BlobManagedIdentity | undefined;
}

/** Why a blob could not be created or replaced: the handler reports it and exits with -101. */
export class BlobSetupError extends Error {
  /** `ExitCode_BlobCreateOrReplaceFailed` (run-command-handler-linux `internal/constants/exitcodes.go`). */
  readonly exitCode = -101;
  constructor(uri: string, cause: string) {
    // The handler's own wording (cmds.go `blobCreateOrReplaceError`, shortened), then the cause.
    super(
      `Error creating AppendBlob '${uri}' using SAS token or Managed identity. Please use a valid blob SAS URI ` +
        "with [read, append, create, write] permissions OR managed identity. For more info, refer " +
        `https://aka.ms/RunCommandManagedLinux: Creating or Replacing append blob failed.: ${cause}`,
    );
    this.name = "BlobSetupError";
  }
}

/** Appends to one blob; appends are serialised so the blob keeps the output's order. */
export class AppendBlobWriter {
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly url: URL,
    private readonly headers: Record<string, string>,
    private readonly ca: string | undefined,
  ) {}

  append(text: string): Promise<void> {
    if (text.length === 0) return this.queue;
    const url = new URL(this.url);
    url.searchParams.set("comp", "appendblock");
    this.queue = this.queue.then(() =>
      storageRequest(url, "PUT", this.headers, text, this.ca).then(
        () => undefined,
        () => undefined, // Like the handler, a failed append does not fail the script.
      ),
    );
    return this.queue;
  }

  flushed(): Promise<void> {
    return this.queue;
  }
}

/** The permissions the handler asks a SAS for (cmds.go `blobCreateOrReplaceError`). */
const REQUIRED_SAS_PERMISSIONS = ["r", "a", "c", "w"];

/** Creates or replaces the append blob, as the handler does before it runs the script. */
export async function createOrReplaceAppendBlob(
  target: BlobTarget,
  identity: VmIdentity | undefined,
  ca: string | undefined,
): Promise<AppendBlobWriter> {
  let url: URL;
  try {
    url = new URL(target.uri);
  } catch {
    throw new BlobSetupError(target.uri, "the URI is not a valid URL.");
  }
  const plain = `${url.origin}${url.pathname}`;
  if (!["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) {
    throw new BlobSetupError(plain, "the local cloud writes only to loopback storage endpoints.");
  }
  let sasError: string | undefined;
  if (url.searchParams.has("sig")) {
    const granted = url.searchParams.get("sp") ?? "";
    const missing = REQUIRED_SAS_PERMISSIONS.filter((p) => !granted.includes(p));
    const headers = { "x-ms-version": STORAGE_VERSION };
    sasError =
      missing.length > 0
        ? `AuthorizationPermissionMismatch: the SAS grants '${granted}' but lacks '${missing.join("")}'.`
        : await putAppendBlob(url, headers, ca);
    if (!sasError) return new AppendBlobWriter(url, headers, ca);
  }
  // No SAS, or the SAS failed: the handler retries with the VM's managed identity (cmds.go).
  const bare = new URL(plain);
  const token = identityToken(target.managedIdentity, identity);
  // The handler reports the SAS error when both failed, else the identity's (cmds.go).
  if ("error" in token) throw new BlobSetupError(plain, sasError ?? token.error);
  const headers = { "x-ms-version": STORAGE_VERSION, authorization: `Bearer ${token.token}` };
  const miError = await putAppendBlob(bare, headers, ca);
  if (miError) throw new BlobSetupError(plain, sasError ?? miError);
  return new AppendBlobWriter(bare, headers, ca);
}

const STORAGE_VERSION = "2023-11-03";

/** A storage token for the identity the handler's `azidentity.NewManagedIdentityCredential` would use. */
function identityToken(
  wanted: BlobManagedIdentity | undefined,
  vm: VmIdentity | undefined,
): { token: string } | { error: string } {
  if (wanted?.objectId && !wanted.clientId) {
    // cmds.go `createOrReplaceAppendBlobUsingManagedIdentity`: azidentity takes no object id.
    return { error: "Managed identity's ObjectId is not supported. Use ClientId instead" };
  }
  let principalId: string | undefined;
  if (wanted?.clientId) {
    principalId = vm?.userAssigned?.find(
      (u) => u.clientId.toLowerCase() === wanted.clientId!.toLowerCase(),
    )?.principalId;
    if (!principalId) {
      return {
        error: `ManagedIdentityCredential: Identity not found (no user-assigned identity with client id '${wanted.clientId}' is assigned to the VM).`,
      };
    }
  } else {
    principalId = vm?.systemAssigned?.principalId;
    if (!principalId) {
      return {
        error: "ManagedIdentityCredential: Identity not found (the VM has no system-assigned identity).",
      };
    }
  }
  return {
    token: unsignedStorageToken({
      audience: "https://storage.azure.com",
      objectId: principalId,
      tenantId: vm?.tenantId ?? LOCAL_TENANT_ID,
    }),
  };
}

/** PUT Blob with `x-ms-blob-type: AppendBlob`: creates it, or replaces (clears) an existing one. */
async function putAppendBlob(
  url: URL,
  headers: Record<string, string>,
  ca: string | undefined,
): Promise<string | undefined> {
  try {
    const { status, body } = await storageRequest(
      url,
      "PUT",
      { ...headers, "x-ms-blob-type": "AppendBlob" },
      "",
      ca,
    );
    if (status === 201) return undefined;
    const code = /<Code>([^<]+)<\/Code>/.exec(body)?.[1] ?? `HTTP ${status}`;
    return `${code}: the storage service refused to create the append blob (HTTP ${status}).`;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

function storageRequest(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: string,
  ca: string | undefined,
): Promise<{ status: number; body: string }> {
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method,
        ...(ca ? { ca } : {}),
        headers: {
          ...headers,
          "x-ms-date": new Date().toUTCString(),
          "content-length": Buffer.byteLength(body),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}
