/**
 * `fast-build init`: writes `fast-build.toml` (src/core/projectFile.ts) from what it detects at the
 * project root, and asks nothing: the Cargo workspace (its packages and their binaries), a
 * `rust-toolchain(.toml)`, an existing Dockerfile.base / Dockerfile.app pair, and the lock files of
 * a non-Rust project (package.json / package-lock.json and the like), which key its base image.
 *
 * The binary: `--binary NAME`; else the root package's `default-run`; else the workspace's only
 * binary. Several binaries and neither rule: refused, with the list. A project that is no Cargo
 * workspace needs its own pair of Dockerfiles (the built-in ones build Rust).
 */
import { lstat, readdir, readFile, writeFile } from "node:fs/promises";
import { join, posix } from "node:path";
import type { Writable } from "node:stream";
import { readDependencyRecipe } from "../core/baseKey.js";
import { isTable, packageName, parseToml, type TomlTable } from "../core/cargoRecipe.js";
import { InvalidInputError } from "../core/errors.js";
import { formatProjectFile, parseProjectFile, PROJECT_FILE, type ProjectFile } from "../core/projectFile.js";
import { BINARY_NAME } from "../core/rules.js";
import { EXIT, writeJson } from "./follow.js";
import type { Output } from "./progress.js";
import { checkDirectory } from "./sourceTree.js";

export interface InitRun {
  root: string;
  force: boolean;
  binary: string | undefined;
  json: boolean;
  out: Output;
  stdout: Writable;
}

/** A binary of the workspace: its name and the package (folder) it belongs to. */
export interface DetectedBinary {
  name: string;
  package: string;
  manifest: string;
}

/** What init found, printed and (with --json) returned beside the file. */
export interface Detection {
  kind: "cargo" | "other";
  /** Cargo: every Cargo.toml of the workspace, and its binaries. */
  packages: string[];
  binaries: DetectedBinary[];
  /** How the binary was chosen. */
  binaryRule?: "--binary" | "default-run" | "only binary";
  toolchainFile?: string;
  /** An existing pair of the project's own Dockerfiles. */
  dockerfiles?: { base: string; app: string };
  /** The port an `EXPOSE` of the project's Dockerfile.app names. */
  exposedPort?: number;
  baseKeyFiles: string[];
}

export interface InitResult {
  path: string;
  overwritten: boolean;
  detected: Detection;
  file: ProjectFile;
}

/** Where a project's own Dockerfiles are looked for, in order. */
const DOCKERFILE_PAIRS = [
  { base: "Dockerfile.base", app: "Dockerfile.app" },
  { base: "docker/Dockerfile.base", app: "docker/Dockerfile.app" },
];

/** The files that key a non-Rust project's dependencies, when they exist (package managers' locks). */
const KEY_FILE_CANDIDATES = [
  "package.json",
  "package-lock.json",
  "npm-shrinkwrap.json",
  "yarn.lock",
  "pnpm-lock.yaml",
  "requirements.txt",
  "poetry.lock",
  "go.mod",
  "go.sum",
];

