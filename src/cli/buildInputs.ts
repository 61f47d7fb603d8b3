/**
 * What `fast-build dev` computes before it sends anything, in one definition that `fast-build
 * plan` (and `dev --dry-run`) call too, so the plan and the build can never disagree: the project
 * file (`fast-build.toml`, src/core/projectFile.ts), the Dockerfiles, the base key over the
 * dependency recipe, and the generated files (the recipe and the built-in Dockerfiles) that travel
 * with the tree. The tree itself is src/cli/sourceTree.ts's listing, hashed by createManifest or
 * archived by createArchive with these generated files.
 */
import { createHash } from "node:crypto";
import { lstat, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  baseKeyCoverage,
  baseKeyOf,
  EMPTY_RECIPE,
  KIT_DIR_IN_ARCHIVE,
  readDependencyRecipe,
  recipeFiles,
  RECIPE_DIR_IN_ARCHIVE,
  type BaseKeyCoverage,
  type BaseKeyOptions,
  type KeyFile,
} from "../core/baseKey.js";
import { InvalidInputError, PermanentError } from "../core/errors.js";
import {
  lineOf,
  parseProjectFile,
  PROJECT_FILE,
  projectSettingsOf,
  type ProjectFile,
} from "../core/projectFile.js";
import type { ProjectSettings } from "../core/projectSettings.js";
import { checkDirectory, listSourceFiles, type GeneratedFiles } from "./sourceTree.js";

export interface BuildInputs {
  /** The base image's tag (64 hex digits). */
  baseKey: string;
  /** What the key covers. */
  covers: BaseKeyCoverage;
  /** Added to the tree under `.fastbuild/recipe` and (built-in Dockerfiles) `.fastbuild/kit`. */
  generated: GeneratedFiles[];
  /**
   * The project file's settings, sent with the build (`project` of POST /api/builds); undefined
   * without a fast-build.toml, when the build is what it was before the project file.
   */
  project: ProjectSettings | undefined;
  /** Which Dockerfiles build it: the project's own (paths in the tree) or the built-in Rust pair. */
  dockerfiles: { source: "project"; base: string; app: string } | { source: "built-in" };
}

/**
 * The base key and the generated files of the project at `root`: a Cargo workspace, or with its
 * own Dockerfiles any project. Throws InvalidInputError for a bad project file, a missing file it
 * names, or a tree cargo would reject.
 */
export async function readBuildInputs(root: string): Promise<BuildInputs> {
  // A wrong --dir is named as such, not as a folder without Cargo.toml.
  await checkDirectory(root);
  const projectText = await readOptional(join(root, PROJECT_FILE));
  const file = projectText === undefined ? undefined : parseProjectFile(projectText);
  const own = file?.docker.base !== undefined && file.docker.app !== undefined;
  const cargo = await isFile(join(root, "Cargo.toml"));
  const need = (path: string, key: string[]) => readProjectFile(root, path, key, projectText ?? "");

  // The project's own Dockerfiles are read from the tree (they travel in it, at their paths); the
  // built-in ones travel in .fastbuild/kit/. Either way the key covers the Dockerfile.base used.
  const kit = own
    ? {
        dockerfileBase: await need(file.docker.base!, ["docker", "base"]),
        dockerfileApp: await need(file.docker.app!, ["docker", "app"]),
      }
    : await readBuildKit();
  if (own) {
    // The builder reads them from the tree it gets: one the upload leaves out (ignored by git,
    // under target/) would fail the build only after the upload and the VM's start.
    const listed = new Set((await listSourceFiles(root)).files);
    for (const [path, key] of [
      [file.docker.base!, "base"],
      [file.docker.app!, "app"],
    ] as const) {
      if (!listed.has(path)) {
        const line = lineOf(projectText ?? "", ["docker", key]);
        throw new InvalidInputError(
          `${PROJECT_FILE}${line !== undefined ? `:${line}` : ""}: docker.${key}: ${path} is not sent with the source (ignored by .gitignore, or under target/)`,
          {
            code: "ProjectFileNotSent",
            hint: `Commit ${path} or take it out of .gitignore (\`fast-build plan\` lists what is left out and why).`,
          },
        );
      }
    }
  }
  const keyFiles: { path: string; content: Buffer }[] = [];
  for (const path of file?.docker.baseKeyFiles ?? []) {
    keyFiles.push({ path, content: await need(path, ["docker", "base-key-files"]) });
  }
  // The built-in Dockerfiles build a Cargo workspace; a project with its own needs no Cargo.toml
  // (readDependencyRecipe says what to do without one).
  const recipe = own && !cargo ? EMPTY_RECIPE : await readDependencyRecipe(root);
  const options: BaseKeyOptions = {
    dockerfileBase: kit.dockerfileBase,
    ...(file && file.build.profile !== "release" ? { profile: file.build.profile } : {}),
    ...(file?.build.target !== undefined ? { target: file.build.target } : {}),
    ...(file && file.build.features.length > 0 ? { features: file.build.features.join(",") } : {}),
    ...(keyFiles.length > 0 ? { keyFiles: keyFiles.map(keyFileOf) } : {}),
  };
  // The recipe and the key files travel with the source as the base's build context, so the
  // builder compiles the dependency base from exactly what the key was computed over (see
  // src/core/baseKey.ts); the builder VM keeps no Dockerfiles of its own.
  const generated: GeneratedFiles[] = [
    {
      prefix: RECIPE_DIR_IN_ARCHIVE,
      files: mergeByPath([...recipeFiles(recipe), ...keyFiles]),
    },
  ];
  if (!own) {
    generated.push({
      prefix: KIT_DIR_IN_ARCHIVE,
      files: [
        { path: "Dockerfile.app", content: kit.dockerfileApp },
        { path: "Dockerfile.base", content: kit.dockerfileBase },
      ],
    });
  }
  return {
    baseKey: baseKeyOf(recipe, options),
    covers: baseKeyCoverage(recipe, options),
    generated,
    project: file ? projectSettingsOf(file) : undefined,
    dockerfiles: own
      ? { source: "project", base: file.docker.base!, app: file.docker.app! }
      : { source: "built-in" },
  };
}

