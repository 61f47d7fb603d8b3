/**
 * The project's build settings as they travel: read by `fast-build dev` from `fast-build.toml`
 * (src/core/projectFile.ts), sent in `POST /api/builds` as `project`, kept in the build's input and
 * handed to build.sh as Run Command parameters (FASTBUILD_BINARY_NAME, FASTBUILD_CARGO_*,
 * FASTBUILD_PORT, FASTBUILD_DOCKERFILE_BASE/APP). Every value follows a rule of src/core/rules.ts,
 * which build.sh checks again.
 */
import { z } from "zod";
import {
  BINARY_NAME,
  CARGO_FEATURE,
  CARGO_FEATURE_LIST,
  CARGO_PROFILE,
  CARGO_TARGET,
  PROJECT_PATH,
  ruleSchema,
} from "./rules.js";

/** The highest TCP port. */
export const MAX_PORT = 65535;

/** How many files may key the base image beside the Cargo recipe. */
export const MAX_BASE_KEY_FILES = 64;

export const portSchema = z
  .number()
  .int("must be a whole number")
  .min(1, "must be 1-65535")
  .max(MAX_PORT, "must be 1-65535");

export const projectSettingsSchema = z
  .object({
    /** The cargo binary the built-in Dockerfile.app packages (absent: the environment's `binaryName`). */
    binary: ruleSchema(BINARY_NAME).optional(),
    features: z
      .array(ruleSchema(CARGO_FEATURE))
      .max(50)
      .refine((list) => list.length === 0 || CARGO_FEATURE_LIST.pattern.test(list.join(",")), {
        message: `the features together must fit ${CARGO_FEATURE_LIST.message}`,
      })
      .optional(),
    profile: ruleSchema(CARGO_PROFILE).optional(),
    target: ruleSchema(CARGO_TARGET).optional(),
    /** The port the container listens on: the image EXPOSEs it and gets PORT in its environment. */
    port: portSchema.optional(),
    /** The project's own Dockerfiles, as paths inside the source tree (absent: the built-in Rust pair). */
    dockerfiles: z
      .object({ base: ruleSchema(PROJECT_PATH), app: ruleSchema(PROJECT_PATH) })
      .strict()
      .optional(),
  })
  .strict();
export type ProjectSettings = z.infer<typeof projectSettingsSchema>;

/**
 * The binary a build packages: the project's, else the environment's (set for CLIs from before the
 * project file). A project with its own Dockerfiles needs none (they decide what the image runs).
 */
export function effectiveBinary(
  project: ProjectSettings | undefined,
  environmentBinary: string | undefined,
): { binary?: string; missing: boolean } {
  const binary = project?.binary ?? environmentBinary;
  if (binary !== undefined) return { binary, missing: false };
  return { missing: project?.dockerfiles === undefined };
}
