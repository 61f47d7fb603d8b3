/**
 * `fast-build dev`: hash the tree into a manifest → start the build with it (or with its change
 * from the last one) → upload the contents the store lacks → "source complete" → follow until the
 * build ends; with `--archive` (or an API without manifests), one archive of the whole tree. Bad
 * input is refused before anything is sent; once the server has started the build, a failure
 * before the upload is complete cancels it so it does not wait for a source that never comes.
 */
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import type { Writable } from "node:stream";
import { promisify } from "node:util";
import { uploadFileToSas } from "../azure/storageUpload.js";
import type { CliSettings } from "../config/cli.js";
import type { Author, StartBuildRequest, StartBuildResponse } from "../core/api.js";
import { authorSchema, startBuildRequestSchema } from "../core/api.js";
import { FastBuildError, InvalidInputError, PermanentError } from "../core/errors.js";
import { diffManifests } from "../core/sourceManifest.js";
import { ApiClient } from "./apiClient.js";
import { createArchive, formatBytes, sourceTooLarge, type SourceArchive } from "./archive.js";
import type { DevFlags } from "./args.js";
import type { ProjectSettings } from "../core/projectSettings.js";
import { readBuildInputs } from "./buildInputs.js";
import { createManifest } from "./manifest.js";
import { ManifestCache } from "./manifestCache.js";
import { uploadPacks } from "./packs.js";
import type { GeneratedFiles } from "./sourceTree.js";
import { EXIT, exitCodeForPhase, followBuild, writeJson } from "./follow.js";
import type { Output } from "./progress.js";
import { renderSummary } from "./render.js";

const run = promisify(execFile);

export { EXIT };

export interface DevRun {
  settings: CliSettings;
  flags: Omit<DevFlags, "env" | "api">;
  /** The folder to use when `--dir` is not given. */
  cwd: string;
  /** Human progress (stderr when `--json`). */
  out: Output;
  /** Where `--json` writes the final status. */
  stdout: Writable;
  /** Aborted on Ctrl-C: the build is cancelled on the server and the command ends. */
  interrupt: AbortSignal;
  pollIntervalMs?: number;
}

/** Runs the command; resolves to the exit code. Throws typed errors for bad input and API failures. */
export async function runDev(opts: DevRun): Promise<number> {
  const startedAt = Date.now();
  const { out, flags } = opts;
  const root = resolve(opts.cwd, flags.dir ?? ".");

  out.status("reading the dependency recipe");
  const { baseKey, generated, project } = await readBuildInputs(root);
  const api = new ApiClient({ baseUrl: opts.settings.apiUrl, apiKey: opts.settings.apiKey });
  let source = flags.archive
    ? await archiveSource(root, generated, out)
    : await manifestSource(root, generated, opts);
  try {
    let started: StartBuildResponse | undefined;
    while (!started) {
      const request = await buildRequest(root, source, baseKey, project, opts);
      if (opts.interrupt.aborted) return EXIT.interrupted;
      out.status("starting the build");
      try {
        started = await source.start(api, request);
      } catch (error) {
        if (isProjectUnsupported(error)) {
          // Not sent without it: building the project's way or not at all, never silently otherwise.
          throw new InvalidInputError(
            "the function app does not know fast-build.toml's settings (an older version)",
            {
              code: "ProjectUnsupported",
              hint: "Deploy the current fast-build function app (azd deploy), or remove fast-build.toml to build as before (the built-in Dockerfiles and the environment's binaryName).",
              cause: error,
            },
          );
        }
        if (source.kind !== "manifest" || !isManifestUnsupported(error)) throw error;
        // A function app from before content-addressed source: the archive still works.
        out.line("  note: the function app takes no manifest (an older version); sending an archive instead");
        await source.dispose();
        source = await archiveSource(root, generated, out);
      }
    }
    out.line(`build ${started.buildId} started for ${opts.settings.environment}`);
    try {
      await source.upload(api, started, opts);
    } catch (error) {
      await cancelQuietly(api, started, out);
      if (opts.interrupt.aborted) return EXIT.interrupted;
      throw error;
    }
    if (!flags.follow) {
      out.line(`following skipped (--no-follow): status at ${opts.settings.apiUrl}${started.statusUrl}`);
      if (flags.json) writeJson(opts.stdout, await api.status(started.statusUrl));
      return EXIT.ok;
    }
    const final = await followBuild(api, started, {
      apiUrl: opts.settings.apiUrl,
      out,
      interrupt: opts.interrupt,
      ...(opts.pollIntervalMs !== undefined ? { pollIntervalMs: opts.pollIntervalMs } : {}),
    });
    if (final === "interrupted") {
      await cancelQuietly(api, started, out);
      return EXIT.interrupted;
    }
    out.stop();
    for (const line of renderSummary(final, { elapsedMs: Date.now() - startedAt })) out.line(line);
    if (flags.json) writeJson(opts.stdout, final);
    return exitCodeForPhase(final.phase);
  } finally {
    out.stop();
    await source.dispose();
  }
}

