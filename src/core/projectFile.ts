/**
 * `fast-build.toml`, the project file at the project's root: the one schema (zod over smol-toml's
 * parse), read by `fast-build dev` and `plan`, written by `fast-build init`. A bad file is refused
 * with every problem at once, each naming its line and the fix: smol-toml gives the position of a
 * syntax error, and for a schema error the key's line is found in the text.
 */
import { parse, TomlError } from "smol-toml";
import { z } from "zod";
import { InvalidInputError } from "./errors.js";
import { MAX_BASE_KEY_FILES, portSchema, type ProjectSettings } from "./projectSettings.js";
import {
  BINARY_NAME,
  CARGO_FEATURE,
  CARGO_FEATURE_LIST,
  CARGO_PROFILE,
  CARGO_TARGET,
  PROJECT_PATH,
  ruleSchema,
} from "./rules.js";

/** The project file's name, at the project's root. */
export const PROJECT_FILE = "fast-build.toml";

/** The project file, read and checked (defaults filled in). */
export interface ProjectFile {
  build: { binary?: string; features: string[]; profile: string; target?: string };
  container: { port?: number };
  /** `base`/`app` both or neither: the project's own Dockerfiles (paths from the root). */
  docker: { base?: string; app?: string; baseKeyFiles: string[] };
}

const DEFAULT_PROFILE = "release";

/** Every table and key the file may have, with the fix told for a bad value. */
const FIELDS = {
  build: {
    binary: 'name the cargo binary, e.g. binary = "hello"',
    features: 'list cargo features, e.g. features = ["metrics"] (or features = [])',
    profile: 'name a cargo profile, e.g. profile = "release"',
    target:
      'name a target triple, e.g. target = "x86_64-unknown-linux-musl", or remove the line for the host\'s',
  },
  container: { port: "give the port the server listens on, 1-65535, e.g. port = 8080" },
  docker: {
    base: 'give the path from the project root, e.g. base = "Dockerfile.base"',
    app: 'give the path from the project root, e.g. app = "Dockerfile.app"',
    "base-key-files": 'list paths from the project root, e.g. base-key-files = ["package-lock.json"]',
  },
} as const;

type Table = keyof typeof FIELDS;

const distinct = (list: string[]) => new Set(list).size === list.length;

const fileSchema = z
  .object({
    build: z
      .object({
        binary: ruleSchema(BINARY_NAME).optional(),
        features: z
          .array(ruleSchema(CARGO_FEATURE))
          .max(50, "at most 50 features")
          .refine(distinct, "a feature is listed twice")
          .refine((list) => list.length === 0 || CARGO_FEATURE_LIST.pattern.test(list.join(",")), {
            message: `the features together must fit ${CARGO_FEATURE_LIST.message}`,
          })
          .default([]),
        profile: ruleSchema(CARGO_PROFILE).default(DEFAULT_PROFILE),
        target: ruleSchema(CARGO_TARGET).optional(),
      })
      .strict()
      .default({ features: [], profile: DEFAULT_PROFILE }),
    container: z.object({ port: portSchema.optional() }).strict().default({}),
    docker: z
      .object({
        base: ruleSchema(PROJECT_PATH).optional(),
        app: ruleSchema(PROJECT_PATH).optional(),
        "base-key-files": z
          .array(ruleSchema(PROJECT_PATH))
          .max(MAX_BASE_KEY_FILES, `at most ${MAX_BASE_KEY_FILES} files`)
          .refine(distinct, "a file is listed twice")
          .default([]),
      })
      .strict()
      .refine((d) => (d.base === undefined) === (d.app === undefined), {
        message:
          "give both base and app (the project's own pair of Dockerfiles), or neither for the built-in Rust ones",
      })
      .default({ "base-key-files": [] }),
  })
  .strict();

/** One problem of a project file: where, what, and what to do. */
export interface ProjectFileProblem {
  line?: number;
  key: string;
  message: string;
  fix: string;
}

