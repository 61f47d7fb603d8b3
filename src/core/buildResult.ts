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

/**
 * How much of each builder-reported field the functions keep (issue 14). Everything the builder
 * sends enters history and the published status, so every field is bounded where it enters.
 * Texts shown to people are cut (with an ellipsis): build.sh posts up to 40 lines of 500
 * characters and a 4,000-character message, more than is shown. Values something acts on (an
 * image reference the deploy pulls, a digest, a cache key, tags) are refused when too long,
 * since a cut one would name something else; so is a timings map no script of ours writes.
 */
export const RESULT_LIMITS = {
  /** Log lines kept (the last ones) and characters per line: the status's log tail. */
  logTailLines: 20,
  logLineChars: 300,
  messageChars: 1000,
  failedInstructionChars: 500,
  /** Step and reason names are short words (build.sh: `app`, `app-build`). */
  nameChars: 40,
  /** A registry host, repository and tag or digest (Docker's own name limit is 255). */
  referenceChars: 512,
  tags: 16,
  /** build.sh records one timing per step (about ten). */
  timings: 32,
} as const;

/** `text` cut to `max` UTF-16 units plus an ellipsis; never splits a surrogate pair. */
export function truncateText(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = /[\ud800-\udbff]/.test(text.charAt(max - 1)) ? max - 1 : max;
  return `${text.slice(0, cut)}…`;
}

const shownText = (max: number) => z.string().transform((text) => truncateText(text, max));
const reference = (what: string) =>
  z
    .string()
    .max(RESULT_LIMITS.referenceChars, `${what} longer than ${RESULT_LIMITS.referenceChars} characters`);
const name = shownText(RESULT_LIMITS.nameChars);

/** The last lines of a log, each cut to the line limit (what the status shows). */
export function tailLines(lines: readonly string[]): string[] {
  return lines
    .slice(-RESULT_LIMITS.logTailLines)
    .map((line) => truncateText(line, RESULT_LIMITS.logLineChars));
}

export const buildResultSchema = z.object({
  fastbuild: z.literal("result"),
  version: z.literal(BUILD_RESULT_VERSION),
  buildId: z.string(),
  status: z.enum(["succeeded", "failed"]),
  /**
   * `ok`, or the failure class: usage, not-ready, login, download, extract, kit, base-build,
   * app-build, push, internal.
   */
  exitReason: name,
  exitCode: z.number().int(),
  failedStep: name.optional(),
  /** The Dockerfile instruction that failed, as the container CLI logged it (`STEP 4/6: RUN …`). */
  failedInstruction: shownText(RESULT_LIMITS.failedInstructionChars).optional(),
  /** Exit status of the failing command inside the build (e.g. the compiler's), when known. */
  stepExitCode: z.number().int().optional(),
  /** Full image reference pushed (or found, when skipped). */
  image: reference("an image reference").optional(),
  digest: reference("a digest").optional(),
  baseKey: reference("a base key").optional(),
  baseImage: reference("a base image reference").optional(),
  baseCacheHit: z.boolean().optional(),
  /** Tags pushed for the app image: build id, `commit-<sha>`, `src-<source digest hex>`. */
  tags: z
    .array(reference("a tag"))
    .max(RESULT_LIMITS.tags, `more than ${RESULT_LIMITS.tags} tags`)
    .optional(),
  /** The registry already had an image for this source digest: nothing was built. */
  skipped: z.boolean(),
  message: shownText(RESULT_LIMITS.messageChars).optional(),
  /** Only in the callback's POST (the last lines kept, each cut); never in the printed line. */
  logTail: z.array(z.string()).transform(tailLines).optional(),
  /** Milliseconds per step, e.g. download, extract, base, app, push. */
  timings: z
    .record(z.string(), z.number())
    .refine(
      (timings) =>
        Object.keys(timings).length <= RESULT_LIMITS.timings &&
        Object.keys(timings).every((step) => step.length <= RESULT_LIMITS.nameChars),
      {
        message: `more than ${RESULT_LIMITS.timings} step timings, or a step name longer than ${RESULT_LIMITS.nameChars} characters (build.sh writes one short name per step)`,
      },
    ),
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
  step: z.string().max(RESULT_LIMITS.nameChars),
  elapsedMs: z.number().int().nonnegative(),
});
export type BuildHeartbeat = z.infer<typeof buildHeartbeatSchema>;
