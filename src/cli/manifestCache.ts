/**
 * The last manifest each API and environment accepted from this machine, so the next build sends
 * only its change (`ManifestDelta`). One file per API URL and environment under the cache folder;
 * a missing, unreadable or corrupt file only means the whole manifest is sent.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  canonicalManifest,
  manifestDigest,
  manifestSchema,
  type SourceManifest,
} from "../core/sourceManifest.js";

export interface KnownManifest {
  manifest: SourceManifest;
  digest: string;
}

export class ManifestCache {
  private readonly file: string;

  constructor(dir: string, apiUrl: string, environment: string) {
    const key = createHash("sha256").update(`${apiUrl}\n${environment}`).digest("hex").slice(0, 32);
    this.file = join(dir, "manifests", `${key}.json`);
  }

  async last(): Promise<KnownManifest | undefined> {
    try {
      const parsed = manifestSchema.safeParse(JSON.parse(await readFile(this.file, "utf8")));
      return parsed.success ? { manifest: parsed.data, digest: manifestDigest(parsed.data) } : undefined;
    } catch {
      return undefined;
    }
  }

  /** Replaces the file whole (write, then rename), so a reader never sees half of one. */
  async remember(manifest: SourceManifest): Promise<void> {
    const temporary = `${this.file}.${randomBytes(6).toString("hex")}`;
    try {
      await mkdir(join(this.file, ".."), { recursive: true });
      await writeFile(temporary, canonicalManifest(manifest));
      await rename(temporary, this.file);
    } catch {
      // A read-only home costs the next build its delta, nothing else.
      await rm(temporary, { force: true }).catch(() => undefined);
    }
  }
}
