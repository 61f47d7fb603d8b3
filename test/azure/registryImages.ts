/**
 * Pushes a tiny image (a config blob and an OCI manifest, no layers) to a real local registry over
 * the Docker Registry v2 API: what build.sh's push leaves behind, without building anything.
 */
import { createHash } from "node:crypto";

const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

async function pushBlob(registryUrl: string, repository: string, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes);
  const start = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, { method: "POST" });
  if (start.status !== 202) throw new Error(`blob upload start: HTTP ${start.status}`);
  const location = new URL(start.headers.get("location") ?? "", registryUrl);
  location.searchParams.set("digest", digest);
  const put = await fetch(location, {
    method: "PUT",
    body: bytes,
    headers: { "content-type": "application/octet-stream" },
  });
  if (put.status !== 201) throw new Error(`blob upload: HTTP ${put.status}`);
  return digest;
}

/** Pushes `repository:tag` whose config says `label`; returns the manifest's digest. */
export async function pushImage(
  registryUrl: string,
  repository: string,
  tag: string,
  label = "app",
): Promise<string> {
  const config = Buffer.from(
    JSON.stringify({ architecture: "amd64", os: "linux", config: { Labels: { label } } }),
  );
  const configDigest = await pushBlob(registryUrl, repository, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: configDigest,
        size: config.length,
      },
      layers: [],
    }),
  );
  const put = await fetch(`${registryUrl}/v2/${repository}/manifests/${tag}`, {
    method: "PUT",
    body: manifest,
    headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
  });
  if (put.status !== 201) throw new Error(`manifest push: HTTP ${put.status}: ${await put.text()}`);
  return sha256(manifest);
}
