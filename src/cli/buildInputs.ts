/**
 * What `fast-build dev` computes before it sends anything, in one definition that `fast-build
 * plan` (and `dev --dry-run`) call too, so the plan and the build can never disagree: the kit's
 * Dockerfiles, the base key over the dependency recipe, and the generated files (the recipe and
 * the Dockerfiles) that travel with the tree. The tree itself is src/cli/sourceTree.ts's listing,
 * hashed by createManifest or archived by createArchive with these generated files.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import {
  baseKeyCoverage,
  computeBaseKey,
  KIT_DIR_IN_ARCHIVE,
  recipeFiles,
  RECIPE_DIR_IN_ARCHIVE,
  type BaseKeyCoverage,
} from "../core/baseKey.js";
import { PermanentError } from "../core/errors.js";
import { checkDirectory, type GeneratedFiles } from "./sourceTree.js";

export interface BuildInputs {
  /** The base image's tag (64 hex digits). */
  baseKey: string;
  /** What the key covers. */
  covers: BaseKeyCoverage;
  /** Added to the tree under `.fastbuild/recipe` and `.fastbuild/kit`. */
  generated: GeneratedFiles[];
}

/** The base key and the generated files of the Cargo workspace at `root`. Throws InvalidInputError for a tree cargo would reject. */
export async function readBuildInputs(root: string): Promise<BuildInputs> {
  // A wrong --dir is named as such, not as a folder without Cargo.toml.
  await checkDirectory(root);
  const kit = await readBuildKit();
  const options = { dockerfileBase: kit.dockerfileBase };
  const { key, recipe } = await computeBaseKey(root, options);
  // The recipe and the Dockerfiles travel with the source, so the builder compiles the dependency
  // base from exactly what the key was computed over (see src/core/baseKey.ts); the builder VM
  // keeps no Dockerfiles of its own.
  const generated = [
    { prefix: RECIPE_DIR_IN_ARCHIVE, files: recipeFiles(recipe) },
    {
      prefix: KIT_DIR_IN_ARCHIVE,
      files: [
        { path: "Dockerfile.app", content: kit.dockerfileApp },
        { path: "Dockerfile.base", content: kit.dockerfileBase },
      ],
    },
  ];
  return { baseKey: key, covers: baseKeyCoverage(recipe, options), generated };
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
