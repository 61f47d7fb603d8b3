/**
 * The base-image key: the ONE place it is computed. The upload command runs this on the
 * developer's machine (it has the sources and a TOML parser) and sends the key with the build;
 * the builder's script tags the base image with it and trusts it.
 *
 * Trusting it is safe: the key only decides which base image the app layer starts from. The app
 * layer always compiles the real sources on top of that base, and cargo rebuilds whatever the base
 * did not compile the same way. So a wrong key (stale, forged, computed by an older client) can
 * cost a cache miss or a slower build, never a wrong binary.
 *
 * The key is sha256 over a normalised dependency recipe: every Cargo.toml of the workspace (root,
 * members, path dependencies), Cargo.lock and both with our own crates' versions masked, the
 * toolchain file, `.cargo/config.toml`, the toolchain image / target / profile / features, and the
 * bytes of Dockerfile.base.
 */
import { lstat, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join, posix, relative, resolve, sep } from "node:path";
import {
  canonicalJson,
  isTable,
  manifestToToml,
  maskLockfile,
  normalizeManifest,
  packageName,
  parseToml,
  pathDependencies,
  sha256Hex,
  type TomlTable,
} from "./cargoRecipe.js";
import { InvalidInputError } from "./errors.js";

/**
 * Where the build script looks for the recipe inside the source archive (the base image's build
 * context). Without it the script builds the base from the whole tree: correct, but the base then
 * depends on our own sources' layout and takes longer to build.
 */
export const RECIPE_DIR_IN_ARCHIVE = ".fastbuild/recipe";

/**
 * Where the upload command puts the Dockerfile.base / Dockerfile.app it used, next to the recipe:
 * the builder builds from exactly the bytes the key covers (the VM keeps no Dockerfiles of its own).
 */
export const KIT_DIR_IN_ARCHIVE = ".fastbuild/kit";

/** Bumped when the recipe's normalisation changes, so old keys can never match new recipes. */
export const BASE_KEY_SCHEME = 1;

export interface BaseKeyOptions {
  /** The toolchain image build arg (e.g. `rust:1.91.1-bookworm`); part of the key. */
  toolchain?: string;
  /** Cargo profile, default `release`. */
  profile?: string;
  /** Target triple, when cross-compiling. */
  target?: string;
  /** Comma-separated cargo features the base compiles with. */
  features?: string;
  /** The bytes of Dockerfile.base: a change to how the base is built must change the key. */
  dockerfileBase: string | Uint8Array;
  /**
   * The project's own files that key its base image (`[docker] base-key-files` of fast-build.toml,
   * e.g. a Node project's package-lock.json): path and sha256 of the bytes. Absent or empty: the
   * key is what it was before the project file (so a Rust workspace keeps its bases).
   */
  keyFiles?: readonly KeyFile[];
}

/** A file of the tree that keys the base image, by its path and the sha256 hex of its bytes. */
export interface KeyFile {
  path: string;
  sha256: string;
}

/**
 * The recipe of a project that is not a Cargo workspace (its own Dockerfiles, keyed by its own
 * files): nothing of cargo's. Its base key covers Dockerfile.base and the key files only.
 */
export const EMPTY_RECIPE: DependencyRecipe = {
  manifests: [],
  lockfile: undefined,
  extraFiles: [],
  ownCrates: [],
  stubs: [],
};

export interface RecipeManifest {
  /** POSIX path relative to the workspace root, e.g. `crates/core/Cargo.toml`. */
  path: string;
  /** Parsed and normalised (own version masked, publishing metadata dropped). */
  manifest: TomlTable;
}

export interface RecipeFile {
  path: string;
  content: string;
}

export interface DependencyRecipe {
  manifests: RecipeManifest[];
  /** Cargo.lock with our own crates' versions masked, when the workspace has one. */
  lockfile: string | undefined;
  /** `rust-toolchain.toml` / `rust-toolchain` and `.cargo/config(.toml)`, verbatim. */
  extraFiles: RecipeFile[];
  /** Names of the workspace's own crates (members and path dependencies). */
  ownCrates: string[];
  /**
   * Empty stand-ins for every target cargo expects to find (lib, bins, build scripts, declared
   * examples/tests/benches), so the recipe builds without our sources. Derived from the manifests
   * and the tree's layout, so they are not part of the key.
   */
  stubs: RecipeFile[];
}

export interface BaseKeyResult {
  /** 64 lower-case hex digits; also the base image's tag. */
  key: string;
  recipe: DependencyRecipe;
}

