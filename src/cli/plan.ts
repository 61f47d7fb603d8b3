/**
 * `fast-build plan` (and `dev --dry-run`): what `dev` would send and build, computed by the same
 * functions `dev` runs (src/cli/buildInputs.ts, createManifest, createArchive), offline: the files
 * and bytes, the largest files, what was left out and why, the source digest, the base key and
 * what it covers. With `--api` (plan only), one read-only request asks whether the environment's
 * registry has the source's image or the base image, and so what the build would do.
 *
 * `archiveBytes` is the compressed size of the whole tree as one archive: exactly what `--archive`
 * sends, and about the most a manifest build sends (its packs are the gzip of the contents the
 * store lacks: all of them for a store that has none). The archive is written to a temporary
 * folder and deleted; it costs a compression of the tree, which `plan` is there to measure.
 */
import type { Writable } from "node:stream";
import type { ImagesResponse } from "../core/api.js";
import type { BaseKeyCoverage } from "../core/baseKey.js";
import { baseOutcome } from "../orchestration/registryFirst.js";
import type { CliSettings } from "../config/cli.js";
import { ApiClient } from "./apiClient.js";
import { createArchive, formatBytes } from "./archive.js";
import type { ProjectSettings } from "../core/projectSettings.js";
import { readBuildInputs, type BuildInputs } from "./buildInputs.js";
import { EXIT, writeJson } from "./follow.js";
import { createManifest } from "./manifest.js";
import type { Output } from "./progress.js";
import type { LeftOut, LeftOutReason, SourceFileList } from "./sourceTree.js";

/** How many of the largest files the plan names. */
export const LARGEST_FILES = 10;

export interface PlanRun {
  root: string;
  /** Plan the one-archive upload (`--archive`): its digest is the source digest. */
  archive: boolean;
  rebuildBase: boolean;
  json: boolean;
  /** Ask this API about this environment's registry; undefined: offline, no request at all. */
  ask?: Pick<CliSettings, "apiUrl" | "apiKey" | "environment">;
  /** Human output (stderr when `--json`). */
  out: Output;
  stdout: Writable;
}

/** What `plan --json` prints. */
export interface DevPlan {
  root: string;
  /** Who chose the files: git, or the `.gitignore` files of a tree outside git. */
  fileList: SourceFileList["mode"];
  /** How the tree would travel: its manifest and the contents the store lacks, or one archive. */
  sends: "manifest" | "archive";
  /** The build's source digest: the manifest's digest, or with `--archive` the archive's. */
  sourceDigest: string;
  baseKey: string;
  baseKeyCovers: BaseKeyCoverage;
  /** Files and symlinks sent, the generated ones included. */
  files: number;
  /** Their contents' bytes, uncompressed. */
  contentBytes: number;
  /** The whole tree as one compressed archive (see the module comment). */
  archiveBytes: number;
  /** The manifest's bytes, as a first build sends it (later builds send only its change). */
  manifestBytes?: number;
  largest: { path: string; bytes: number }[];
  /** Added by fast-build: the recipe and Dockerfiles the base key is computed over. */
  generated: string[];
  /** The project file's settings, as the build sends them (absent without fast-build.toml). */
  project?: ProjectSettings;
  /** Which Dockerfiles build it: the project's own (their paths in the tree) or the built-in Rust pair. */
  dockerfiles: BuildInputs["dockerfiles"];
  leftOut: LeftOut;
  registry?: RegistryPlan;
}

export interface RegistryPlan {
  environment: string;
  sourceImage: ImagesResponse["sourceImage"];
  baseImage: ImagesResponse["baseImage"];
  /** What the build would do: nothing on the builder, the app layer only, or the base first. */
  action: "skip" | "base-hit" | "base-miss";
  message: string;
  expected?: string;
}

/** Computes the plan of the tree at `root` offline (no request). */
export async function planSource(root: string, opts: { archive: boolean }): Promise<DevPlan> {
  const inputs = await readBuildInputs(root);
  const tree = await createManifest(root, { generated: inputs.generated, explain: true });
  const archive = await createArchive(root, { generated: inputs.generated });
  await archive.dispose();
  const files = tree.manifest.entries.flatMap((e) =>
    e.type === "file" ? [{ path: e.path, bytes: e.size }] : [],
  );
  const largest = files
    .sort((a, b) => b.bytes - a.bytes || (a.path < b.path ? -1 : 1))
    .slice(0, LARGEST_FILES);
  return {
    root,
    fileList: tree.mode,
    sends: opts.archive ? "archive" : "manifest",
    sourceDigest: opts.archive ? archive.digest : tree.digest,
    baseKey: inputs.baseKey,
    baseKeyCovers: inputs.covers,
    files: tree.fileCount,
    contentBytes: tree.contentBytes,
    archiveBytes: archive.bytes,
    ...(opts.archive ? {} : { manifestBytes: Buffer.byteLength(JSON.stringify(tree.manifest)) }),
    largest,
    generated: inputs.generated.flatMap((group) => group.files.map((f) => `${group.prefix}/${f.path}`)),
    leftOut: tree.leftOut ?? {},
    ...(inputs.project ? { project: inputs.project } : {}),
    dockerfiles: inputs.dockerfiles,
  };
}

