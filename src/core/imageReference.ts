/**
 * Image references a deploy uses. Pure: the orchestrator decides with these whether a deploy can
 * be skipped (a digest names the same bytes) and what the Container App is pointed at.
 */

/** An OCI digest: `<algorithm>:<encoded>` (e.g. `sha256:` and 64 hex digits). */
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

/**
 * The image reference a deploy uses: `<registry>/<repo>@<digest>`, from the build result's
 * `image` (whose tag or digest, if any, is dropped) and `digest`. Immutable, so a revision runs
 * exactly what was built even if the tag is pushed again. Without a (valid) digest, `image` as given.
 */
export function deployReference(image: string, digest: string | undefined): string {
  if (!digest || !DIGEST.test(digest)) return image;
  const at = image.indexOf("@");
  const name = at >= 0 ? image.slice(0, at) : image;
  // A tag's colon comes after the last slash; a registry's port colon comes before it.
  const colon = name.lastIndexOf(":");
  const repository = colon > name.lastIndexOf("/") ? name.slice(0, colon) : name;
  return `${repository}@${digest}`;
}

/** True when `reference` is pinned to a well-formed digest (`…@sha256:…`), so it names fixed bytes. */
export function isDigestReference(reference: string): boolean {
  const at = reference.indexOf("@");
  return at > 0 && DIGEST.test(reference.slice(at + 1));
}
