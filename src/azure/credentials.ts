/**
 * The credential every Azure gateway uses. In Azure Functions the app's managed identity answers
 * (IDENTITY_ENDPOINT / IDENTITY_HEADER, read by @azure/identity itself); on a developer machine
 * DefaultAzureCredential falls through to the Azure CLI / developer login.
 */
import { DefaultAzureCredential, ManagedIdentityCredential, type TokenCredential } from "@azure/identity";

export type { TokenCredential };

export interface CredentialOptions {
  /** Client id of a user-assigned managed identity; unset = system-assigned or developer login. */
  managedIdentityClientId?: string | undefined;
  /**
   * `default` (DefaultAzureCredential: environment, workload identity, managed identity, CLI …) or
   * `managedIdentity` (only the managed identity: no chain to probe, so the first token is faster on a
   * cold start).
   */
  mode?: "default" | "managedIdentity";
}

export function createCredential(options: CredentialOptions = {}): TokenCredential {
  const clientId = options.managedIdentityClientId;
  if (options.mode === "managedIdentity") {
    return clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential();
  }
  return new DefaultAzureCredential(clientId ? { managedIdentityClientId: clientId } : {});
}