/** Detects the project at `root` and the file init would write (pure of writes). */
export async function detectProject(
  root: string,
  binary?: string,
): Promise<{ detected: Detection; file: ProjectFile }> {
  await checkDirectory(root);
  const cargo = await isFile(join(root, "Cargo.toml"));
  let dockerfiles: Detection["dockerfiles"];
  for (const pair of DOCKERFILE_PAIRS) {
    if ((await isFile(join(root, pair.base))) && (await isFile(join(root, pair.app)))) {
      dockerfiles = pair;
      break;
    }
  }
  if (!cargo && !dockerfiles) {
    throw new InvalidInputError(`${root} has no Cargo.toml and no Dockerfile.base / Dockerfile.app pair`, {
      code: "NothingToDetect",
      hint: "Run it at the root of a Cargo workspace, or add the project's own Dockerfile.base and Dockerfile.app (see examples/node-hello), then run `fast-build init` again.",
    });
  }
  const detected: Detection = {
    kind: cargo ? "cargo" : "other",
    packages: [],
    binaries: [],
    baseKeyFiles: [],
  };
  if (dockerfiles) {
    detected.dockerfiles = dockerfiles;
    const port = exposedPort(await readFile(join(root, dockerfiles.app), "utf8"));
    if (port !== undefined) detected.exposedPort = port;
    // The Cargo recipe keys a Rust project's base already; another's is keyed by its lock files.
    if (!cargo) {
      for (const name of KEY_FILE_CANDIDATES)
        if (await isFile(join(root, name))) detected.baseKeyFiles.push(name);
    }
  }
  let chosen: string | undefined;
  if (cargo) {
    const recipe = await readDependencyRecipe(root);
    const toolchain = recipe.extraFiles.find((f) => f.path.startsWith("rust-toolchain"));
    if (toolchain) detected.toolchainFile = toolchain.path;
    detected.packages = recipe.manifests.map((m) => m.path);
    for (const m of recipe.manifests) {
      const dir = posix.dirname(m.path) === "." ? "" : posix.dirname(m.path);
      const raw = parseToml(await readFile(join(root, m.path), "utf8"), m.path);
      detected.binaries.push(...(await binariesOf(root, dir, raw, m.path)));
    }
    const names = [...new Set(detected.binaries.map((b) => b.name))].sort();
    const rootManifest = parseToml(await readFile(join(root, "Cargo.toml"), "utf8"), "Cargo.toml");
    const pkg = rootManifest.package;
    const defaultRun =
      isTable(pkg) && typeof pkg["default-run"] === "string" ? pkg["default-run"] : undefined;
    const list = names.length > 0 ? names.join(", ") : "(none)";
    if (binary !== undefined) {
      if (!names.includes(binary) && !dockerfiles) {
        throw new InvalidInputError(`--binary ${JSON.stringify(binary)} is not a binary of this workspace`, {
          code: "UnknownBinary",
          hint: `The workspace's binaries: ${list}. Pass one of them with --binary NAME.`,
        });
      }
      chosen = binary;
      detected.binaryRule = "--binary";
    } else if (defaultRun !== undefined && names.includes(defaultRun)) {
      chosen = defaultRun;
      detected.binaryRule = "default-run";
    } else if (names.length === 1) {
      chosen = names[0];
      detected.binaryRule = "only binary";
    } else if (!dockerfiles) {
      throw new InvalidInputError(
        names.length === 0
          ? "the workspace has no binary target (src/main.rs, src/bin/, [[bin]]) for the built-in Dockerfiles to package"
          : `the workspace has ${names.length} binaries: ${list}`,
        {
          code: names.length === 0 ? "NoBinary" : "SeveralBinaries",
          hint:
            names.length === 0
              ? "Add a binary target, or your own Dockerfile.base / Dockerfile.app, then run `fast-build init` again."
              : `Choose the one the image runs: \`fast-build init --binary ${names[0]}\` (or set default-run in the root Cargo.toml's [package]).`,
        },
      );
    }
  } else if (binary !== undefined) {
    chosen = binary;
    detected.binaryRule = "--binary";
  }
  if (chosen !== undefined && !BINARY_NAME.pattern.test(chosen)) {
    throw new InvalidInputError(`--binary ${JSON.stringify(chosen)} is not a binary name`, {
      code: "InvalidArguments",
      hint: `Give ${BINARY_NAME.message}.`,
    });
  }
  const file: ProjectFile = {
    build: { features: [], profile: "release", ...(chosen !== undefined ? { binary: chosen } : {}) },
    container: detected.exposedPort !== undefined ? { port: detected.exposedPort } : {},
    docker: { baseKeyFiles: detected.baseKeyFiles, ...(dockerfiles ?? {}) },
  };
  return { detected, file };
}

/** Runs `fast-build init`; resolves to the exit code. */
export async function runInit(opts: InitRun): Promise<number> {
  const path = join(opts.root, PROJECT_FILE);
  const exists = (await lstat(path).catch(() => undefined)) !== undefined;
  if (exists && !opts.force) {
    throw new InvalidInputError(`${path} already exists`, {
      code: "ProjectFileExists",
      hint: "Edit it, or run `fast-build init --force` to replace it with what init detects.",
    });
  }
  const { detected, file } = await detectProject(opts.root, opts.binary);
  const text = formatProjectFile(file, { detected: describe(detected) });
  // What init writes must read back as itself (one schema: src/core/projectFile.ts).
  parseProjectFile(text);
  await writeFile(path, text);
  const result: InitResult = { path, overwritten: exists, detected, file };
  for (const line of renderInit(result)) opts.out.line(line);
  if (opts.json) writeJson(opts.stdout, result);
  return EXIT.ok;
}

