/**
 * When the function app's dependencies are built: once, lazily, on the first invocation that needs
 * them. What they are is src/wiring.ts (the one factory the simulation and the tests call too); it
 * is imported here with `import()`, never at the top of a trigger file, so loading the app (cold
 * start) does not load the SDK modules behind it.
 *
 * Tests and the local host replace the whole set with {@link setDeps}: the same factory's gateways
 * pointed at emulators (Azurite, the ARM emulator), not stubs.
 */
import { loadConfig } from "../config/index.js";
import type { Deps } from "../wiring.js";

export type { Deps };

type DepsSource = Deps | (() => Deps | Promise<Deps>);

let override: DepsSource | undefined;
let cached: Promise<Deps> | undefined;

/** Uses these dependencies from now on (tests, local host); `undefined` goes back to the default. */
export function setDeps(deps: DepsSource | undefined): void {
  override = deps;
  cached = undefined;
}

/** The dependencies, built on first use. A failed build is not cached: the next call tries again. */
export function getDeps(): Promise<Deps> {
  if (!cached) {
    const source = override ?? createDefaultDeps;
    const pending = Promise.resolve(typeof source === "function" ? source() : source);
    pending.catch(() => {
      if (cached === pending) cached = undefined;
    });
    cached = pending;
  }
  return cached;
}

/** Production wiring from the app settings (managed identity in Azure, connection string for Azurite). */
export async function createDefaultDeps(): Promise<Deps> {
  const config = loadConfig();
  const { createDeps } = await import("../wiring.js");
  return createDeps({ config });
}
