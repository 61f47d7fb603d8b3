/**
 * Starts Debian's `docker-registry serve CONFIG` (the CNCF distribution registry) on a free
 * 127.0.0.1 port, storing under a folder of the caller's choice, and in front of it the login server
 * as Azure Container Registry presents it (acrFront.ts: HTTPS, ACR's token exchange): the registry of
 * the tests and of the local simulation.
 *
 * Two addresses, one store. `host`/`url` are the storage's own plain-HTTP port, open anonymously:
 * what the local builder VM pushes to (build.sh with `FASTBUILD_REGISTRY_LOGIN=none`, scheme http;
 * buildah `--tls-verify=false` tries https first and would meet ACR's challenge, which only
 * `az acr login` answers on a real VM) and what image references name. `loginServer`/`loginUrl`
 * are where `@azure/container-registry` reads the same repositories, as the function app's identity.
 * In Azure the login server is both; the function app is told the mapping (src/wiring.ts
 * `registryEndpoints`).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAcrFront, type AcrFront, type AcrFrontOptions } from "./acrFront.js";
import { stopChild } from "./childProcess.js";

export interface LocalRegistry {
  /** `127.0.0.1:PORT`, the registry part of image references. */
  host: string;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** The ACR-faithful front over the same store: `127.0.0.1:PORT2` (ACR's `service`). */
  loginServer: string;
  /** `https://127.0.0.1:PORT2`. */
  loginUrl: string;
  /** PEM the front's certificate chains to (clients: `tlsOptions.ca`). */
  ca: string;
  /** The front's request counts (`exchange`, `token`, `v2`). */
  frontRequests: AcrFront["requests"];
  /** Stops the registry; removes its storage when this module created it. */
  stop(): Promise<void>;
}

export interface RegistryOptions {
  /** Where blobs are stored; a fresh temp folder (removed on stop) when omitted. */
  storageDir?: string;
  /** Path of the binary (default `docker-registry` on PATH). */
  binary?: string;
  timeoutMs?: number;
  /** Who may do what through the login server (default: AcrPull for every identity). */
  roleOf?: AcrFrontOptions["roleOf"];
}

/** The running registries of this process, by `host`: where their login servers are. */
const running = new Map<string, { loginUrl: string; ca: string }>();

/**
 * The login server of a registry this process started, by its `host` (`127.0.0.1:PORT`): what the
 * function app on the local cloud reads that registry's repositories at (sim/functionApp.ts), as
 * DNS names an ACR's login server in Azure. Undefined for any other host.
 */
export function localLoginServer(host: string): { loginUrl: string; ca: string } | undefined {
  return running.get(host);
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
      const front = await startAcrFront({
        backendUrl: url,
        ...(options.roleOf ? { roleOf: options.roleOf } : {}),
      });
      running.set(`127.0.0.1:${port}`, { loginUrl: front.url, ca: front.ca });
      return {
        host: `127.0.0.1:${port}`,
        url,
        loginServer: front.loginServer,
        loginUrl: front.url,
        ca: front.ca,
        frontRequests: front.requests,
        stop: async () => {
          running.delete(`127.0.0.1:${port}`);
          await front.stop();
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
