/**
 * The container registry's data plane: which manifest digest a tag names (issue 9, item 4; issue 10,
 * item 1). The orchestrator deploys only a digest the registry confirms for a tag this build pushed,
 * so a forged completion callback cannot point the app at an image of its own choosing; and it asks,
 * before it wakes the builder, whether the image for a source digest (and the base image for a base
 * key) is already there.
 *
 * Every read goes through `@azure/container-registry`'s `ContainerRegistryContentClient`
 * (`GET https://<login server>/v2/<repo>/manifests/<tag>`) as the function app's identity: the
 * library answers ACR's 401 challenge with the token exchange (`POST /oauth2/exchange` with the
 * identity's Entra token for `https://containerregistry.azure.net`, then `POST /oauth2/token` for a
 * repository-scoped access token; github:Azure/acr docs/AAD-OAuth.md) and checks the manifest's bytes
 * against `Docker-Content-Digest`. The local cloud's registry (packages/local-cloud/src/acrFront.ts)
 * answers that protocol over TLS, so this path is the one the tests and the simulation run. HTTPS
 * only: core's bearer policy refuses plain http, and so does ACR.
 */
import { ContainerRegistryContentClient } from "@azure/container-registry";
import { ConfigError, NotFoundError, PermanentError } from "../core/errors.js";
import type { ImageRepositoryRef, RegistryGateway } from "../core/ports.js";
import type { TokenCredential } from "./credentials.js";
import { callAzure } from "./errors.js";

export interface RegistryGatewayOptions {
  credential: TokenCredential;
  /** Extra CA the https client trusts (a local TLS registry); unset in Azure. */
  tlsCa?: string;
  /** Token audience for ACR (default: the library's, `https://containerregistry.azure.net`). */
  audience?: string;
  /**
   * Where a registry host's data plane is read, when not at `https://<host>` (local only: the local
   * builder pushes to the store's plain port while the login server is another port; in Azure the
   * login server is both, and this is unset). Each value must be an https URL.
   */
  endpoints?: Readonly<Record<string, string>>;
  /** The library's retries of 408/429/5xx and network failures (default: its own, 3). */
  maxRetries?: number;
}

export function createRegistryGateway(options: RegistryGatewayOptions): RegistryGateway {
  for (const [host, url] of Object.entries(options.endpoints ?? {})) {
    if (!/^https:\/\/[^/]+\/?$/.test(url)) {
      throw new ConfigError([
        `the registry endpoint for ${host} is '${url}': give an https URL of the login server (ACR's data plane is HTTPS only)`,
      ]);
    }
  }
  const clients = new Map<string, ContainerRegistryContentClient>();
  const client = (ref: ImageRepositoryRef): ContainerRegistryContentClient => {
    const key = `${ref.registry}/${ref.repository}`;
    let found = clients.get(key);
    if (!found) {
      found = new ContainerRegistryContentClient(
        options.endpoints?.[ref.registry] ?? `https://${ref.registry}`,
        ref.repository,
        options.credential,
        {
          ...(options.audience ? { audience: options.audience } : {}),
          ...(options.tlsCa ? { tlsOptions: { ca: options.tlsCa } } : {}),
          ...(options.maxRetries !== undefined ? { retryOptions: { maxRetries: options.maxRetries } } : {}),
        },
      );
      clients.set(key, found);
    }
    return found;
  };
  return {
    async manifestDigest(ref, tag) {
      const what = `read manifest ${ref.registry}/${ref.repository}:${tag}`;
      try {
        const manifest = await callAzure("registry", what, async () => {
          try {
            return await client(ref).getManifest(tag);
          } catch (error) {
            // The library's own check of the bytes against Docker-Content-Digest.
            if (error instanceof Error && error.name === "DigestMismatchError") {
              throw new PermanentError(
                `${what}: the manifest's bytes do not hash to its Docker-Content-Digest`,
                {
                  code: "RegistryDigestMismatch",
                  cause: error,
                },
              );
            }
            throw error;
          }
        });
        return manifest.digest;
      } catch (error) {
        // MANIFEST_UNKNOWN / NAME_UNKNOWN: the registry has no such tag (or repository).
        if (error instanceof NotFoundError) return undefined;
        throw error;
      }
    },
  };
}
