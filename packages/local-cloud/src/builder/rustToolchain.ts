/**
 * A REAL Rust toolchain image for the local builder, made offline from Debian's package mirror (the
 * only package source this machine and CI reach: no Docker Hub, no crates.io).
 *
 * `mmdebstrap` installs Debian 12's rustc + cargo (1.63), clang + lld (what Dockerfile.base installs
 * anyway, so its `apt-get install` finds them present) and a few crates Debian packages as
 * `librust-*-dev` into a rootfs tarball; the image adds a cargo config that replaces crates.io with
 * that directory of crates (`/usr/share/cargo/registry`), so a workspace with ordinary crates.io
 * dependencies builds without network. A second, tiny rootfs (libc6 + libgcc-s1, the contents of
 * distroless/cc) plays the runtime image.
 *
 * Both rootfs tarballs become single-layer images of an OCI layout cached under
 * `node_modules/.cache/fastbuild-rust/<key>` (the key covers everything that goes into them), so
 * only the first run pays for mmdebstrap; each builder then `buildah pull`s them from that layout
 * (one extraction, no commit) and pushes them to its registry.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { access, mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import type { LocalRegistry } from "../registry.js";
import type { LocalBuilder } from "./index.js";

const exec = promisify(execFile);

/** Bumped when how the tarballs are made changes (part of the cache key). */
const SCHEME = 2;
export const DEBIAN_SUITE = "bookworm";
/** Crates Debian packages (`librust-<name>-dev`), usable as crates.io dependencies offline. */
export const VENDORED_CRATES = ["itoa"] as const;
const TOOLCHAIN_PACKAGES = [
  "rustc",
  "cargo",
  "clang",
  "lld",
  ...VENDORED_CRATES.map((c) => `librust-${c}-dev`),
];
const RUNTIME_PACKAGES = ["libc6", "libgcc-s1"];
const DPKG_OPTS = [
  "path-exclude=/usr/share/man/*",
  "path-exclude=/usr/share/locale/*",
  "path-exclude=/usr/share/doc/*",
];
/** `$CARGO_HOME/config.toml` of the toolchain image: crates.io is Debian's crate folder. */
export const CARGO_CONFIG =
  '[source.crates-io]\nreplace-with = "debian-packages"\n\n' +
  '[source.debian-packages]\ndirectory = "/usr/share/cargo/registry"\n';
/** Where the official rust image keeps cargo's home (Dockerfile.base/app mount caches below it). */
const CARGO_HOME = "/usr/local/cargo";
/** This package's folder: the default cache lives in its own node_modules/.cache. */
const PACKAGE_ROOT = join(import.meta.dirname, "..", "..");

export interface VendoredCrate {
  name: string;
  version: string;
  /** The crates.io sha256 of the .crate, as Cargo.lock's `checksum` wants it. */
  checksum: string;
}

export interface RustImages {
  /** Image references in the local registry (also in the builder's storage). */
  toolchain: string;
  runtime: string;
  /** `rustc --version` of the toolchain, e.g. `rustc 1.63.0`. */
  rustcVersion: string;
  crates: VendoredCrate[];
  /** True when the rootfs tarballs came from the cache (no mmdebstrap run). */
  cached: boolean;
  /** Milliseconds per step: rootfs (mmdebstrap or cache), image, push. */
  timings: Record<string, number>;
}

export interface RustImagesOptions {
  /** Cache folder (default `FASTBUILD_RUST_CACHE_DIR` or `packages/local-cloud/node_modules/.cache/fastbuild-rust`). */
  cacheDir?: string;
  /** Debian mirror (default `FASTBUILD_DEBIAN_MIRROR`, else the host's apt mirror, else deb.debian.org). */
  mirror?: string;
  /** Tags in the local registry. */
  tags?: { toolchain: string; runtime: string };
  log?: (line: string) => void;
}

interface CacheMeta {
  rustcVersion: string;
  crates: VendoredCrate[];
}

/**
 * Why the real toolchain image cannot be made here (undefined when it can): mmdebstrap missing and
 * nothing cached, or buildah missing.
 */
export async function rustImagesUnavailable(options: RustImagesOptions = {}): Promise<string | undefined> {
  if (!(await onPath("buildah"))) return "buildah is not installed";
  const dir = await cacheFolder(options);
  if (await exists(join(dir, "meta.json"))) return undefined;
  if (!(await onPath("mmdebstrap")))
    return "mmdebstrap is not installed (apt-get install mmdebstrap) and no cached rootfs";
  if (process.getuid?.() !== 0) return "mmdebstrap --mode=root needs root";
  return undefined;
}