/** Runs `fast-build plan`; resolves to the exit code. */
export async function runPlan(opts: PlanRun): Promise<number> {
  const { out } = opts;
  out.status("planning: hashing and archiving the source tree");
  const plan = await planSource(opts.root, { archive: opts.archive });
  if (opts.ask) {
    out.status(`asking ${opts.ask.apiUrl} what the registry has`);
    const api = new ApiClient({ baseUrl: opts.ask.apiUrl, apiKey: opts.ask.apiKey });
    const found = await api.images(opts.ask.environment, plan.sourceDigest, plan.baseKey);
    plan.registry = registryPlan(found, opts.rebuildBase);
  }
  out.stop();
  for (const line of renderPlan(plan)) out.line(line);
  if (opts.json) writeJson(opts.stdout, plan);
  return EXIT.ok;
}

/** What the build would do, by the orchestrator's own rule (src/orchestration/registryFirst.ts). */
export function registryPlan(found: ImagesResponse, rebuildBase: boolean): RegistryPlan {
  const base = baseOutcome({ base: found.baseImage.digest }, rebuildBase);
  const action = found.sourceImage.state === "present" ? "skip" : base === "hit" ? "base-hit" : "base-miss";
  const expected = action === "skip" ? undefined : found.expected?.[base].text;
  const message =
    action === "skip"
      ? `skipped: the registry has this source's image (${found.sourceImage.reference}); the builder is not touched`
      : action === "base-hit"
        ? "base hit: app layer only"
        : `base miss: builds the base first${rebuildBase && found.baseImage.state === "present" ? " (--rebuild-base)" : ""}`;
  return {
    environment: found.environment,
    sourceImage: found.sourceImage,
    baseImage: found.baseImage,
    action,
    message,
    ...(expected !== undefined ? { expected } : {}),
  };
}

const REASONS: Record<LeftOutReason, string> = {
  gitignored: "ignored (.gitignore)",
  "cargo-target": "cargo build output (target/)",
  "git-dir": "git's own folder (.git)",
  "submodule-not-checked-out": "submodule not checked out",
  "nested-repository": "untracked nested repository",
  "not-a-regular-file": "not a regular file",
  "replaced-by-generated": "replaced by fast-build's generated files",
};

/** The project file's settings in one line. */
function projectLine(plan: DevPlan): string {
  const p = plan.project;
  if (!p) return "no fast-build.toml (the environment's binary; `fast-build init` writes one)";
  return [
    `fast-build.toml: binary ${p.binary ?? (p.dockerfiles ? "none (the Dockerfiles decide)" : "(the environment's)")}`,
    `profile ${p.profile ?? "release"}`,
    ...(p.features?.length ? [`features ${p.features.join(",")}`] : []),
    ...(p.target ? [`target ${p.target}`] : []),
    `port ${p.port ?? "(not set)"}`,
  ].join(", ");
}

/** The plan as text, for a person. */
export function renderPlan(plan: DevPlan): string[] {
  const lines = [
    `plan for ${plan.root} (${plan.fileList === "git" ? "git file list" : ".gitignore file list"})`,
    `  files:        ${plan.files} (${formatBytes(plan.contentBytes)}), ${plan.generated.length} of them generated by fast-build`,
    plan.sends === "manifest"
      ? `  sends:        manifest (${formatBytes(plan.manifestBytes ?? 0)}) and only the contents the store lacks: at most ${formatBytes(plan.archiveBytes)} compressed`
      : `  sends:        one archive of ${formatBytes(plan.archiveBytes)}`,
    `  source:       ${plan.sourceDigest}${plan.sends === "archive" ? " (the archive's digest)" : " (the manifest's digest)"}`,
    `  project:      ${projectLine(plan)}`,
    `  dockerfiles:  ${plan.dockerfiles.source === "project" ? `the project's own: ${plan.dockerfiles.base}, ${plan.dockerfiles.app}` : "built-in (Rust)"}`,
    `  base key:     ${plan.baseKey}`,
    `    covers:     ${[...plan.baseKeyCovers.files, plan.dockerfiles.source === "project" ? plan.dockerfiles.base : "Dockerfile.base"].join(", ")}; profile ${plan.baseKeyCovers.settings.profile}, target ${plan.baseKeyCovers.settings.target ?? "host"}, toolchain ${plan.baseKeyCovers.settings.toolchain ?? "Dockerfile.base's default"}`,
    `  largest files:`,
    ...plan.largest.map((f) => `    ${formatBytes(f.bytes).padStart(10)}  ${f.path}`),
  ];
  const reasons = Object.entries(plan.leftOut) as [LeftOutReason, { count: number; examples: string[] }][];
  if (reasons.length === 0) lines.push("  left out:     nothing");
  else {
    lines.push("  left out:");
    for (const [reason, { count, examples }] of reasons) {
      const more = count > examples.length ? `, … ${count - examples.length} more` : "";
      lines.push(`    ${REASONS[reason]}: ${count} (${examples.join(", ")}${more})`);
    }
  }
  if (plan.registry) {
    const r = plan.registry;
    lines.push(
      `  registry (${r.environment}): source image ${r.sourceImage.state}, base image ${r.baseImage.state}`,
      `  the build:    ${r.message}${r.expected ? `; expected: ${r.expected}` : ""}`,
    );
  } else {
    lines.push("  registry:     not asked (offline; `fast-build plan --api URL --env NAME` asks)");
  }
  return lines;
}
