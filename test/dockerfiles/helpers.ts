/**
 * Test helpers for the build slice: a tiny ustar writer (to craft hostile archives that normal
 * tools refuse to create), a file server for source archives, and a runner for
 * dockerfiles/build.sh / safe_extract.py.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { parseBuildResult, type BuildResult } from "../../src/core/buildResult.js";
import { readBody } from "@fast-build/local-cloud/httpServer";

export const REPO_ROOT = join(import.meta.dirname, "..", "..");
/** The build kit the builder VM runs: build.sh, safe_extract.py and the Dockerfiles. */
export const BUILD_KIT_DIR = join(REPO_ROOT, "dockerfiles");
export const BUILD_SCRIPT = join(BUILD_KIT_DIR, "build.sh");
export const SAFE_EXTRACT = join(BUILD_KIT_DIR, "safe_extract.py");

export interface TarEntry {
  name: string;
  type?: TarType;
  content?: Buffer | string;
  linkname?: string;
  mode?: number;
  /** The size the header declares, when it is to lie about its data (header bombs). */
  size?: number;
}

export type TarType = keyof typeof TYPEFLAG;

const TYPEFLAG = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  chardev: "3",
  blockdev: "4",
  dir: "5",
  fifo: "6",
  /** GNU long name / long link name of the next member. */
  longname: "L",
  longlink: "K",
  /** pax extended header of the next member / global pax header. */
  pax: "x",
  globalpax: "g",
  /** Old GNU sparse file. */
  sparse: "S",
  /** GNU volume header: a type we never extract. */
  volume: "V",
} as const;

/** Types whose data follows the header. */
const HAS_DATA = new Set<TarType>(["file", "longname", "longlink", "pax", "globalpax", "sparse"]);

/** The body of a pax header with these records (`<length> <key>=<value>\n` each). */
export function paxRecords(records: Record<string, string>): Buffer {
  const parts = Object.entries(records).map(([key, value]) => {
    const body = ` ${key}=${value}\n`;
    let length = Buffer.byteLength(body) + 1;
    while (String(length).length + Buffer.byteLength(body) !== length) length++;
    return Buffer.from(`${length}${body}`);
  });
  return Buffer.concat(parts);
}

function header(entry: TarEntry, size: number): Buffer {
  const block = Buffer.alloc(512);
  const put = (text: string, offset: number, length: number) => block.write(text, offset, length, "utf8");
  const octal = (value: number, length: number) => value.toString(8).padStart(length - 1, "0") + "\0";
  const type = entry.type ?? "file";
  put(entry.name, 0, 100);
  put(octal(entry.mode ?? (type === "dir" ? 0o755 : 0o644), 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(size, 12), 124, 12);
  put(octal(0, 12), 136, 12);
  put("        ", 148, 8);
  put(TYPEFLAG[type], 156, 1);
  put(entry.linkname ?? "", 157, 100);
  put("ustar\0", 257, 6);
  put("00", 263, 2);
  let sum = 0;
  for (const byte of block) sum += byte;
  put(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8);
  return block;
}

/** A gzip'd tar with exactly these members, however hostile. */
export function makeTarGz(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    // Names and targets the ustar fields cannot hold travel in a pax header, as tar writes them.
    const long: Record<string, string> = {};
    if (Buffer.byteLength(entry.name) > 100) long.path = entry.name;
    if (Buffer.byteLength(entry.linkname ?? "") > 100) long.linkpath = entry.linkname ?? "";
    if (Object.keys(long).length > 0) {
      const records = paxRecords(long);
      parts.push(header({ name: "././@PaxHeader", type: "pax" }, records.length), records);
      parts.push(Buffer.alloc((512 - (records.length % 512)) % 512));
    }
    const data =
      typeof entry.content === "string" ? Buffer.from(entry.content) : (entry.content ?? Buffer.alloc(0));
    const type = entry.type ?? "file";
    const length = HAS_DATA.has(type) ? data.length : 0;
    parts.push(header(entry, entry.size ?? length));
    if (length > 0) {
      parts.push(data);
      const pad = (512 - (length % 512)) % 512;
      if (pad > 0) parts.push(Buffer.alloc(pad));
    }
  }
  parts.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(parts), { level: 9 });
}

export function sha256Digest(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export interface FileServer {
  /** Serves `data` at a fresh path (with `query` as its query string, if given) and returns its URL. */
  serve(data: Buffer, query?: string): string;
  /** How many GETs each path received. */
  hits: Map<string, number>;
  /** POSTs received (callback bodies and headers). */
  posts: Array<{ path: string; token: string | undefined; body: string }>;
  stop(): Promise<void>;
}

export async function startFileServer(): Promise<FileServer> {
  const files = new Map<string, Buffer>();
  const hits = new Map<string, number>();
  const posts: FileServer["posts"] = [];
  const server = createServer((req, res) => {
    const path = req.url ?? "/";
    if (req.method === "POST") {
      readBody(req).then(
        (body) => {
          const token = req.headers["x-fastbuild-token"];
          posts.push({
            path,
            token: typeof token === "string" ? token : undefined,
            body: body.toString("utf8"),
          });
          res.writeHead(202).end();
        },
        () => res.writeHead(500).end(),
      );
      return;
    }
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const data = files.get(path);
    if (!data) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-length": data.length }).end(data);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  let counter = 0;
  return {
    serve(data, query = "sv=2025-01-01&sig=test") {
      const path = `/blobs/source-${counter++}.tar.gz?${query}`;
      files.set(path, data);
      return `http://127.0.0.1:${port}${path}`;
    },
    hits,
    posts,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface RunResult {
  code: number;
  output: string;
  result: BuildResult | undefined;
}

/** Runs a command with exactly `env` (plus PATH/HOME), collecting stdout and stderr together. */
export function run(command: string, args: string[], env: Record<string, string>): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code: code ?? -1, output, result: parseBuildResult(output) }));
  });
}

export function runBuildScript(env: Record<string, string>): Promise<RunResult> {
  return run("bash", [BUILD_SCRIPT], env);
}