const TOOLCHAIN_FILES = ["rust-toolchain.toml", "rust-toolchain"];
const CARGO_CONFIG_FILES = [".cargo/config.toml", ".cargo/config"];
const MAIN_STUB = "fn main() {}\n";
const LIB_STUB = "";

/** Computes the base key of the Cargo workspace at `root`. Throws InvalidInputError for a tree cargo would reject. */
export async function computeBaseKey(root: string, opts: BaseKeyOptions): Promise<BaseKeyResult> {
  const recipe = await readDependencyRecipe(root);
  return { key: baseKeyOf(recipe, opts), recipe };
}

/** The key of an already-read recipe (pure). */
export function baseKeyOf(recipe: DependencyRecipe, opts: BaseKeyOptions): string {
  const material = {
    scheme: BASE_KEY_SCHEME,
    manifests: recipe.manifests.map((m) => ({ path: m.path, manifest: m.manifest })),
    // Parsed, so that only content counts, not cargo's formatting of the file.
    lockfile: recipe.lockfile === undefined ? null : parseToml(recipe.lockfile, "Cargo.lock"),
    extraFiles: recipe.extraFiles,
    toolchain: opts.toolchain ?? null,
    profile: opts.profile ?? "release",
    target: opts.target ?? null,
    features: opts.features ?? null,
    dockerfileBase: sha256Hex(opts.dockerfileBase),
    ...(opts.keyFiles?.length
      ? { keyFiles: opts.keyFiles.map((f) => ({ path: f.path, sha256: f.sha256 })) }
      : {}),
  };
  return sha256Hex(canonicalJson(material));
}

/** What a base key is computed over, for `fast-build plan` to show: the tree's files and the build settings. */
export interface BaseKeyCoverage {
  /** The workspace's files that go into the key (manifests normalised, Cargo.lock masked). */
  files: string[];
  /** The settings and bytes beside them: the scheme, profile, target, toolchain, features, Dockerfile.base. */
  settings: {
    scheme: number;
    profile: string;
    target: string | null;
    toolchain: string | null;
    features: string | null;
    /** sha256 hex of Dockerfile.base's bytes. */
    dockerfileBase: string;
  };
}

/** What {@link baseKeyOf} covers for this recipe and these options (pure; the same material). */
export function baseKeyCoverage(recipe: DependencyRecipe, opts: BaseKeyOptions): BaseKeyCoverage {
  return {
    files: [
      ...recipe.manifests.map((m) => m.path),
      ...(recipe.lockfile === undefined ? [] : ["Cargo.lock"]),
      ...recipe.extraFiles.map((f) => f.path),
      ...(opts.keyFiles ?? []).map((f) => f.path),
    ],
    settings: {
      scheme: BASE_KEY_SCHEME,
      profile: opts.profile ?? "release",
      target: opts.target ?? null,
      toolchain: opts.toolchain ?? null,
      features: opts.features ?? null,
      dockerfileBase: sha256Hex(opts.dockerfileBase),
    },
  };
}

/** Reads the workspace at `root` into its dependency recipe. */
export async function readDependencyRecipe(root: string): Promise<DependencyRecipe> {
  const absRoot = resolve(root);
  const rootManifestPath = join(absRoot, "Cargo.toml");
  if (!(await isFile(rootManifestPath))) {
    throw new InvalidInputError(`no Cargo.toml in ${absRoot}`, {
      code: "NoCargoManifest",
      hint: "Run the command from the root of a Cargo workspace (the folder with the top-level Cargo.toml), or describe another kind of project, with its own Dockerfiles, in fast-build.toml (`fast-build init`).",
    });
  }

  const manifests = new Map<string, TomlTable>();
  const queue: string[] = [""];
  const rootManifest = await readManifest(absRoot, "");
  manifests.set("", rootManifest);
  queue.push(...(await workspaceMembers(absRoot, rootManifest)));

  while (queue.length > 0) {
    const dir = queue.shift()!;
    let manifest = manifests.get(dir);
    if (!manifest) {
      manifest = await readManifest(absRoot, dir);
      manifests.set(dir, manifest);
    }
    for (const depPath of pathDependencies(manifest)) {
      const target = toRootRelative(absRoot, join(absRoot, dir, depPath));
      if (target === undefined) {
        throw new InvalidInputError(
          `${manifestPath(dir)} has a path dependency "${depPath}" outside the workspace root`,
          {
            code: "PathDependencyOutsideRoot",
            hint: "The builder only sees the workspace folder: move the crate inside it, or depend on it by git or registry.",
          },
        );
      }
      if (!manifests.has(target) && !queue.includes(target)) queue.push(target);
    }
  }

  const dirs = [...manifests.keys()].sort();
  const ownCrates = [
    ...new Set(dirs.map((d) => packageName(manifests.get(d)!)).filter((n) => n !== undefined)),
  ].sort();

  const lockText = await readOptional(join(absRoot, "Cargo.lock"));
  const lockfile = lockText === undefined ? undefined : maskLockfile(lockText, new Set(ownCrates));

  const extraFiles: RecipeFile[] = [];
  for (const group of [TOOLCHAIN_FILES, CARGO_CONFIG_FILES]) {
    // Cargo and rustup use the first file of each group that exists.
    for (const name of group) {
      const content = await readOptional(join(absRoot, name));
      if (content !== undefined) {
        if (name.endsWith(".toml")) parseToml(content, name);
        extraFiles.push({ path: name, content });
        break;
      }
    }
  }

  const stubs: RecipeFile[] = [];
  for (const dir of dirs) stubs.push(...(await targetStubs(absRoot, dir, manifests.get(dir)!)));

  return {
    manifests: dirs.map((dir) => ({
      path: manifestPath(dir),
      manifest: normalizeManifest(manifests.get(dir)!),
    })),
    lockfile,
    extraFiles,
    ownCrates,
    stubs: dedupe(stubs),
  };
}

