/**
 * The validation rules for every value that reaches the builder, each defined once: the API's
 * schemas (src/core/api.ts, src/core/buildInput.ts) and the settings (src/config/index.ts) use
 * these patterns, and dockerfiles/build.sh checks the same text again on the VM (it travels as
 * script text through Run Command, so it keeps its own copy; test/dockerfiles/rules.test.ts runs
 * one table of values through both). A value the app accepts but build.sh refuses would fail
 * every build with exit 2, so the patterns are written in the subset both JavaScript and bash
 * (ERE) read the same way: no `\d`, no non-capturing groups.
 */
import { z } from "zod";

/** One rule: the pattern and what to tell the user whose value does not fit. */
export interface Rule {
  pattern: RegExp;
  message: string;
  /** A shortest length the pattern does not say (only the API's build ids have one). */
  minLength?: number;
  /** Why lower case is required, told to whoever wrote the value in upper case. */
  lowerCaseReason?: string;
}

/**
 * Build ids: lower-case letters, digits and `-`, at most 64. build.sh takes any length from 1
 * (its tests and manual runs use short ids); the API takes only ids of 8 or more, since the ones
 * it makes (`createBuildId`) have 25 and a shorter one is a typo.
 */
export const BUILD_ID: Rule = {
  pattern: /^[a-z0-9][a-z0-9-]{0,63}$/,
  message: "8-64 lower-case letters, digits, -",
  minLength: 8,
};

/** `sha256:` and 64 lower-case hex digits: the source archive's digest. */
export const SOURCE_DIGEST: Rule = {
  pattern: /^sha256:[0-9a-f]{64}$/,
  message: "must be sha256:<64 lower-case hex digits>",
};

/** The dependency base key (src/core/baseKey.ts), also the base image's tag. */
export const BASE_KEY: Rule = {
  pattern: /^[0-9a-f]{16,64}$/,
  message: "must be 16-64 lower-case hex digits",
};

/** A git commit, also an image tag `commit-<hex>`. */
export const COMMIT: Rule = { pattern: /^[0-9a-f]{7,64}$/, message: "must be a hex commit id" };

/**
 * Registry login server, `host[:port]`, in lower case: ACR login servers are lower-case
 * (`myreg.azurecr.io` even for a registry created as `MyReg`), and image references must be.
 */
export const REGISTRY: Rule = {
  pattern: /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$/,
  message: "a lower-case registry host[:port], e.g. myreg.azurecr.io or 127.0.0.1:5000",
  lowerCaseReason: "ACR login servers are lower-case, and build.sh refuses any other spelling",
};

/** Image repository, e.g. `team/app`: lower-case path components separated by `/`. */
export const IMAGE_REPOSITORY: Rule = {
  pattern: /^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/,
  message: "a lower-case image repository such as team/app",
};

/** The cargo binary the image packages. */
export const BINARY_NAME: Rule = {
  pattern: /^[A-Za-z0-9_-]{1,64}$/,
  message: "a cargo binary name (letters, digits, _ -)",
};

/**
 * The per-build callback token. build.sh accepts any 16+ URL-safe token (its own tests use short
 * ones); the tokens we make (`createCallbackToken`) are 43 base64url characters, inside both.
 */
export const CALLBACK_TOKEN: Rule = {
  pattern: /^[A-Za-z0-9_-]{32,128}$/,
  message: "32-128 URL-safe characters",
};

/**
 * The base URL the builder calls back: https, or plain http to a loopback address only (build.sh
 * refuses any other http callback, which would fail every build).
 */
export const CALLBACK_BASE_URL: Rule = {
  pattern: /^(https:\/\/[^/\s"\\]+|http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?)(\/[^\s"\\]*)?$/,
  message: "an https URL (plain http only for 127.0.0.1, localhost or [::1])",
};

/** A zod string schema for `rule`, with one issue (and {@link ruleMessage}'s text) when it fails. */
export function ruleSchema(rule: Rule): z.ZodString {
  return z.string().check((ctx) => {
    const value = ctx.value;
    if (!rule.pattern.test(value) || value.length < (rule.minLength ?? 0)) {
      ctx.issues.push({ code: "custom", message: ruleMessage(rule, value), input: value });
    }
  });
}

/**
 * The message for a value that breaks `rule`; for a value that only has upper-case letters where
 * lower case is required, it names the lower-case spelling to use instead.
 */
export function ruleMessage(rule: Rule, value: string): string {
  const lower = value.toLowerCase();
  if (lower !== value && rule.pattern.test(lower)) {
    const why = rule.lowerCaseReason ? ` (${rule.lowerCaseReason})` : "";
    return `upper-case letters are not allowed: use ${JSON.stringify(lower)}${why}`;
  }
  return rule.message;
}