/** Makes (or takes from the cache) the OCI layout, pulls both images into the builder and pushes them. */
export async function prepareRustImages(
  builder: LocalBuilder,
  registry: LocalRegistry,
  options: RustImagesOptions = {},
): Promise<RustImages> {
  const log = options.log ?? (() => undefined);
  const timings: Record<string, number> = {};
  let started = Date.now();
  const dir = await cacheFolder(options);
  const cached = await exists(join(dir, "meta.json"));
  if (!cached) {
    const mirror = await debianMirror(options);
    log(`making the Rust toolchain rootfs with mmdebstrap (${mirror}) into ${dir}`);
    await makeImageLayout(dir, mirror);
  }
  const meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as CacheMeta;
  timings.rootfs = Date.now() - started;

  started = Date.now();
  const tags = options.tags ?? {
    toolchain: "fixtures/rust:1.63-bookworm",
    runtime: "fixtures/cc-runtime:bookworm",
  };
  const refs = {
    toolchain: `${registry.host}/${tags.toolchain}`,
    runtime: `${registry.host}/${tags.runtime}`,
  };
  // buildah names what it pulls after the layout's path, which must then be a valid image name
  // (no ".cache", no upper case): pull through a plain symlink.
  const link = join(tmpdir(), `fastbuild-rust-oci-${process.pid}-${Date.now()}`);
  await symlink(dir, link);
  try {
    for (const name of ["toolchain", "runtime"] as const) {
      // One extraction of the layer tarball, no commit (which would copy the rootfs twice more on vfs).
      const id = (await builder.buildah("pull", "-q", `oci:${link}:${name}`)).trim();
      await builder.buildah("tag", id, refs[name]);
    }
  } finally {
    await rm(link, { force: true });
  }
  timings.image = Date.now() - started;

  started = Date.now();
  for (const ref of [refs.toolchain, refs.runtime]) await builder.buildah("push", "--tls-verify=false", ref);
  timings.push = Date.now() - started;
  return { ...refs, rustcVersion: meta.rustcVersion, crates: meta.crates, cached, timings };
}

/** A Cargo.lock `[[package]]` entry for a vendored crate. */
export function lockEntry(crate: VendoredCrate): string {
  return (
    `[[package]]\nname = "${crate.name}"\nversion = "${crate.version}"\n` +
    `source = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "${crate.checksum}"\n`
  );
}

/**
 * Runs mmdebstrap twice (toolchain, runtime) and writes both rootfs tarballs as single-layer images
 * of an OCI layout in `dir` (refs `toolchain` and `runtime`), plus meta.json. Atomic: built aside
 * and renamed into place.
 */
