/** Helpers shared by the storage tests: what a SAS holder sees when it uses (or abuses) a SAS. */
import assert from "node:assert/strict";
import { RestError } from "@azure/storage-blob";

/** The status a real SDK call fails with (or "ok"). */
export async function outcome(call: () => Promise<unknown>): Promise<number | "ok"> {
  try {
    await call();
    return "ok";
  } catch (error) {
    assert.ok(error instanceof RestError, `unexpected ${String(error)}`);
    return error.statusCode ?? -1;
  }
}

/** The same SAS query on another blob's path. */
export function sameSasOtherBlob(sasUrl: string, otherBlob: string): string {
  const url = new URL(sasUrl);
  url.pathname = url.pathname.replace(/[^/]+$/, otherBlob);
  return url.toString();
}
