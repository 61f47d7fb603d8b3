/**
 * Starts a real Azurite (blob, queue, table) on free loopback ports, for tests and the local
 * simulation. In-memory, telemetry off. Account-key SAS works as in Azure.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

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

export async function startAzurite(options: { timeoutMs?: number } = {}): Promise<Azurite> {
  const require = createRequire(import.meta.url);
  const bin = join(dirname(require.resolve("azurite/package.json")), "dist", "src", "azurite.js");
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
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const ports = await waitForPorts(child, options.timeoutMs ?? 30_000);
  const blobEndpoint = `http://127.0.0.1:${ports.Blob}/${DEV_ACCOUNT}`;
  const queueEndpoint = `http://127.0.0.1:${ports.Queue}/${DEV_ACCOUNT}`;
  const tableEndpoint = `http://127.0.0.1:${ports.Table}/${DEV_ACCOUNT}`;
  return {
    blobEndpoint,
    queueEndpoint,
    tableEndpoint,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${DEV_ACCOUNT};AccountKey=${DEV_KEY};` +
      `BlobEndpoint=${blobEndpoint};QueueEndpoint=${queueEndpoint};TableEndpoint=${tableEndpoint};`,
    stop: () => stopChild(child),
  };
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

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
    setTimeout(() => child.kill("SIGKILL"), 3000).unref();
  });
}