/**
 * Parses and checks the text of a project file. Throws InvalidInputError (code
 * `InvalidProjectFile`) listing every problem as `fast-build.toml:LINE: key: problem` with its fix.
 */
export function parseProjectFile(text: string, path = PROJECT_FILE): ProjectFile {
  let data: unknown;
  try {
    data = parse(text);
  } catch (error) {
    const line = error instanceof TomlError ? error.line : undefined;
    const detail = error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error);
    throw projectFileError(path, [
      {
        ...(line !== undefined ? { line } : {}),
        key: "(syntax)",
        message: `not valid TOML: ${detail.replace(/^Invalid TOML document: /, "")}`,
        fix: "write key = value lines under [build], [container] and [docker] headers; strings in double quotes, lists in [ ]",
      },
    ]);
  }
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success)
    throw projectFileError(
      path,
      parsed.error.issues.map((i) => describeIssue(text, i)),
    );
  const { build, container, docker } = parsed.data;
  return {
    build: {
      features: build.features,
      profile: build.profile,
      ...(build.binary !== undefined ? { binary: build.binary } : {}),
      ...(build.target !== undefined ? { target: build.target } : {}),
    },
    container: container.port !== undefined ? { port: container.port } : {},
    docker: {
      baseKeyFiles: docker["base-key-files"],
      ...(docker.base !== undefined ? { base: docker.base } : {}),
      ...(docker.app !== undefined ? { app: docker.app } : {}),
    },
  };
}

/** What a build sends to the API for this project file (only the keys it sets, features when any). */
export function projectSettingsOf(file: ProjectFile): ProjectSettings {
  return {
    ...(file.build.binary !== undefined ? { binary: file.build.binary } : {}),
    ...(file.build.features.length > 0 ? { features: file.build.features } : {}),
    profile: file.build.profile,
    ...(file.build.target !== undefined ? { target: file.build.target } : {}),
    ...(file.container.port !== undefined ? { port: file.container.port } : {}),
    ...(file.docker.base !== undefined && file.docker.app !== undefined
      ? { dockerfiles: { base: file.docker.base, app: file.docker.app } }
      : {}),
  };
}

/** The file's text for these settings, as `fast-build init` writes it (parses back to the same). */
export function formatProjectFile(file: ProjectFile, comments: { detected?: string[] } = {}): string {
  const str = (value: string) => JSON.stringify(value);
  const list = (values: string[]) => `[${values.map(str).join(", ")}]`;
  const lines = [
    "# fast-build project file (`fast-build --help`; every key is described in fast-build's README).",
    ...(comments.detected ?? []).map((line) => `# ${line}`),
    "",
    "[build]",
    file.build.binary !== undefined
      ? `binary = ${str(file.build.binary)}`
      : '# binary = "NAME"          # the cargo binary the built-in Dockerfile.app packages',
    `features = ${list(file.build.features)}`,
    `profile = ${str(file.build.profile)}`,
    file.build.target !== undefined
      ? `target = ${str(file.build.target)}`
      : '# target = "x86_64-unknown-linux-musl"',
    "",
    "[container]",
    file.container.port !== undefined ? `port = ${file.container.port}` : "# port = 8080",
    "",
    "[docker]",
    ...(file.docker.base !== undefined && file.docker.app !== undefined
      ? [`base = ${str(file.docker.base)}`, `app = ${str(file.docker.app)}`]
      : [
          '# base = "Dockerfile.base"   # the project\'s own pair; without them, the built-in Rust ones',
          '# app = "Dockerfile.app"',
        ]),
    `base-key-files = ${list(file.docker.baseKeyFiles)}`,
    "",
  ];
  return lines.join("\n");
}

function projectFileError(path: string, problems: ProjectFileProblem[]): InvalidInputError {
  const lines = problems.map(
    (p) => `${path}${p.line !== undefined ? `:${p.line}` : ""}: ${p.key}: ${p.message}; fix: ${p.fix}`,
  );
  return new InvalidInputError(`${path} is invalid:\n  ${lines.join("\n  ")}`, {
    code: "InvalidProjectFile",
    hint: `Fix ${path} as said above (\`fast-build init --force\` writes a fresh one from what it detects).`,
  });
}

