/**
 * Starts a real Azurite (blob, queue, table) on free loopback ports, for tests and the local
 * simulation. In-memory, telemetry off. Account-key SAS works as in Azure.
 *
 * With `{ https: true, oauth: true }` it also speaks the production path (identity, no keys):
 * TLS with a certificate made at start, bearer tokens (see `oauthToken.ts`) and user-delegation SAS.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createLoopbackCertificate } from "./tls.js";
import { stopChild } from "./childProcess.js";

/** Azurite's well-known development account (public, documented; not a secret). */
export const DEV_ACCOUNT = "devstoreaccount1";
export const DEV_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

export interface Azurite {
  blobEndpoint: string;
  queueEndpoint: string;
  tableEndpoint: string;
  /** A connection string for all three services. */
  connectionString: string;
  stop(): Promise<void>;
}

/** An Azurite that serves HTTPS with its own self-signed certificate. */
export interface SecureAzurite extends Azurite {
  /** The certificate (PEM; it is its own CA): trust it per client with `tlsOptions: { ca }` … */
  ca: string;
  /** … or process-wide with `NODE_EXTRA_CA_CERTS=<caFile>` (read at process start). Removed by `stop()`. */
  caFile: string;
}

export interface AzuriteOptions {
  timeoutMs?: number;
  /** Serve TLS (all endpoints `https://127.0.0.1:…`) with a certificate made at start. */
  https?: boolean;
  /**
   * Accept bearer tokens (`--oauth basic`: claims checked, signature not), which also enables
   * user-delegation keys. Azurite refuses bearer tokens over plain http, so this needs `https`.
   */
  oauth?: boolean;
}

export function startAzurite(options?: AzuriteOptions & { https?: false; oauth?: false }): Promise<Azurite>;
export function startAzurite(options: AzuriteOptions & { https: true }): Promise<SecureAzurite>;
export async function startAzurite(options: AzuriteOptions = {}): Promise<Azurite | SecureAzurite> {
  if (options.oauth && !options.https) {
    throw new Error("startAzurite: oauth needs https (Azurite refuses bearer tokens over http)");
  }
  const require = createRequire(import.meta.url);
  const bin = join(dirname(require.resolve("azurite/package.json")), "dist", "src", "azurite.js");
  const tls = options.https ? await writeCertificate() : undefined;
  const child = spawn(
    process.execPath,
    [
      bin,
      "--inMemoryPersistence",
      "--disableTelemetry",
      "--skipApiVersionCheck",
      "--blobHost=127.0.0.1",
      "--queueHost=127.0.0.1",
      "--tableHost=127.0.0.1",
      "--blobPort=0",
      "--queuePort=0",
      "--tablePort=0",
      ...(tls ? [`--cert=${tls.certFile}`, `--key=${tls.keyFile}`] : []),
      ...(options.oauth ? ["--oauth=basic"] : []),
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let ports: Record<"Blob" | "Queue" | "Table", number>;
  try {
    ports = await waitForPorts(child, options.timeoutMs ?? 30_000);
  } catch (error) {
    if (tls) await rm(tls.dir, { recursive: true, force: true });
    throw error;
  }
  const scheme = tls ? "https" : "http";
  const blobEndpoint = `${scheme}://127.0.0.1:${ports.Blob}/${DEV_ACCOUNT}`;
  const queueEndpoint = `${scheme}://127.0.0.1:${ports.Queue}/${DEV_ACCOUNT}`;
  const tableEndpoint = `${scheme}://127.0.0.1:${ports.Table}/${DEV_ACCOUNT}`;
  const azurite: Azurite = {
    blobEndpoint,
    queueEndpoint,
    tableEndpoint,
    connectionString:
      `DefaultEndpointsProtocol=${scheme};AccountName=${DEV_ACCOUNT};AccountKey=${DEV_KEY};` +
      `BlobEndpoint=${blobEndpoint};QueueEndpoint=${queueEndpoint};TableEndpoint=${tableEndpoint};`,
    stop: () => stopChild(child, 3000),
  };
  if (!tls) return azurite;
  return {
    ...azurite,
    ca: tls.cert,
    caFile: tls.certFile,
    stop: async () => {
      await stopChild(child, 3000);
      await rm(tls.dir, { recursive: true, force: true });
    },
  };
}

/** The local cloud's loopback certificate, written where Azurite's `--cert` / `--key` can read it. */
async function writeCertificate(): Promise<{ dir: string; cert: string; certFile: string; keyFile: string }> {
  const { key, cert } = await createLoopbackCertificate();
  const dir = await mkdtemp(join(tmpdir(), "azurite-tls-"));
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  await writeFile(certFile, cert);
  await writeFile(keyFile, key, { mode: 0o600 });
  return { dir, cert, certFile, keyFile };
}

function waitForPorts(
  child: ChildProcess,
  timeoutMs: number,
): Promise<Record<"Blob" | "Queue" | "Table", number>> {
  return new Promise((resolve, reject) => {
    const found: Partial<Record<"Blob" | "Queue" | "Table", number>> = {};
    let output = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`Azurite did not start within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      for (const match of output.matchAll(
        /Azurite (Blob|Queue|Table) service is successfully listening at \S+:(\d+)/g,
      )) {
        found[match[1] as "Blob" | "Queue" | "Table"] = Number(match[2]);
      }
      if (found.Blob && found.Queue && found.Table) {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        resolve(found as Record<"Blob" | "Queue" | "Table", number>);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`Azurite exited (${code}) before it was ready:\n${output}`));
    });
  });
}
