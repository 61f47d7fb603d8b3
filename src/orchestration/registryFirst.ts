/**
 * Version 5 on, before step 2: ask the registry first (issue 10, item 1). An image tagged
 * `src-<source digest>` was built from exactly these bytes (build.sh pushes that tag last, so only a
 * complete image has it), so when the registry has it the builder is not leased, started or touched:
 * the build deploys that digest (through deploy.ts's confirmed-reference rule, like any result) or,
 * with `--no-deploy`, ends. The source upload is not waited for either: the digest names the image,
 * so an upload still under way changes nothing (its SourceUploaded event is never waited for).
 * Otherwise the status says, before the VM is up, whether the base image for the base key is there.
 */
import type { Task } from "durable-functions";
import {
  ACTIVITIES,
  type ImageLookup,
  type LookUpImagesInput,
  type ResolvedEnvironment,
} from "../core/activityContract.js";
import { RETRY } from "../core/retry.js";
import type { StepName } from "../core/status.js";
import type { RunContext } from "./context.js";

/** build.sh's default base repository (FASTBUILD_BASE_REPOSITORY unset): `<repository>-base`. */
export const baseRepositoryOf = (repository: string): string => `${repository}-base`;

/** The tag of the image built from a source digest (build.sh `SOURCE_TAG`). */
export const sourceTagOf = (sourceDigest: string): string => `src-${sourceDigest.replace(/^sha256:/, "")}`;

/**
 * What to ask the registry for a build of `sourceDigest` with `baseKey` in an environment: the
 * orchestrator and `GET /api/environments/{env}/images` ask the same question.
 */
export function lookUpInput(
  env: { registry: string; imageRepository: string },
  build: { sourceDigest: string; baseKey: string; environment: string },
): LookUpImagesInput {
  return {
    registry: env.registry,
    repository: env.imageRepository,
    sourceTag: sourceTagOf(build.sourceDigest),
    baseRepository: baseRepositoryOf(env.imageRepository),
    baseTag: build.baseKey,
    environment: build.environment,
  };
}

/** The base counts as a hit when the registry has it and the build does not ask to rebuild it. */
export function baseOutcome(found: Pick<ImageLookup, "base">, rebuildBase: boolean): "hit" | "miss" {
  return found.base !== undefined && !rebuildBase ? "hit" : "miss";
}

export const BUILDER_NOT_TOUCHED = "image for this source already in the registry: builder not touched";

/** One registry lookup; publishes what it found. */
export function* lookUpImages(
  run: RunContext,
  env: ResolvedEnvironment,
): Generator<Task, ImageLookup, unknown> {
  const { input } = run;
  const found = yield* run.call(ACTIVITIES.lookUpImages, lookUpInput(env, input), RETRY.arm);
  const base = baseOutcome(found, input.rebuildBase);
  const present = found.source !== undefined;
  const estimate = found.expected?.[base];
  const expectedDuration = present
    ? "no build needed"
    : (estimate?.text ?? "unknown (no earlier build's timings)");
  run.status = {
    ...run.status,
    cache: { base, skipped: present, baseKey: input.baseKey },
    registryCheck: {
      sourceImage: present ? "present" : "absent",
      base,
      expectedDuration,
      ...(!present && estimate?.medianMs !== undefined ? { expectedMs: estimate.medianMs } : {}),
      message: present
        ? `${BUILDER_NOT_TOUCHED} (${env.registry}/${env.imageRepository}:${sourceTagOf(input.sourceDigest)} is ${found.source})`
        : `no image for this source yet: the builder builds it; base: ${base}${input.rebuildBase && found.base ? " (rebuild asked)" : ""}; expected duration: ${expectedDuration}`,
    },
  };
  run.publish();
  run.log(`registry lookup: source image ${present ? "present" : "absent"}, base ${base}`);
  return found;
}

/** The builder's steps, skipped with the reason. */
export function skipBuilderSteps(run: RunContext): void {
  const skipped: readonly StepName[] = ["lease", "builder", "source", "build"];
  for (const name of skipped) run.step(name, "skipped");
  run.status = {
    ...run.status,
    steps: run.status.steps.map((step) =>
      (skipped as readonly string[]).includes(step.name) ? { ...step, reason: BUILDER_NOT_TOUCHED } : step,
    ),
  };
  run.publish();
}