function describeIssue(text: string, issue: z.core.$ZodIssue): ProjectFileProblem {
  const path = issue.path.map(String);
  const [table, key] = path;
  if (issue.code === "unrecognized_keys") {
    const unknown = issue.keys[0] ?? "";
    const where = [...path, unknown];
    const known = table === undefined ? Object.keys(FIELDS) : Object.keys(FIELDS[table as Table] ?? {});
    const suggestion = suggest(unknown, known);
    const elsewhere =
      table === undefined
        ? (Object.keys(FIELDS) as Table[]).find((t) => Object.hasOwn(FIELDS[t], unknown))
        : undefined;
    const line = lineOf(text, where);
    return {
      ...(line !== undefined ? { line } : {}),
      key: where.join("."),
      message: `unknown ${table === undefined ? (isTableHeader(text, unknown) ? "table" : "key") : "key"}${issue.keys.length > 1 ? ` (also ${issue.keys.slice(1).join(", ")})` : ""}`,
      fix:
        elsewhere !== undefined
          ? `put ${unknown} under [${elsewhere}]`
          : suggestion !== undefined
            ? `did you mean ${suggestion}? (${table === undefined ? "tables" : `keys of [${table}]`}: ${known.join(", ")})`
            : `remove it (${table === undefined ? "tables" : `keys of [${table}]`}: ${known.join(", ")})`,
    };
  }
  const line = lineOf(text, path);
  const field =
    table !== undefined && key !== undefined && Object.hasOwn(FIELDS, table)
      ? (FIELDS[table as Table] as Record<string, string>)[key]
      : undefined;
  const message =
    issue.code === "invalid_type"
      ? `expected ${issue.expected === "object" ? "a table" : issue.expected}`
      : issue.message;
  const pair = issue.code === "custom" && table === "docker" && key === undefined;
  return {
    ...(line !== undefined ? { line } : {}),
    key: path.length > 0 ? path.join(".") : "(file)",
    message,
    fix: pair
      ? 'add the missing one (base = "Dockerfile.base" and app = "Dockerfile.app"), or remove both'
      : (field ??
        (table !== undefined && Object.hasOwn(FIELDS, table)
          ? `write [${table}] as a table: ${Object.keys(FIELDS[table as Table]).join(", ")}`
          : "see the README's fast-build.toml section")),
  };
}

/** The closest known name within two edits (case and `_`/`-` ignored), if any. */
function suggest(name: string, known: string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/_/g, "-");
  let best: { name: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = editDistance(norm(name), norm(candidate));
    if (distance <= 2 && (best === undefined || distance < best.distance))
      best = { name: candidate, distance };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

const HEADER = /^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(#.*)?$/;
const KEY = /^\s*("?)([A-Za-z0-9_.-]+)\1\s*=/;

function isTableHeader(text: string, name: string): boolean {
  return text.split(/\r?\n/).some((l) => HEADER.exec(l)?.[1] === name);
}

/**
 * The 1-based line of `path` (`[table]` or `table.key`, array indexes ignored) in the file's text:
 * the key's `key =` line under its `[table]` header (or a dotted `table.key =`), else the header.
 */
export function lineOf(text: string, path: readonly string[]): number | undefined {
  const [table, key] = path;
  if (table === undefined) return undefined;
  const lines = text.split(/\r?\n/);
  let current: string | undefined;
  let header: number | undefined;
  for (const [index, line] of lines.entries()) {
    const h = HEADER.exec(line);
    if (h) {
      current = h[1];
      if (current === table && header === undefined) header = index + 1;
      continue;
    }
    const k = KEY.exec(line);
    if (!k) continue;
    const name = k[2] ?? "";
    if (current === undefined) {
      if (name === table && key === undefined) return index + 1;
      if (key !== undefined && name === `${table}.${key}`) return index + 1;
    } else if (current === table && key !== undefined && name === key) {
      return index + 1;
    }
  }
  return header;
}