/** A cargo profile (`release`, `dev`, or a custom `[profile.NAME]`). */
export const CARGO_PROFILE: Rule = {
  pattern: /^[A-Za-z0-9_-]{1,64}$/,
  message: "a cargo profile name (letters, digits, _ -), e.g. release",
};

/**
 * One cargo feature (`name` or `crate/name`). The builder gets them comma-joined in
 * FASTBUILD_CARGO_FEATURES, which build.sh checks with {@link CARGO_FEATURE_LIST}.
 */
export const CARGO_FEATURE: Rule = {
  pattern: /^[A-Za-z0-9_][A-Za-z0-9_/-]{0,99}$/,
  message: "a cargo feature name (letters, digits, _ - and / for crate/feature)",
};

/** The features as build.sh receives them: comma-separated, at most 500 characters. */
export const CARGO_FEATURE_LIST: Rule = {
  pattern: /^[A-Za-z0-9_/,-]{1,500}$/,
  message: "comma-separated cargo features, at most 500 characters",
};

/** A target triple, e.g. `x86_64-unknown-linux-musl`. */
export const CARGO_TARGET: Rule = {
  pattern: /^[A-Za-z0-9_.-]{1,100}$/,
  message: "a target triple such as x86_64-unknown-linux-musl",
};

/** The port the container listens on: 1-65535 (build.sh checks the digits, the schema the range). */
export const CONTAINER_PORT: Rule = {
  pattern: /^[1-9][0-9]{0,4}$/,
  message: "a port number from 1 to 65535",
};

/**
 * A file inside the source tree, relative to its root (a project's own Dockerfiles, the files that
 * key its base image): `/`-separated names of letters, digits, `_ . -`, each starting with a letter,
 * digit or `_`, so no `.`/`..` segment, no hidden file (nor `.fastbuild/`), no absolute path.
 */
export const PROJECT_PATH: Rule = {
  pattern: /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(\/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}){0,15}$/,
  message:
    "a path inside the project, relative to its root, e.g. docker/Dockerfile.base (letters, digits, _ . -; no leading dot, .. or /)",
};

/**
 * The shared registry cache (issue 12 item 2): every builder reads and writes BuildKit's registry
 * cache in the environment's registry, so a builder that never built a project starts from the
 * layers another one pushed. One cache repository per image repository, `<repository>-cache`,
 * with these tags:
 * - `base-<base key>`: the base stage (built only when the registry has no base image for the key);
 * - `app-<branch tag>`: the app stage, read first from the build's own branch, then from the
 *   default branch ({@link DEFAULT_BRANCH}), so a new branch starts warm; written to its own branch.
 * A cache miss or an unreachable cache never fails a build (build.sh builds again without it).
 * dockerfiles/build.sh computes the same refs from FASTBUILD_BRANCH (test/dockerfiles/rules.test.ts
 * runs one table through both).
 */
export const DEFAULT_BRANCH = "main";

/** What a branch name may be when the builder gets it (the API's branchSchema says the same). */
export const BRANCH: Rule = {
  pattern: /^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$/,
  message: "letters, digits and . _ / - only (no spaces, quotes or shell characters), at most 200",
};

/** Longest branch part of a cache tag: `app-` and 100 characters stay far below a tag's 128. */
export const BRANCH_TAG_MAX = 100;

/**
 * A branch as the tail of a cache tag: lower case, each run of other characters than `a-z 0-9 . _ -`
 * (such as the `/` of `feature/x`) made one `-`, no `.`/`-` at either end, at most
 * {@link BRANCH_TAG_MAX} characters. Two branches that differ only there share a cache tag, which
 * costs cache hits, never a wrong image (BuildKit checks every layer's inputs). `""` when nothing is left.
 */
export function branchCacheTag(branch: string): string {
  const trim = (text: string) => text.replace(/^[.-]+/, "").replace(/[.-]+$/, "");
  return trim(trim(branch.toLowerCase().replace(/[^a-z0-9._-]+/g, "-")).slice(0, BRANCH_TAG_MAX));
}

export interface RegistryCacheRefs {
  /** Where the base stage reads its cache from and writes it to. */
  base: { from: string[]; to: string };
  /** The app stage: its own branch first, then the default branch. */
  app: { from: string[]; to: string };
}

/** The cache refs of a build (no branch: the default branch's). */
export function registryCacheRefs(options: {
  registry: string;
  repository: string;
  baseKey: string;
  branch?: string | undefined;
}): RegistryCacheRefs {
  const cache = `${options.registry}/${options.repository}-cache`;
  const own = branchCacheTag(options.branch ?? "") || DEFAULT_BRANCH;
  const app = [...new Set([own, DEFAULT_BRANCH])].map((tag) => `${cache}:app-${tag}`);
  const base = `${cache}:base-${options.baseKey}`;
  return { base: { from: [base], to: base }, app: { from: app, to: `${cache}:app-${own}` } };
}