/** What init found, as the comment lines at the top of the file. */
function describe(d: Detection): string[] {
  return [
    `detected by \`fast-build init\`: ${d.kind === "cargo" ? `Cargo workspace (${d.packages.join(", ")})` : "no Cargo workspace"}`,
    ...(d.binaries.length > 0 ? [`binaries: ${[...new Set(d.binaries.map((b) => b.name))].join(", ")}`] : []),
    ...(d.toolchainFile ? [`toolchain: ${d.toolchainFile} (part of the base key)`] : []),
  ];
}

/** The text init prints. */
export function renderInit(r: InitResult): string[] {
  const d = r.detected;
  const names = [...new Set(d.binaries.map((b) => b.name))];
  return [
    `${r.overwritten ? "replaced" : "wrote"} ${r.path}`,
    `  project:      ${d.kind === "cargo" ? `Cargo workspace, ${d.packages.length} manifest${d.packages.length === 1 ? "" : "s"} (${d.packages.join(", ")})` : "not a Cargo workspace"}`,
    ...(d.kind === "cargo" ? [`  binaries:     ${names.length > 0 ? names.join(", ") : "none"}`] : []),
    `  binary:       ${r.file.build.binary !== undefined ? `${r.file.build.binary} (${d.binaryRule})` : "not set (the project's Dockerfiles decide what the image runs)"}`,
    ...(d.kind === "cargo"
      ? [
          `  toolchain:    ${d.toolchainFile ? `${d.toolchainFile} (part of the base key)` : "none (Dockerfile.base's default)"}`,
        ]
      : []),
    `  dockerfiles:  ${d.dockerfiles ? `the project's own: ${d.dockerfiles.base}, ${d.dockerfiles.app}` : "built-in (Rust)"}`,
    `  base key:     ${[d.kind === "cargo" ? "the Cargo recipe" : "", d.dockerfiles?.base ?? "Dockerfile.base", ...d.baseKeyFiles].filter(Boolean).join(", ")}`,
    `  port:         ${r.file.container.port !== undefined ? `${r.file.container.port} (EXPOSE in ${d.dockerfiles?.app ?? "Dockerfile.app"})` : "not set: add [container] port = N, the port your server listens on"}`,
  ];
}

/** The binaries cargo builds for the package at `dir` (autobins, src/bin, [[bin]]). */
async function binariesOf(
  root: string,
  dir: string,
  manifest: TomlTable,
  manifestPath: string,
): Promise<DetectedBinary[]> {
  const pkg = manifest.package;
  const name = packageName(manifest);
  if (!isTable(pkg) || name === undefined) return [];
  const found = new Map<string, DetectedBinary>();
  const add = (bin: string) => found.set(bin, { name: bin, package: name, manifest: manifestPath });
  const bins = Array.isArray(manifest.bin) ? manifest.bin.filter(isTable) : [];
  for (const bin of bins) if (typeof bin.name === "string") add(bin.name);
  if (pkg.autobins !== false) {
    if (await isFile(join(root, dir, "src/main.rs"))) add(name);
    for (const entry of await readdir(join(root, dir, "src/bin"), { withFileTypes: true }).catch(() => [])) {
      if (entry.isFile() && entry.name.endsWith(".rs")) add(entry.name.slice(0, -3));
      else if (entry.isDirectory() && (await isFile(join(root, dir, "src/bin", entry.name, "main.rs")))) {
        add(entry.name);
      }
    }
  }
  return [...found.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** The port of a Dockerfile's first `EXPOSE`: a literal one, or `${PORT}` / `$PORT` with `ARG PORT=<n>`. */
function exposedPort(text: string): number | undefined {
  const expose = /^\s*EXPOSE\s+(\$\{PORT\}|\$PORT|[0-9]{1,5})(\/tcp)?\s*$/im.exec(text)?.[1];
  const literal = expose?.startsWith("$") ? /^\s*ARG\s+PORT=([0-9]{1,5})\s*$/im.exec(text)?.[1] : expose;
  const port = literal !== undefined ? Number(literal) : NaN;
  return port >= 1 && port <= 65535 ? port : undefined;
}

async function isFile(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isFile() ?? false;
}
