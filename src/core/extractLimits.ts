/**
 * The builder's extraction limits, each defined once: the app's settings (src/config/index.ts)
 * validate them, `resolveEnvironment` fixes them in the orchestration's history, `startBuild` sends
 * them to build.sh as run-command parameters, and dockerfiles/safe_extract.py enforces them (its
 * defaults, for runs by hand, are these; a test compares). Each variable's `pattern` is the one
 * build.sh checks (test/dockerfiles/rules.test.ts runs one table of values through both).
 */
import type { Rule } from "./rules.js";

export interface ExtractLimits {
  /** File bytes in all; the builder's work folder must have them free before extraction starts. */
  maxBytes: number;
  /** Archive members (files, folders, links). */
  maxFiles: number;
  /** Bytes of any one file. */
  maxFileBytes: number;
  /** UTF-8 bytes of a member's path or of a symlink's target. */
  maxPathBytes: number;
  /** Symlinks and hardlinks together (0: none allowed). */
  maxLinks: number;
  /** Symlinks followed to resolve one symlink (Linux itself follows at most 40). */
  maxLinkDepth: number;
}

export interface ExtractLimit {
  key: keyof ExtractLimits;
  /** The variable build.sh and safe_extract.py read. */
  variable: string;
  /** The app setting (for `maxBytes` the factor of `FASTBUILD_MAX_UPLOAD_BYTES`, see below). */
  setting: string;
  min: number;
  max: number;
  default: number;
  /** What build.sh accepts for the variable. */
  rule: Rule;
  /** For the configuration table and messages. */
  meaning: string;
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** The upload limit's default (`FASTBUILD_MAX_UPLOAD_BYTES`). */
export const DEFAULT_MAX_UPLOAD_BYTES = 512 * MiB;

/**
 * Expanded bytes are a factor of the upload limit, not a number of their own: raising the upload
 * limit raises what an archive may expand to, and a small limit keeps bombs small. Source trees
 * compress 3-10x; the default factor 4 allows 2 GiB with the default 512 MiB uploads.
 */
export const EXTRACT_BYTES_FACTOR = {
  setting: "FASTBUILD_EXTRACT_MAX_BYTES_FACTOR",
  min: 1,
  max: 64,
  default: 4,
} as const;

const count = (digits: number, zero = false): Rule => ({
  pattern: new RegExp(zero ? `^[0-9]{1,${digits}}$` : `^[1-9][0-9]{0,${digits - 1}}$`),
  message: zero ? "a whole number" : "a positive whole number",
});

export const EXTRACT_LIMITS: readonly ExtractLimit[] = [
  {
    key: "maxBytes",
    variable: "FASTBUILD_EXTRACT_MAX_BYTES",
    setting: EXTRACT_BYTES_FACTOR.setting,
    min: 1,
    max: EXTRACT_BYTES_FACTOR.max * 10 * GiB,
    default: EXTRACT_BYTES_FACTOR.default * DEFAULT_MAX_UPLOAD_BYTES,
    rule: count(13),
    meaning: "file bytes an archive may expand to, as a factor of FASTBUILD_MAX_UPLOAD_BYTES",
  },
  {
    key: "maxFiles",
    variable: "FASTBUILD_EXTRACT_MAX_FILES",
    setting: "FASTBUILD_EXTRACT_MAX_FILES",
    min: 1,
    max: 10_000_000,
    default: 200_000,
    rule: count(9),
    meaning: "members (files, folders, links) of one archive",
  },
  {
    key: "maxFileBytes",
    variable: "FASTBUILD_EXTRACT_MAX_FILE_BYTES",
    setting: "FASTBUILD_EXTRACT_MAX_FILE_BYTES",
    min: 1,
    max: 64 * GiB,
    default: 512 * MiB,
    rule: count(13),
    meaning: "bytes of one file",
  },
  {
    key: "maxPathBytes",
    variable: "FASTBUILD_EXTRACT_MAX_PATH_BYTES",
    setting: "FASTBUILD_EXTRACT_MAX_PATH_BYTES",
    min: 64,
    max: 4096,
    default: 1024,
    rule: count(5),
    meaning: "UTF-8 bytes of a path or a symlink's target (Linux: 4096)",
  },
  {
    key: "maxLinks",
    variable: "FASTBUILD_EXTRACT_MAX_LINKS",
    setting: "FASTBUILD_EXTRACT_MAX_LINKS",
    min: 0,
    max: 1_000_000,
    default: 10_000,
    rule: count(9, true),
    meaning: "symlinks and hardlinks of one archive (0: none)",
  },
  {
    key: "maxLinkDepth",
    variable: "FASTBUILD_EXTRACT_MAX_LINK_DEPTH",
    setting: "FASTBUILD_EXTRACT_MAX_LINK_DEPTH",
    min: 1,
    max: 1000,
    default: 40,
    rule: count(4),
    meaning: "symlinks followed to resolve one symlink (Linux: 40)",
  },
];

/** The limits with every default (what safe_extract.py uses when run by hand). */
export function defaultExtractLimits(): ExtractLimits {
  return Object.fromEntries(EXTRACT_LIMITS.map((limit) => [limit.key, limit.default])) as Record<
    keyof ExtractLimits,
    number
  >;
}

/**
 * The builder's content cache (content-addressed source, src/core/sourceManifest.ts): file
 * contents kept between builds under the work folder, so a build fetches only what changed. After
 * each build the least recently used entries beyond this many bytes are evicted (never one the
 * build used). dockerfiles/safe_extract.py reads the variable and holds the same default (a test
 * compares); build.sh checks the variable's form with `rule`. 0 keeps only the last build's.
 */
export const CONTENT_CACHE_LIMIT = {
  variable: "FASTBUILD_CONTENT_CACHE_MAX_BYTES",
  default: 8 * GiB,
  rule: count(13, true),
  meaning: "bytes of file contents the builder keeps between builds (least recently used evicted)",
} as const;
