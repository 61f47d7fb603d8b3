/**
 * Build ids and per-build secrets. Ids sort by creation time (so listings and blob prefixes read
 * chronologically) and carry enough randomness that two builds started in the same second never
 * collide; they fit `buildIdSchema` (lower-case letters, digits, `-`).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** `yyyymmddhhmmss-<10 hex>` in UTC, e.g. `20260314092653-3f9a0c1d2e`. */
export function createBuildId(now: Date = new Date(), random: Uint8Array = randomBytes(5)): string {
  const stamp = now.toISOString().replace(/[-:T]/g, "").slice(0, 14);
  return `${stamp}-${Buffer.from(random).toString("hex")}`;
}

/** 256 random bits, URL-safe: the token the builder presents on its completion callback. */
export function createCallbackToken(random: Uint8Array = randomBytes(32)): string {
  return Buffer.from(random).toString("base64url");
}

/**
 * Compares a presented secret with the expected one in constant time. Both are hashed first so
 * neither the content nor the length of the expected secret leaks through timing.
 */
export function secretsEqual(presented: string, expected: string): boolean {
  const a = createHash("sha256").update(presented, "utf8").digest();
  const b = createHash("sha256").update(expected, "utf8").digest();
  return timingSafeEqual(a, b) && presented.length === expected.length;
}