/** The tree on its way: how the build is started with it, and how its bytes follow. */
interface Source {
  kind: "archive" | "manifest";
  digest: string;
  mode: "git" | "gitignore";
  /** Bytes of the archive, when the server can check them up front. */
  bytes?: number;
  start(api: ApiClient, request: StartBuildRequest): Promise<StartBuildResponse>;
  upload(api: ApiClient, started: StartBuildResponse, opts: DevRun): Promise<void>;
  dispose(): Promise<void>;
}

/** One deterministic tar.gz of the whole tree (`--archive`, and function apps without manifests). */
async function archiveSource(
  root: string,
  generated: readonly GeneratedFiles[],
  out: Output,
): Promise<Source> {
  out.status("archiving the source tree");
  const archive = await createArchive(root, { generated });
  out.line(
    `archived ${archive.fileCount} files (${formatBytes(archive.contentBytes)} → ${formatBytes(archive.bytes)}, ${fileList(archive.mode)}) ${archive.digest}`,
  );
  if (archive.skipped.length > 0) out.line(`  left out (not regular files): ${archive.skipped.join(", ")}`);
  return {
    kind: "archive",
    digest: archive.digest,
    mode: archive.mode,
    bytes: archive.bytes,
    start: (api, request) => api.startBuild(request),
    upload: (api, started, opts) => uploadArchive(api, started, archive, opts),
    dispose: () => archive.dispose(),
  };
}

/**
 * The tree's manifest, sent as its change from the last one this API and environment accepted
 * from here when the store still has that one (`BaseManifestUnknown` otherwise: then whole); then
 * only the contents the store lacks, in the packs the API planned.
 */
async function manifestSource(
  root: string,
  generated: readonly GeneratedFiles[],
  opts: DevRun,
): Promise<Source> {
  const { out } = opts;
  out.status("hashing the source tree");
  const tree = await createManifest(root, { generated });
  out.line(
    `hashed ${tree.fileCount} files (${formatBytes(tree.contentBytes)}, ${fileList(tree.mode)}) ${tree.digest}`,
  );
  if (tree.skipped.length > 0) out.line(`  left out (not regular files): ${tree.skipped.join(", ")}`);
  const cache = new ManifestCache(opts.settings.cacheDir, opts.settings.apiUrl, opts.settings.environment);
  return {
    kind: "manifest",
    digest: tree.digest,
    mode: tree.mode,
    async start(api, request) {
      const known = await cache.last();
      const delta = known && diffManifests(known.manifest, tree.manifest, known.digest);
      let started: StartBuildResponse | undefined;
      if (delta && JSON.stringify(delta).length < JSON.stringify(tree.manifest).length) {
        try {
          started = await api.startBuild({ ...request, manifestDelta: delta });
        } catch (error) {
          if (!(error instanceof FastBuildError && error.code === "BaseManifestUnknown")) throw error;
          out.line("  note: the store no longer has this tree's last manifest; sending it whole");
        }
      }
      started ??= await api.startBuild({ ...request, manifest: tree.manifest });
      await cache.remember(tree.manifest);
      return started;
    },
    async upload(api, started, { interrupt }) {
      const contents = started.contents;
      if (!contents) {
        throw new PermanentError("the API did not say which contents to upload", {
          code: "UnexpectedAnswer",
        });
      }
      let sent = 0;
      if (contents.packs.length > 0) {
        out.status(`uploading ${contents.missing} files' contents (${formatBytes(contents.missingBytes)})`);
        sent = await uploadPacks(tree, contents, {
          signal: interrupt,
          onProgress: (bytes) => out.status(`uploading ${formatBytes(bytes)} of packs`),
        });
      }
      await api.sourceComplete(started.sourceCompleteUrl);
      const total = contents.missing + contents.stored;
      out.line(
        contents.missing === 0
          ? `nothing to upload: the store has all ${total} contents`
          : `uploaded ${contents.missing} of ${total} contents (${formatBytes(sent)} in ${contents.packs.length} pack${contents.packs.length === 1 ? "" : "s"})`,
      );
    },
    dispose: () => Promise.resolve(),
  };
}

function fileList(mode: "git" | "gitignore"): string {
  return mode === "git" ? "git file list" : ".gitignore file list";
}

