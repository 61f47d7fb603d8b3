/**
 * Starts Debian's `docker-registry serve CONFIG` (the CNCF distribution registry) on a free
 * 127.0.0.1 port, storing under a folder of the caller's choice: the registry of the tests and of
 * the local simulation. Plain HTTP on loopback; clients push with `--tls-verify=false`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stopChild } from "./childProcess.js";

export interface LocalRegistry {
  /** `127.0.0.1:PORT`, the registry part of image references. */
  host: string;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** Stops the registry; removes its storage when this module created it. */
  stop(): Promise<void>;
}

export interface RegistryOptions {
  /** Where blobs are stored; a fresh temp folder (removed on stop) when omitted. */
  storageDir?: string;
  /** Path of the binary (default `docker-registry` on PATH). */
  binary?: string;
  timeoutMs?: number;
}

export async function startRegistry(options: RegistryOptions = {}): Promise<LocalRegistry> {
  const owned = options.storageDir === undefined;
  const base = options.storageDir ?? (await mkdtemp(join(tmpdir(), "fb-registry-")));
  await mkdir(base, { recursive: true });
  // The free port is found and then released, so another process may take it in between:
  // retry with a new port a few times rather than fail a test run on that race.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const config = join(base, `config-${port}.yml`);
    await writeFile(config, registryConfig(join(base, "data"), port));
    const child = spawn(options.binary ?? "docker-registry", ["serve", config], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-4000);
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitReady(child, url, options.timeoutMs ?? 20_000, () => output);
      child.stdout?.off("data", collect);
      child.stderr?.off("data", collect);
      child.stdout?.resume();
      child.stderr?.resume();
      return {
        host: `127.0.0.1:${port}`,
        url,
        stop: async () => {
          await stopChild(child, 5000);
          if (owned) await rm(base, { recursive: true, force: true });
        },
      };
    } catch (error) {
      lastError = error;
      await stopChild(child, 5000);
    }
  }
  if (owned) await rm(base, { recursive: true, force: true });
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

function registryConfig(rootDirectory: string, port: number): string {
  // JSON is valid YAML, and it spares us quoting rules for the path.
  return JSON.stringify({
    version: 0.1,
    log: { level: "warn", accesslog: { disabled: true } },
    storage: { filesystem: { rootdirectory: rootDirectory }, delete: { enabled: true } },
    http: { addr: `127.0.0.1:${port}` },
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitReady(child: ChildProcess, url: string, timeoutMs: number, output: () => string) {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`docker-registry exited with ${child.exitCode}:\n${output()}`);
    }
    try {
      const response = await fetch(`${url}/v2/`);
      if (response.status === 200) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`docker-registry did not answer on ${url} within ${timeoutMs} ms:\n${output()}`);
}
