/**
 * The container registry's data plane: which manifest digest a tag names (issue 9, item 4). The
 * orchestrator deploys only a digest the registry confirms for a tag this build pushed, so a
 * forged completion callback cannot point the app at an image of its own choosing.
 *
 * Azure Container Registry goes through `@azure/container-registry`'s `ContainerRegistryContentClient`
 * (`GET /v2/<repo>/manifests/<tag>`; the library answers ACR's 401 challenge with the token
 * exchange, `POST /oauth2/exchange` with the identity's AAD token then `/oauth2/token`, and checks
 * the manifest's bytes against `Docker-Content-Digest`). That library refuses plain http (core's
 * bearer policy), and the local stand-in (Debian's `docker-registry` on 127.0.0.1) has neither TLS
 * nor a token exchange; so a loopback registry, and only a loopback one, is read anonymously
 * over plain http with the Docker Registry v2 API, checking the digest the same way. That path is
 * what the tests and the simulation run; the library's is not run here (no ACR is reachable).
 */
import { createHash } from "node:crypto";
import { ContainerRegistryContentClient } from "@azure/container-registry";
import { NotFoundError, PermanentError, TransientError } from "../core/errors.js";
import type { ImageRepositoryRef, RegistryGateway } from "../core/ports.js";
import type { TokenCredential } from "./credentials.js";
import { callAzure } from "./errors.js";

export interface RegistryGatewayOptions {
  credential: TokenCredential;
  /** Extra CA the https client trusts (a local TLS registry); unset in Azure. */
  tlsCa?: string;
  /** Token audience for ACR (default: the library's, `https://containerregistry.azure.net`). */
  audience?: string;
  /** Per-request timeout of the loopback client (default 30 s). */
  timeoutMs?: number;
}

/** What the loopback GET accepts: OCI and Docker v2 images and indexes (what build.sh's tools push; the library sends the same list). */
const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

/** Plain http only to this machine, as for the callback URL (FASTBUILD_PUBLIC_BASE_URL). */
const LOOPBACK = /^(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?$/;

export function createRegistryGateway(options: RegistryGatewayOptions): RegistryGateway {
  const clients = new Map<string, ContainerRegistryContentClient>();
  const client = (ref: ImageRepositoryRef): ContainerRegistryContentClient => {
    const key = `${ref.registry}/${ref.repository}`;
    let found = clients.get(key);
    if (!found) {
      found = new ContainerRegistryContentClient(
        `https://${ref.registry}`,
        ref.repository,
        options.credential,
        {
          ...(options.audience ? { audience: options.audience } : {}),
          ...(options.tlsCa ? { tlsOptions: { ca: options.tlsCa } } : {}),
        },
      );
      clients.set(key, found);
    }
    return found;
  };
  return {
    async manifestDigest(ref, tag) {
      if (LOOPBACK.test(ref.registry)) return loopbackDigest(ref, tag, options.timeoutMs ?? 30_000);
      const what = `read manifest ${ref.registry}/${ref.repository}:${tag}`;
      try {
        const manifest = await callAzure("registry", what, () => client(ref).getManifest(tag));
        return manifest.digest;
      } catch (error) {
        // MANIFEST_UNKNOWN / NAME_UNKNOWN: the registry has no such tag (or repository).
        if (error instanceof NotFoundError) return undefined;
        throw error;
      }
    },
  };
}

/** The Docker Registry v2 API over plain http, anonymously: the local registry only. */
async function loopbackDigest(
  ref: ImageRepositoryRef,
  tag: string,
  timeoutMs: number,
): Promise<string | undefined> {
  const url = `http://${ref.registry}/v2/${ref.repository}/manifests/${encodeURIComponent(tag)}`;
  const what = `read manifest ${ref.registry}/${ref.repository}:${tag}`;
  let response: Response;
  try {
    response = await fetch(url, {
      headers: { accept: MANIFEST_ACCEPT },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    throw new TransientError(`${what} failed: no response`, { code: "RegistryUnavailable", cause: error });
  }
  const body = Buffer.from(await response.arrayBuffer());
  if (response.status === 404) return undefined;
  if (response.status >= 500 || response.status === 429) {
    throw new TransientError(`${what} failed: HTTP ${response.status}`, { code: `Http${response.status}` });
  }
  if (response.status !== 200) {
    throw new PermanentError(`${what} failed: HTTP ${response.status}`, { code: `Http${response.status}` });
  }
  const computed = `sha256:${createHash("sha256").update(body).digest("hex")}`;
  const header = response.headers.get("docker-content-digest");
  if (header !== computed) {
    throw new PermanentError(`${what}: the manifest's bytes do not hash to its Docker-Content-Digest`, {
      code: "RegistryDigestMismatch",
    });
  }
  return computed;
}
