/** Shared set-up for the ARM tests: an emulator, a plain bearer credential, gateway options. */
import type { TokenCredential } from "@azure/identity";
import type { ArmGatewayOptions } from "../../src/azure/clientOptions.js";
import type { WiringOptions } from "../../src/wiring.js";
import type { ArmEmulator } from "@fast-build/local-cloud/arm";
import { unsignedStorageToken } from "@fast-build/local-cloud/oauthToken";

/**
 * A developer's or app's credential as far as the emulators can tell: an (unsigned) JWT whose
 * audience is the resource the client asked for (`<resource>/.default`), as Entra ID issues it.
 */
export const staticCredential: TokenCredential = {
  getToken: (scopes) => {
    const scope = Array.isArray(scopes) ? scopes[0] : scopes;
    const audience = (scope ?? "https://management.azure.com/.default").replace(/\/\.default$/, "");
    return Promise.resolve({
      token: unsignedStorageToken({ audience, lifetimeSeconds: 3600 }),
      expiresOnTimestamp: Date.now() + 3_600_000,
    });
  },
};

export const SUB = "00000000-0000-0000-0000-00000000abcd";

export function gatewayOptions(
  emulator: ArmEmulator,
  extra: Partial<ArmGatewayOptions> = {},
): ArmGatewayOptions {
  return {
    endpoint: emulator.endpoint,
    credential: staticCredential,
    tlsCa: emulator.ca,
    retry: { maxRetries: 0 },
    pollIntervalMs: 10,
    ...extra,
  };
}

/**
 * The wiring's transport options in tests: the same credential, CA, retries and polling as
 * {@link gatewayOptions}, and blob calls that fail at once (retries are not what these tests test).
 */
export function testWiring(emulator: ArmEmulator): Omit<WiringOptions, "config"> {
  const { credential, tlsCa, retry, pollIntervalMs } = gatewayOptions(emulator);
  return {
    credential,
    tlsCa,
    arm: { retry, pollIntervalMs },
    blobPipeline: { retryOptions: { maxTries: 1 } },
  };
}

/** Polls `read` until `done` says so (no timing assertions: only a generous give-up). */
export async function waitFor<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  limitMs = 60_000,
): Promise<T> {
  const until = Date.now() + limitMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > until) throw new Error(`condition not reached; last value: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 15));
  }
}
