/**
 * Image references a build reports. Pure: the orchestrator checks with these that a build result
 * names an image of its own environment and build before it asks the registry for its digest.
 */
import { quoted } from "./logText.js";

/** An OCI digest: `<algorithm>:<encoded>` (e.g. `sha256:` and 64 hex digits). */
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

/** The parts of `<registry>/<repository>[:<tag>][@<digest>]`. */
export interface ImageName {
  registry: string;
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

// Docker's reference grammar (distribution/reference), without the implicit docker.io: a result
// must name its registry.
const REGISTRY = /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::\d{1,5})?$/;
const REPOSITORY = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

/** Splits an image reference; undefined when it is not one (or names no registry). */
export function parseImageReference(image: string): ImageName | undefined {
  const at = image.indexOf("@");
  const digest = at >= 0 ? image.slice(at + 1) : undefined;
  const name = at >= 0 ? image.slice(0, at) : image;
  const slash = name.indexOf("/");
  if (slash <= 0) return undefined;
  const registry = name.slice(0, slash);
  let repository = name.slice(slash + 1);
  let tag: string | undefined;
  const colon = repository.lastIndexOf(":");
  if (colon >= 0) {
    tag = repository.slice(colon + 1);
    repository = repository.slice(0, colon);
  }
  const valid =
    REGISTRY.test(registry) &&
    REPOSITORY.test(repository) &&
    (tag === undefined || TAG.test(tag)) &&
    (digest === undefined || DIGEST.test(digest));
  return valid ? { registry, repository, tag, digest } : undefined;
}

/** What a build may report: its environment's repository, and the tags this build pushes. */
export interface ExpectedImage {
  registry: string;
  repository: string;
  /** build.sh's tags: the build id, `src-<source digest hex>`, `commit-<sha>` when given. */
  tags: readonly string[];
}

export type ReportedImageCheck =
  { ok: true; tag: string; digest: string | undefined } | { ok: false; reason: string };

/**
 * Whether a build result's `image` and `digest` can be this build's: the environment's own
 * registry and repository, one of the tags this build pushes, a well-formed digest that agrees with
 * any digest in the reference. Pure; the registry confirms the digest afterwards (an activity).
 */
export function checkReportedImage(
  expected: ExpectedImage,
  image: string,
  digest: string | undefined,
): ReportedImageCheck {
  const name = parseImageReference(image);
  if (!name) return { ok: false, reason: `the reported image ${quoted(image)} is not an image reference` };
  if (name.registry !== expected.registry) {
    return {
      ok: false,
      reason: `the reported image is in registry ${quoted(name.registry)}, not the environment's ${expected.registry}`,
    };
  }
  if (name.repository !== expected.repository) {
    return {
      ok: false,
      reason: `the reported image is in repository ${quoted(name.repository)}, not the environment's ${expected.repository}`,
    };
  }
  if (name.tag === undefined || !expected.tags.includes(name.tag)) {
    return {
      ok: false,
      reason: `the reported image's tag ${name.tag === undefined ? "(none)" : quoted(name.tag)} is not one this build pushes`,
    };
  }
  if (digest !== undefined && !DIGEST.test(digest)) {
    return { ok: false, reason: `the reported digest ${quoted(digest)} is not a digest` };
  }
  if (name.digest !== undefined && digest !== undefined && name.digest !== digest) {
    return { ok: false, reason: "the reported image and digest name different digests" };
  }
  return { ok: true, tag: name.tag, digest: digest ?? name.digest };
}