/** An API that predates the project file refuses its field by name, as it refuses any unknown one. */
function isProjectUnsupported(error: unknown): boolean {
  return (
    error instanceof InvalidInputError &&
    error.code === "InvalidRequest" &&
    /unrecognized key/i.test(error.message) &&
    /"project"/.test(error.message)
  );
}

/** An API that predates manifests refuses the unknown field by name (src/functions/http.ts parseWith). */
function isManifestUnsupported(error: unknown): boolean {
  return (
    error instanceof InvalidInputError &&
    error.code === "InvalidRequest" &&
    /unrecognized key/i.test(error.message) &&
    /\bmanifest(Delta)?\b/.test(error.message)
  );
}

async function buildRequest(
  root: string,
  source: Source,
  baseKey: string,
  project: ProjectSettings | undefined,
  opts: DevRun,
): Promise<StartBuildRequest> {
  const git = source.mode === "git" ? await gitInfo(root) : {};
  if (git.branch !== undefined && !startBuildRequestSchema.shape.branch.safeParse(git.branch).success) {
    // The server refuses odd ref names (they travel to the VM); the build does not need it.
    opts.out.line(`  note: branch name ${JSON.stringify(git.branch)} is not sent (unusual characters)`);
    delete git.branch;
  }
  const parsed = startBuildRequestSchema.safeParse({
    environment: opts.settings.environment,
    ...git,
    sourceDigest: source.digest,
    ...(source.bytes !== undefined ? { sourceBytes: source.bytes } : {}),
    baseKey,
    // The project file's settings (fast-build.toml); without one, the request is as before.
    ...(project ? { project } : {}),
    options: { rebuildBase: opts.flags.rebuildBase, deploy: opts.flags.deploy },
  });
  if (!parsed.success) {
    throw new InvalidInputError(
      `cannot start a build: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
      { code: "InvalidBuildRequest", hint: "Check --env and the repository state." },
    );
  }
  return parsed.data;
}

/**
 * Who builds what, for the build history: the commit and branch, whether the tree differs from
 * the commit (tracked changes or untracked files, which the build sends too), and `git config`'s
 * user.name / user.email. Each is optional: git runs with arguments (execFile), never a shell string.
 */
async function gitInfo(
  root: string,
): Promise<{ commit?: string; branch?: string; dirty?: boolean; author?: Author }> {
  const git = (...args: string[]) =>
    run("git", ["-C", root, ...args]).then(
      ({ stdout }) => stdout.trim() || undefined,
      // A repository without commits has neither: both are optional.
      () => undefined,
    );
  const [commit, branch, status, name, email] = await Promise.all([
    git("rev-parse", "HEAD"),
    git("rev-parse", "--abbrev-ref", "HEAD"),
    run("git", ["-C", root, "status", "--porcelain"]).then(
      ({ stdout }) => stdout.trim() !== "",
      () => undefined,
    ),
    git("config", "user.name"),
    git("config", "user.email"),
  ]);
  // A name or address the API would refuse is left out rather than failing the build.
  const author = authorSchema.safeParse({
    ...(name ? { name } : {}),
    ...(email ? { email } : {}),
  });
  const known = author.success && Object.keys(author.data).length > 0 ? author.data : undefined;
  return {
    ...(commit ? { commit } : {}),
    ...(branch && branch !== "HEAD" ? { branch } : {}),
    ...(commit && status !== undefined ? { dirty: status } : {}),
    ...(known ? { author: known } : {}),
  };
}

async function uploadArchive(
  api: ApiClient,
  started: StartBuildResponse,
  archive: SourceArchive,
  opts: DevRun,
) {
  const { out } = opts;
  const target = started.upload;
  if (!target)
    throw new PermanentError("the API did not answer with an upload URL", { code: "UnexpectedAnswer" });
  if (archive.bytes > target.maxBytes) {
    throw sourceTooLarge(archive.bytes, target.maxBytes);
  }
  out.status(`uploading ${formatBytes(archive.bytes)}`);
  await uploadFileToSas(archive.path, target.url, {
    md5: archive.md5,
    signal: opts.interrupt,
    onProgress: (bytes) => out.status(`uploading ${formatBytes(bytes)} / ${formatBytes(archive.bytes)}`),
  });
  await api.sourceComplete(started.sourceCompleteUrl);
  out.line(`uploaded ${formatBytes(archive.bytes)}`);
}

async function cancelQuietly(api: ApiClient, started: StartBuildResponse, out: Output): Promise<void> {
  out.status("cancelling the build");
  try {
    await api.cancel(started.cancelUrl);
    out.line(`build ${started.buildId}: cancel requested`);
  } catch (error) {
    out.line(
      `could not cancel build ${started.buildId}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}