/**
 * Writes the dependency-only recipe (normalised manifests, masked Cargo.lock, toolchain and cargo
 * config, stub sources) into `outDir`: the build context of Dockerfile.base. The upload command
 * ships it inside the archive as {@link RECIPE_DIR_IN_ARCHIVE}. Returns the written paths (POSIX, relative).
 */
export async function writeDependencyRecipe(recipe: DependencyRecipe, outDir: string): Promise<string[]> {
  const files = recipeFiles(recipe);
  for (const file of files) {
    const target = join(outDir, ...file.path.split("/"));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, file.content);
  }
  return files.map((f) => f.path).sort();
}

/**
 * The recipe as files (POSIX paths relative to the recipe folder), for an archive writer that adds
 * them under {@link RECIPE_DIR_IN_ARCHIVE} without touching the disk.
 */
export function recipeFiles(recipe: DependencyRecipe): RecipeFile[] {
  return [
    ...recipe.manifests.map((m) => ({ path: m.path, content: manifestToToml(m.manifest) })),
    ...(recipe.lockfile === undefined ? [] : [{ path: "Cargo.lock", content: recipe.lockfile }]),
    ...recipe.extraFiles,
    ...recipe.stubs,
  ].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function workspaceMembers(absRoot: string, rootManifest: TomlTable): Promise<string[]> {
  const workspace = rootManifest.workspace;
  if (!isTable(workspace)) return [];
  const excluded = new Set(
    (Array.isArray(workspace.exclude) ? workspace.exclude : [])
      .filter((e): e is string => typeof e === "string")
      .map((e) => posix.normalize(e).replace(/\/$/, "")),
  );
  const members: string[] = [];
  const patterns = Array.isArray(workspace.members) ? workspace.members : [];
  for (const pattern of patterns) {
    if (typeof pattern !== "string") continue;
    const isGlob = /[*?[]/.test(pattern);
    for (const dir of isGlob ? await expandGlob(absRoot, pattern) : [posix.normalize(pattern)]) {
      const rel = toRootRelative(absRoot, join(absRoot, dir));
      if (rel === undefined) {
        throw new InvalidInputError(`workspace member "${pattern}" is outside the workspace root`, {
          code: "MemberOutsideRoot",
          hint: "Keep every workspace member inside the folder with the top-level Cargo.toml.",
        });
      }
      if (excluded.has(rel)) continue;
      // Cargo skips glob matches without a manifest but rejects a missing literal member.
      if (isGlob && !(await isFile(join(absRoot, rel, "Cargo.toml")))) continue;
      members.push(rel);
    }
  }
  return members;
}

/** Expands `*` / `?` / `[..]` per path segment, as the glob patterns in `workspace.members`. */
async function expandGlob(absRoot: string, pattern: string): Promise<string[]> {
  let current = [""];
  for (const segment of posix.normalize(pattern).split("/")) {
    if (segment === "**") {
      throw new InvalidInputError(`workspace member pattern "${pattern}" uses **`, {
        code: "UnsupportedMemberGlob",
        hint: "List the member folders with single-level patterns such as crates/*.",
      });
    }
    if (!/[*?[]/.test(segment)) {
      current = current.map((c) => posix.join(c, segment));
      continue;
    }
    const re = globSegmentToRegExp(segment);
    const next: string[] = [];
    for (const dir of current) {
      let entries;
      try {
        entries = await readdir(join(absRoot, dir), { withFileTypes: true });
      } catch {
        continue;
      }
      for (const entry of entries) {
        if (entry.isDirectory() && re.test(entry.name)) next.push(posix.join(dir, entry.name));
      }
    }
    current = next;
  }
  return current.sort();
}

function globSegmentToRegExp(segment: string): RegExp {
  let source = "";
  for (let i = 0; i < segment.length; i++) {
    const ch = segment[i]!;
    if (ch === "*") source += "[^/]*";
    else if (ch === "?") source += "[^/]";
    else if (ch === "[") {
      const end = segment.indexOf("]", i + 1);
      if (end < 0) source += "\\[";
      else {
        source += `[${segment
          .slice(i + 1, end)
          .replace(/^!/, "^")
          .replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else source += ch.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}

async function readManifest(absRoot: string, dir: string): Promise<TomlTable> {
  const path = manifestPath(dir);
  const text = await readOptional(join(absRoot, dir, "Cargo.toml"));
  if (text === undefined) {
    throw new InvalidInputError(`${path} is missing`, {
      code: "NoCargoManifest",
      hint: `The workspace (or a path dependency) names the crate folder "${dir}", but it has no Cargo.toml. Fix the path or add the crate.`,
    });
  }
  return parseToml(text, path);
}

/** Stub files for every target cargo will look for in the package at `dir`. */
async function targetStubs(absRoot: string, dir: string, manifest: TomlTable): Promise<RecipeFile[]> {
  const pkg = manifest.package ?? manifest.project;
  if (!isTable(pkg)) return [];
  const stubs: RecipeFile[] = [];
  const add = (path: string, content: string) => stubs.push({ path: posix.join(dir, path), content });
  const exists = (path: string) => isFile(join(absRoot, dir, path));

  const lib = manifest.lib;
  if (isTable(lib) && typeof lib.path === "string") add(lib.path, LIB_STUB);
  else if (isTable(lib) || (await exists("src/lib.rs"))) add("src/lib.rs", LIB_STUB);

  if (pkg.autobins !== false) {
    if (await exists("src/main.rs")) add("src/main.rs", MAIN_STUB);
    for (const name of await listDir(join(absRoot, dir, "src/bin"))) {
      if (name.endsWith(".rs")) add(`src/bin/${name}`, MAIN_STUB);
      else if (await exists(`src/bin/${name}/main.rs`)) add(`src/bin/${name}/main.rs`, MAIN_STUB);
    }
  }
  const declared: Array<[string, string]> = [
    ["bin", "src/bin"],
    ["example", "examples"],
    ["test", "tests"],
    ["bench", "benches"],
  ];
  for (const [kind, folder] of declared) {
    const entries = manifest[kind];
    if (!Array.isArray(entries)) continue;
    for (const entry of entries) {
      if (!isTable(entry)) continue;
      if (typeof entry.path === "string") {
        add(entry.path, MAIN_STUB);
        continue;
      }
      const name = typeof entry.name === "string" ? entry.name : undefined;
      if (name === undefined) continue;
      if (kind === "bin" && name === packageName(manifest) && (await exists("src/main.rs"))) continue;
      const nested = `${folder}/${name}/main.rs`;
      add((await exists(nested)) ? nested : `${folder}/${name}.rs`, MAIN_STUB);
    }
  }

  if (typeof pkg.build === "string") add(pkg.build, MAIN_STUB);
  else if (pkg.build !== false && (await exists("build.rs"))) add("build.rs", MAIN_STUB);
  return stubs;
}

function dedupe(files: RecipeFile[]): RecipeFile[] {
  const byPath = new Map<string, RecipeFile>();
  for (const file of files)
    byPath.set(posix.normalize(file.path), { ...file, path: posix.normalize(file.path) });
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
}

function manifestPath(dir: string): string {
  return dir === "" ? "Cargo.toml" : `${dir}/Cargo.toml`;
}

/** `abs` relative to the root in POSIX form (`""` for the root), or undefined when outside it. */
function toRootRelative(absRoot: string, abs: string): string | undefined {
  const rel = relative(absRoot, resolve(abs));
  if (rel === "") return "";
  if (rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return undefined;
  return rel.split(sep).join("/");
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isFile();
  } catch {
    return false;
  }
}

async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch {
    return [];
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}
