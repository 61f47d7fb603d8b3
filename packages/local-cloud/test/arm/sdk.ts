/** The real SDK clients pointed at an emulator, with unsigned tokens of a chosen audience and identity. */
import { ComputeManagementClient } from "@azure/arm-compute";
import { ContainerAppsAPIClient } from "@azure/arm-appcontainers";
import type { ArmEmulator } from "../../src/arm/index.js";
import { unsignedStorageToken } from "../../src/oauthToken.js";

type TokenCredential = ConstructorParameters<typeof ComputeManagementClient>[0];

export const SUB = "00000000-0000-0000-0000-00000000c0de";
export const CALLER = "00000000-0000-0000-0000-0000000000ca";
export const POLL = { updateIntervalInMs: 10 };

/** A TokenCredential handing out an unsigned JWT for `audience` (default ARM's) and `objectId`. */
export function tokenCredential(
  audience = "https://management.azure.com",
  objectId = CALLER,
): TokenCredential {
  return {
    getToken: () =>
      Promise.resolve({
        token: unsignedStorageToken({ audience, objectId }),
        expiresOnTimestamp: Date.now() + 3_600_000,
      }),
  };
}

/** The SDK pipeline's retries (`retryOptions`); off unless a test is about them. */
export interface SdkRetries {
  maxRetries?: number;
  retryDelayInMs?: number;
}
const NO_RETRIES: SdkRetries = { maxRetries: 0 };

const common = (emulator: ArmEmulator, retryOptions: SdkRetries) => ({
  endpoint: emulator.endpoint,
  tlsOptions: { ca: emulator.ca },
  retryOptions,
});

export function computeClient(
  emulator: ArmEmulator,
  credential = tokenCredential(),
  retries = NO_RETRIES,
): ComputeManagementClient {
  return new ComputeManagementClient(credential, SUB, common(emulator, retries));
}

export function appsClient(
  emulator: ArmEmulator,
  credential = tokenCredential(),
  retries = NO_RETRIES,
): ContainerAppsAPIClient {
  return new ContainerAppsAPIClient(credential, SUB, common(emulator, retries));
}

/** Polls `read` until `done` (only a generous give-up, no timing assertions). */
export async function waitFor<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  limitMs = 30_000,
): Promise<T> {
  const until = Date.now() + limitMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > until) throw new Error(`condition not reached; last value: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 15));
  }
}