/** The project file of `root`, when it has one (src/core/projectFile.ts checks it). */
export async function readProjectFileAt(root: string): Promise<ProjectFile | undefined> {
  const text = await readOptional(join(root, PROJECT_FILE));
  return text === undefined ? undefined : parseProjectFile(text);
}

function keyFileOf(file: { path: string; content: Buffer }): KeyFile {
  return { path: file.path, sha256: createHash("sha256").update(file.content).digest("hex") };
}

/** A key file that is also a recipe file (e.g. Cargo.lock) keeps the recipe's (masked) bytes. */
function mergeByPath(files: { path: string; content: string | Uint8Array }[]) {
  const byPath = new Map<string, { path: string; content: string | Uint8Array }>();
  for (const file of files) if (!byPath.has(file.path)) byPath.set(file.path, file);
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** A file the project file names: a plain file inside the tree, or a refusal naming the key's line. */
async function readProjectFile(root: string, path: string, key: string[], text: string): Promise<Buffer> {
  const line = lineOf(text, key);
  const where = `${PROJECT_FILE}${line !== undefined ? `:${line}` : ""}: ${key.join(".")}`;
  const info = await lstat(join(root, path)).catch(() => undefined);
  if (!info?.isFile()) {
    throw new InvalidInputError(
      `${where}: ${path} ${info === undefined ? "does not exist" : info.isSymbolicLink() ? "is a symlink" : "is not a file"} in ${root}`,
      {
        code: "ProjectFileMissing",
        hint: `Give the path of a plain file from the project root in ${PROJECT_FILE}, or add the file.`,
      },
    );
  }
  return readFile(join(root, path));
}

/**
 * The Dockerfiles that ship with this package, two levels up from both `src/cli/` and `dist/cli/`:
 * Dockerfile.base's bytes are part of the base key, and both go into the archive.
 * The key covers the build defaults of build.sh (toolchain image, release profile, host target);
 * a project pins its toolchain with rust-toolchain.toml, which is part of the recipe. Were the
 * builder to build with other options, the key would only miss the cache, never pick a wrong base.
 */
async function readBuildKit(): Promise<{ dockerfileBase: Buffer; dockerfileApp: Buffer }> {
  const read = (name: string) => {
    const file = new URL(`../../dockerfiles/${name}`, import.meta.url);
    return readFile(file).catch((error: unknown) => {
      throw new PermanentError(`fast-build is incomplete: cannot read ${fileURLToPath(file)}`, {
        code: "InstallationIncomplete",
        hint: "Reinstall fast-build (the package must include dockerfiles/).",
        cause: error,
      });
    });
  };
  const [dockerfileBase, dockerfileApp] = await Promise.all([
    read("Dockerfile.base"),
    read("Dockerfile.app"),
  ]);
  return { dockerfileBase, dockerfileApp };
}

async function isFile(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isFile() ?? false;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}
