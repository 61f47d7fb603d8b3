/**
 * The one machine-readable line the builder's script prints last (and posts to the callback):
 * `{"fastbuild":"result","version":1,...}`. Versioned so the VM script and the functions can be
 * upgraded separately.
 *
 * The printed line stays under {@link RESULT_LINE_MAX_BYTES}: when the callback is lost, the
 * orchestrator reads it from the run command's instance view, which keeps only the last 4 KB of
 * output. So it carries no log tail and bounded texts; the callback's POST of the same result adds
 * the log tail (the log blob has the whole log).
 */
import { z } from "zod";

export const BUILD_RESULT_VERSION = 1;

/** build.sh keeps its printed result line this short (a quarter of the instance view's 4 KB). */
export const RESULT_LINE_MAX_BYTES = 1000;

/** Documented exit codes of dockerfiles/build.sh, one per failure class. */
export const EXIT_CODES = {
  ok: 0,
  /** An unexpected failure inside the script itself (a bug); exitReason `internal`. */
  internal: 1,
  usage: 2,
  download: 10,
  extract: 11,
  login: 12,
  /** The archive has no `.fastbuild/kit/` Dockerfiles (and the builder overrides none). */
  kit: 13,
  /** The builder's setup (cloud-init's ready marker, then its tools) did not finish in time. */
  notReady: 14,
  baseBuild: 20,
  appBuild: 21,
  push: 22,
} as const;

export const buildResultSchema = z.object({
  fastbuild: z.literal("result"),
  version: z.literal(BUILD_RESULT_VERSION),
  buildId: z.string(),
  status: z.enum(["succeeded", "failed"]),
  /**
   * `ok`, or the failure class: usage, not-ready, login, download, extract, kit, base-build,
   * app-build, push, internal.
   */
  exitReason: z.string(),
  exitCode: z.number().int(),
  failedStep: z.string().optional(),
  /** The Dockerfile instruction that failed, as the container CLI logged it (`STEP 4/6: RUN …`). */
  failedInstruction: z.string().optional(),
  /** Exit status of the failing command inside the build (e.g. the compiler's), when known. */
  stepExitCode: z.number().int().optional(),
  /** Full image reference pushed (or found, when skipped). */
  image: z.string().optional(),
  digest: z.string().optional(),
  baseKey: z.string().optional(),
  baseImage: z.string().optional(),
  baseCacheHit: z.boolean().optional(),
  /** Tags pushed for the app image: build id, `commit-<sha>`, `src-<source digest hex>`. */
  tags: z.array(z.string()).optional(),
  /** The registry already had an image for this source digest: nothing was built. */
  skipped: z.boolean(),
  message: z.string().optional(),
  /** Only in the callback's POST (bounded); never in the printed line. */
  logTail: z.array(z.string()).optional(),
  /** Milliseconds per step, e.g. download, extract, base, app, push. */
  timings: z.record(z.string(), z.number()),
});
export type BuildResult = z.infer<typeof buildResultSchema>;

/** Finds and validates the result line in a script's output (the last one wins). */
export function parseBuildResult(output: string): BuildResult | undefined {
  const lines = output.split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]?.trim();
    if (!line?.startsWith("{") || !line.includes('"fastbuild"')) continue;
    try {
      const parsed = buildResultSchema.safeParse(JSON.parse(line));
      if (parsed.success) return parsed.data;
    } catch {
      // Not JSON after all (a log line that starts with a brace): keep looking.
    }
  }
  return undefined;
}

/**
 * What the script POSTs to the callback URL every FASTBUILD_HEARTBEAT_SECONDS while it runs
 * (header `x-fastbuild-token`); the final POST is the result line itself.
 */
export const buildHeartbeatSchema = z.object({
  fastbuild: z.literal("heartbeat"),
  version: z.literal(BUILD_RESULT_VERSION),
  buildId: z.string(),
  /** The script's current step: setup (waiting for cloud-init), login, check, download, extract, base, app, push. */
  step: z.string().max(80),
  elapsedMs: z.number().int().nonnegative(),
});
export type BuildHeartbeat = z.infer<typeof buildHeartbeatSchema>;
