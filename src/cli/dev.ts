/**
 * `fast-build dev`: archive → start the build → upload → "source complete" → follow until the
 * build ends. Bad input is refused before anything is sent; once the server has started the build,
 * a failure before the upload is complete cancels it so it does not wait for a source that never
 * comes.
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Writable } from "node:stream";
import { promisify } from "node:util";
import { uploadFileToSas } from "../azure/storageUpload.js";
import type { CliSettings } from "../config/cli.js";
import type { StartBuildRequest, StartBuildResponse } from "../core/api.js";
import { startBuildRequestSchema } from "../core/api.js";
import { computeBaseKey, KIT_DIR_IN_ARCHIVE, recipeFiles, RECIPE_DIR_IN_ARCHIVE } from "../core/baseKey.js";
import { InvalidInputError, PermanentError } from "../core/errors.js";
import { ApiClient } from "./apiClient.js";
import { createArchive, formatBytes, sourceTooLarge, type SourceArchive } from "./archive.js";
import type { DevFlags } from "./args.js";
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
  const kit = await readBuildKit();
  const { key: baseKey, recipe } = await computeBaseKey(root, { dockerfileBase: kit.dockerfileBase });
  out.status("archiving the source tree");
  // The recipe and the Dockerfiles travel inside the archive, so the builder compiles the
  // dependency base from exactly what the key was computed over (see src/core/baseKey.ts); the
  // builder VM keeps no Dockerfiles of its own.
  const archive = await createArchive(root, {
    generated: [
      { prefix: RECIPE_DIR_IN_ARCHIVE, files: recipeFiles(recipe) },
      {
        prefix: KIT_DIR_IN_ARCHIVE,
        files: [
          { path: "Dockerfile.app", content: kit.dockerfileApp },
          { path: "Dockerfile.base", content: kit.dockerfileBase },
        ],
      },
    ],
  });
  try {
    out.line(
      `archived ${archive.fileCount} files (${formatBytes(archive.contentBytes)} → ${formatBytes(archive.bytes)}, ${archive.mode === "git" ? "git" : ".gitignore"} file list) ${archive.digest}`,
    );
    if (archive.skipped.length > 0) out.line(`  left out (not regular files): ${archive.skipped.join(", ")}`);
    const request = await buildRequest(root, archive, baseKey, opts);
    if (opts.interrupt.aborted) return EXIT.interrupted;

    const api = new ApiClient({ baseUrl: opts.settings.apiUrl, apiKey: opts.settings.apiKey });
    out.status("starting the build");
    const started = await api.startBuild(request);
    out.line(`build ${started.buildId} started for ${request.environment}`);
    try {
      await upload(api, started, archive, opts);
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
    await archive.dispose();
  }
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

async function buildRequest(
  root: string,
  archive: SourceArchive,
  baseKey: string,
  opts: DevRun,
): Promise<StartBuildRequest> {
  const git = archive.mode === "git" ? await gitInfo(root) : {};
  if (git.branch !== undefined && !startBuildRequestSchema.shape.branch.safeParse(git.branch).success) {
    // The server refuses odd ref names (they travel to the VM); the build does not need it.
    opts.out.line(`  note: branch name ${JSON.stringify(git.branch)} is not sent (unusual characters)`);
    delete git.branch;
  }
  const parsed = startBuildRequestSchema.safeParse({
    environment: opts.settings.environment,
    ...git,
    sourceDigest: archive.digest,
    sourceBytes: archive.bytes,
    baseKey,
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

async function gitInfo(root: string): Promise<{ commit?: string; branch?: string }> {
  const git = (...args: string[]) =>
    run("git", ["-C", root, ...args]).then(
      ({ stdout }) => stdout.trim() || undefined,
      // A repository without commits has neither: both are optional.
      () => undefined,
    );
  const commit = await git("rev-parse", "HEAD");
  const branch = await git("rev-parse", "--abbrev-ref", "HEAD");
  return {
    ...(commit ? { commit } : {}),
    ...(branch && branch !== "HEAD" ? { branch } : {}),
  };
}

async function upload(api: ApiClient, started: StartBuildResponse, archive: SourceArchive, opts: DevRun) {
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
