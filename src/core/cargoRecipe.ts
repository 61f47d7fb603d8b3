/**
 * Pure normalisation of a Cargo workspace's dependency recipe: what goes into the base image and
 * into its key. No file system here (see `baseKey.ts`), so every rule is testable on strings.
 *
 * The recipe keeps exactly what decides which dependencies get compiled and how: manifests,
 * the lockfile, the toolchain and cargo configuration. It drops what only our own crates carry
 * (their version numbers, publishing metadata), so bumping our own version or editing a
 * description reuses the base image.
 */
import { createHash } from "node:crypto";
import { parse, stringify, TomlDate, TomlError } from "smol-toml";
import { InvalidInputError } from "./errors.js";

/** The version every own crate gets in the recipe (any fixed value would do). */
export const MASKED_VERSION = "0.0.0";

export type TomlTable = Record<string, unknown>;

/** Publishing metadata that never changes how dependencies compile; some name files the recipe lacks. */
const METADATA_KEYS = [
  "authors",
  "categories",
  "description",
  "documentation",
  "exclude",
  "homepage",
  "include",
  "keywords",
  "license-file",
  "readme",
  "repository",
] as const;

const DEPENDENCY_TABLES = [
  "dependencies",
  "dev-dependencies",
  "dev_dependencies",
  "build-dependencies",
  "build_dependencies",
] as const;

export function isTable(value: unknown): value is TomlTable {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** Parses TOML, turning a syntax error into an InvalidInputError that names the file. */
export function parseToml(text: string, path: string): TomlTable {
  try {
    return parse(text);
  } catch (error) {
    const detail = error instanceof TomlError ? error.message.split("\n")[0] : String(error);
    throw new InvalidInputError(`${path} is not valid TOML: ${detail}`, {
      code: "InvalidCargoManifest",
      hint: `Fix ${path} (cargo would reject it too), then run the command again.`,
      cause: error,
    });
  }
}

/**
 * Every dependency table of a manifest, wherever Cargo allows one: top level, per target
 * (`[target.'cfg(..)'.dependencies]`), `[workspace.dependencies]` and `[patch.<registry>]`.
 */
export function dependencyTables(manifest: TomlTable): TomlTable[] {
  const tables: TomlTable[] = [];
  const collect = (owner: unknown) => {
    if (!isTable(owner)) return;
    for (const name of DEPENDENCY_TABLES) {
      const table = owner[name];
      if (isTable(table)) tables.push(table);
    }
  };
  collect(manifest);
  if (isTable(manifest.target)) for (const target of Object.values(manifest.target)) collect(target);
  if (isTable(manifest.workspace) && isTable(manifest.workspace.dependencies)) {
    tables.push(manifest.workspace.dependencies);
  }
  if (isTable(manifest.patch)) {
    for (const source of Object.values(manifest.patch)) if (isTable(source)) tables.push(source);
  }
  if (isTable(manifest.replace)) tables.push(manifest.replace);
  return tables;
}

/** The `path = "…"` of every path dependency, as written (relative to the manifest's folder). */
export function pathDependencies(manifest: TomlTable): string[] {
  const paths: string[] = [];
  for (const table of dependencyTables(manifest)) {
    for (const spec of Object.values(table)) {
      if (isTable(spec) && typeof spec.path === "string") paths.push(spec.path);
    }
  }
  return paths;
}

/** The package name of a manifest, or undefined for a virtual workspace root. */
export function packageName(manifest: TomlTable): string | undefined {
  const pkg = manifest.package ?? manifest.project;
  return isTable(pkg) && typeof pkg.name === "string" ? pkg.name : undefined;
}

/**
 * A copy of a manifest with our own versions masked and publishing metadata dropped. A path
 * dependency's `version` requirement goes too: it would no longer match the masked version, and
 * a path dependency is resolved by its path anyway.
 */
export function normalizeManifest(manifest: TomlTable): TomlTable {
  const copy = structuredClone(manifest);
  for (const key of ["package", "project"]) {
    const pkg = copy[key];
    if (!isTable(pkg)) continue;
    if (typeof pkg.version === "string") pkg.version = MASKED_VERSION;
    for (const meta of METADATA_KEYS) delete pkg[meta];
  }
  if (isTable(copy.workspace) && isTable(copy.workspace.package)) {
    const shared = copy.workspace.package;
    if (typeof shared.version === "string") shared.version = MASKED_VERSION;
    for (const meta of METADATA_KEYS) delete shared[meta];
  }
  for (const table of dependencyTables(copy)) {
    for (const spec of Object.values(table)) {
      if (isTable(spec) && typeof spec.path === "string") delete spec.version;
    }
  }
  return copy;
}

/** Serialises a normalised manifest back to TOML for the recipe folder (cargo reads any valid TOML). */
export function manifestToToml(manifest: TomlTable): string {
  return stringify(manifest) + "\n";
}

/**
 * Masks the versions of our own crates in a Cargo.lock, editing lines rather than re-serialising
 * so that the file keeps cargo's own layout (cargo compares lockfiles as text).
 * Own crates are the path packages: `[[package]]` entries with a name in `own` and no `source`.
 */
export function maskLockfile(text: string, own: ReadonlySet<string>): string {
  const lines = text.split(/\r?\n/);
  const out: string[] = [];
  let block: string[] = [];
  const flush = () => {
    if (block.length === 0) return;
    const name = /^name\s*=\s*"([^"]+)"/m.exec(block.join("\n"))?.[1];
    const fromRegistry = block.some((line) => /^source\s*=/.test(line));
    const mine = name !== undefined && own.has(name) && !fromRegistry;
    for (const line of block) {
      out.push(mine ? line.replace(/^version\s*=\s*"[^"]*"/, `version = "${MASKED_VERSION}"`) : line);
    }
    block = [];
  };
  for (const raw of lines) {
    // `"name version"` entries in dependency lists name an own crate when it has two versions.
    const line = raw.replace(/"([A-Za-z0-9_-]+) ([^" ]+)"/g, (whole, dep: string) =>
      own.has(dep) ? `"${dep} ${MASKED_VERSION}"` : whole,
    );
    if (/^\[\[package\]\]\s*$/.test(line) || /^\[/.test(line)) flush();
    block.push(line);
  }
  flush();
  return out.join("\n");
}

/** JSON with sorted keys and TOML dates as strings: the same data always gives the same text. */
export function canonicalJson(value: unknown): string {
  const normalize = (v: unknown): unknown => {
    if (v instanceof TomlDate) return v.toISOString();
    if (v instanceof Date) return v.toISOString();
    if (Array.isArray(v)) return v.map(normalize);
    if (isTable(v)) {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, normalize(v[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(normalize(value));
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}