async function makeImageLayout(dir: string, mirror: string): Promise<void> {
  const partial = `${dir}.partial-${process.pid}`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(join(partial, "blobs", "sha256"), { recursive: true });
  try {
    await writeFile(join(partial, "cargo-config.toml"), CARGO_CONFIG);
    const common = ["--mode=root", "--skip=output/dev", ...DPKG_OPTS.map((o) => `--dpkgopt=${o}`)];
    const toolchainTar = join(partial, "toolchain.tar");
    const runtimeTar = join(partial, "runtime.tar");
    await exec(
      "mmdebstrap",
      [
        ...common,
        "--variant=apt",
        '--aptopt=Acquire::Languages "none"',
        `--include=${TOOLCHAIN_PACKAGES.join(",")}`,
        `--customize-hook=mkdir -p "$1${CARGO_HOME}" && cp ${shellQuote(join(partial, "cargo-config.toml"))} "$1${CARGO_HOME}/config.toml"`,
        `--customize-hook=chroot "$1" rustc --version > ${shellQuote(join(partial, "rustc-version"))}`,
        DEBIAN_SUITE,
        toolchainTar,
        mirror,
      ],
      { maxBuffer: 64 << 20 },
    );
    await exec(
      "mmdebstrap",
      [
        ...common,
        "--variant=extract",
        `--include=${RUNTIME_PACKAGES.join(",")}`,
        DEBIAN_SUITE,
        runtimeTar,
        mirror,
      ],
      { maxBuffer: 64 << 20 },
    );
    const crates: VendoredCrate[] = [];
    for (const name of VENDORED_CRATES) crates.push(await vendoredCrate(toolchainTar, name));

    const manifests = [
      await addImage(partial, "toolchain", toolchainTar, {
        Env: [
          `PATH=${CARGO_HOME}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
          `CARGO_HOME=${CARGO_HOME}`,
        ],
      }),
      // Like distroless/cc's :nonroot tag.
      await addImage(partial, "runtime", runtimeTar, { User: "65532:65532" }),
    ];
    await writeFile(join(partial, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(join(partial, "index.json"), JSON.stringify({ schemaVersion: 2, manifests }));
    const rustcVersion = (await readFile(join(partial, "rustc-version"), "utf8")).trim();
    await rm(join(partial, "rustc-version"));
    await rm(join(partial, "cargo-config.toml"));
    const meta: CacheMeta = { rustcVersion, crates };
    await writeFile(join(partial, "meta.json"), `${JSON.stringify(meta, null, 2)}\n`);
  } catch (error) {
    await rm(partial, { recursive: true, force: true });
    throw error;
  }
  // A folder without meta.json is an interrupted attempt; a complete one (another process was
  // faster) is kept and ours dropped.
  if (await exists(join(dir, "meta.json"))) {
    await rm(partial, { recursive: true, force: true });
  } else {
    await rm(dir, { recursive: true, force: true });
    await rename(partial, dir);
  }
  await pruneCache(dir);
}

/** Removes the cache's other keys (900 MB each) and partial folders whose process is gone. */
async function pruneCache(keep: string): Promise<void> {
  const root = dirname(keep);
  for (const name of await readdir(root)) {
    const path = join(root, name);
    if (path === keep) continue;
    const pid = Number(/\.partial-(\d+)$/.exec(name)?.[1]);
    if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) continue;
    await rm(path, { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/** Moves `tarball` into the layout as an uncompressed layer and writes its config and manifest. */
async function addImage(
  layout: string,
  name: string,
  tarball: string,
  config: Record<string, unknown>,
): Promise<Descriptor> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(tarball)) hash.update(chunk as Buffer);
  const layerHex = hash.digest("hex");
  const layer: Descriptor = {
    mediaType: "application/vnd.oci.image.layer.v1.tar",
    digest: `sha256:${layerHex}`,
    size: (await stat(tarball)).size,
  };
  await rename(tarball, join(layout, "blobs", "sha256", layerHex));
  const blob = async (mediaType: string, value: unknown): Promise<Descriptor> => {
    const bytes = Buffer.from(JSON.stringify(value));
    const hex = createHash("sha256").update(bytes).digest("hex");
    await writeFile(join(layout, "blobs", "sha256", hex), bytes);
    return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
  };
  const configBlob = await blob("application/vnd.oci.image.config.v1+json", {
    architecture: "amd64",
    os: "linux",
    config,
    rootfs: { type: "layers", diff_ids: [layer.digest] },
    history: [
      { created_by: `mmdebstrap ${DEBIAN_SUITE} (@fast-build/local-cloud builder/rustToolchain.ts)` },
    ],
  });
  const manifest = await blob("application/vnd.oci.image.manifest.v1+json", {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: configBlob,
    layers: [layer],
  });
  return { ...manifest, annotations: { "org.opencontainers.image.ref.name": name } };
}

/** Version and crates.io checksum of the crate Debian installed under /usr/share/cargo/registry. */
async function vendoredCrate(tarball: string, name: string): Promise<VendoredCrate> {
  const pattern = `./usr/share/cargo/registry/${name}-*/.cargo-checksum.json`;
  const { stdout: listing } = await exec("tar", ["-tf", tarball, "--wildcards", pattern], {
    maxBuffer: 1 << 20,
  });
  const member = listing.split("\n").find((line) => line.length > 0);
  const version = member?.slice(`./usr/share/cargo/registry/${name}-`.length).split("/")[0];
  if (member === undefined || version === undefined)
    throw new Error(`no ${name} crate in the toolchain rootfs`);
  const { stdout } = await exec("tar", ["-xOf", tarball, member]);
  const checksum = (JSON.parse(stdout) as { package?: unknown }).package;
  if (typeof checksum !== "string") throw new Error(`${member} has no package checksum`);
  return { name, version, checksum };
}

async function cacheFolder(options: RustImagesOptions): Promise<string> {
  const root =
    options.cacheDir ??
    process.env.FASTBUILD_RUST_CACHE_DIR ??
    join(PACKAGE_ROOT, "node_modules", ".cache", "fastbuild-rust");
  const key = createHash("sha256")
    .update(
      JSON.stringify({
        SCHEME,
        suite: DEBIAN_SUITE,
        mirror: await debianMirror(options),
        toolchain: TOOLCHAIN_PACKAGES,
        runtime: RUNTIME_PACKAGES,
        dpkg: DPKG_OPTS,
        cargoConfig: CARGO_CONFIG,
      }),
    )
    .digest("hex")
    .slice(0, 16);
  return join(root, key);
}

/** The mirror apt uses on this host (deb822 `URIs:` or a `deb URL bookworm` line). */
async function debianMirror(options: RustImagesOptions): Promise<string> {
  if (options.mirror) return options.mirror;
  if (process.env.FASTBUILD_DEBIAN_MIRROR) return process.env.FASTBUILD_DEBIAN_MIRROR;
  for (const file of ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      continue;
    }
    const uri =
      text.match(/^URIs:\s*(\S+\/debian)\/?\s*$/m)?.[1] ??
      text.match(new RegExp(`^deb\\s+(?:\\[[^\\]]*\\]\\s+)?(\\S+/debian)/?\\s+${DEBIAN_SUITE}\\s`, "m"))?.[1];
    if (uri) return uri;
  }
  return "http://deb.debian.org/debian";
}

/** One shell word (hooks are shell text). */
function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

async function onPath(tool: string): Promise<boolean> {
  try {
    await exec("sh", ["-c", 'command -v "$1"', "sh", tool]);
    return true;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
