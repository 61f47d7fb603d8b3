/**
 * The link rules of a source tree, applied by the CLI before it uploads (src/cli/archive.ts) so
 * that an archive the builder would refuse is refused on the developer's machine, before any
 * upload or VM start. dockerfiles/safe_extract.py applies the same rules on the builder (in
 * Python: it travels alone); test/fixtures/link-rules.json is the one table of cases both
 * implementations are tested with, and the limits are src/core/extractLimits.ts's.
 */
import { posix, win32 } from "node:path";
import type { ExtractLimits } from "./extractLimits.js";

/** The refusals, by the code safe_extract.py prints (`refused: <code>: …`). */
export type LinkRefusal =
  "absolute-symlink" | "symlink-escape" | "link-chain" | "too-many-links" | "path-too-long";

export class LinkRuleError extends Error {
  override readonly name = "LinkRuleError";
  constructor(
    readonly refusal: LinkRefusal,
    readonly link: string,
    message: string,
  ) {
    super(message);
  }
}

export type LinkLimits = Pick<ExtractLimits, "maxLinks" | "maxLinkDepth" | "maxPathBytes">;

/**
 * One symlink, as it is met: its target must be relative and, read lexically from the link's
 * folder, stay inside the tree. `count` is the number of links so far, this one included.
 */
export function checkSymlink(rel: string, target: string, count: number, limits: LinkLimits): void {
  if (count > limits.maxLinks) {
    throw new LinkRuleError("too-many-links", rel, `the tree has more than ${limits.maxLinks} symlinks`);
  }
  const normalised = target.replaceAll("\\", "/");
  if (target.includes("\0") || posix.isAbsolute(normalised) || win32.isAbsolute(target)) {
    throw new LinkRuleError("absolute-symlink", rel, `symlink ${rel} points to an absolute path (${target})`);
  }
  if (Buffer.byteLength(target, "utf8") > limits.maxPathBytes) {
    throw new LinkRuleError(
      "path-too-long",
      rel,
      `symlink ${rel}'s target is longer than ${limits.maxPathBytes} bytes`,
    );
  }
  const resolved = posix.normalize(posix.join(posix.dirname(rel), normalised));
  if (resolved === ".." || resolved.startsWith("../")) {
    throw new LinkRuleError(
      "symlink-escape",
      rel,
      `symlink ${rel} points outside the source tree (to ${target})`,
    );
  }
}

/**
 * Every symlink of the complete tree (`links`: path → target), resolved through the tree's own
 * links one component at a time, without recursion: a step above the root, or more than
 * `maxLinkDepth` links for one resolution, is refused. A component the tree does not have is taken
 * as it reads (stricter than the kernel, which would stop there). Linear in the links: each
 * resolution follows at most `maxLinkDepth` of them.
 */
export function checkLinkTree(links: ReadonlyMap<string, string>, maxLinkDepth: number): void {
  for (const [rel, first] of links) {
    const resolved = rel.split("/").slice(0, -1);
    const pending = first.replaceAll("\\", "/").split("/").reverse();
    let hops = 1;
    while (pending.length > 0) {
      const part = pending.pop()!;
      if (part === "" || part === ".") continue;
      if (part === "..") {
        if (resolved.length === 0) {
          throw new LinkRuleError("symlink-escape", rel, `symlink ${rel} resolves outside the source tree`);
        }
        resolved.pop();
        continue;
      }
      resolved.push(part);
      const next = links.get(resolved.join("/"));
      if (next === undefined) continue;
      if (++hops > maxLinkDepth) {
        throw new LinkRuleError(
          "link-chain",
          rel,
          `symlink ${rel} goes through more than ${maxLinkDepth} links`,
        );
      }
      resolved.pop();
      pending.push(...next.replaceAll("\\", "/").split("/").reverse());
    }
  }
}
