/**
 * Microsoft.ContainerRegistry registries as the emulator serves them: GET of a registry and the
 * `importImage` action, which copies an image from another registry by its ARM resource id.
 *
 * The shape is the REST spec's (Azure/azure-rest-api-specs
 * specification/containerregistry/resource-manager/Microsoft.ContainerRegistry, `Registries_ImportImage`:
 * `POST …/registries/{registryName}/importImage`, body `ImportImageParameters` = `source`
 * {`resourceId` | `registryUri`, `sourceImage`, `credentials`}, `targetTags`, `untaggedTargetRepositories`,
 * `mode` NoForce | Force; a long-running operation answered 202 with `Location` (final state via
 * location) and `Azure-AsyncOperation`), and what `@azure/arm-containerregistry` 12.x sends
 * (api-version 2025-11-01, `registries.importImage` polling the operation).
 *
 * The copy is real: the manifest and every blob it names are read from the source registry's store
 * (its Docker Registry v2 API) and written to the target's, and the manifest is put back with its
 * exact bytes, so its digest is identical after the import. NoForce refuses, before anything is
 * copied, a target tag that already exists (the spec's words for the mode). LOCAL SIMPLIFICATIONS:
 * only `resourceId` sources (a `registryUri` source answers 400 saying so); the caller's pull right
 * on the source registry is not checked.
 */
import { createHash } from "node:crypto";
import {
  ArmHttpError,
  armTime,
  badRequest,
  isRecord,
  missingResource,
  newId,
  requireMethod,
  type ArmRequest,
  type Reply,
  type Timers,
} from "./http.js";
import type { RegistryInit, RegistryRef } from "./types.js";

export interface ContainerRegistryContext {
  endpoint(): string;
  timers: Timers;
  /** How long an import's operation stays InProgress before the copy runs (ms). */
  importDelayMs: number;
}

interface RegistryState {
  ref: RegistryRef;
  init: RegistryInit;
}

interface ImportOperation {
  id: string;
  status: "InProgress" | "Succeeded" | "Failed";
  startTime: string;
  endTime?: string;
  error?: { code: string; message: string };
}

const ID = "([^/]+)";
const REGISTRY = `^/subscriptions/${ID}/resourceGroups/${ID}/providers/Microsoft\\.ContainerRegistry/registries/${ID}`;
const routes = {
  registry: new RegExp(`${REGISTRY}$`, "i"),
  importImage: new RegExp(`${REGISTRY}/importImage$`, "i"),
  operation: new RegExp(`${REGISTRY}/operationStatuses/${ID}$`, "i"),
  result: new RegExp(`${REGISTRY}/operationResults/${ID}$`, "i"),
};

/** `repo`, `repo:tag` or `repo@sha256:<64 hex>` (the spec's forms of `sourceImage`). */
const SOURCE_IMAGE =
  /^([a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)(?::([A-Za-z0-9_][A-Za-z0-9._-]{0,127})|@(sha256:[a-f0-9]{64}))?$/;
/** `repo` or `repo:tag` (a target). */
const TARGET_TAG =
  /^([a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)(?::([A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?$/;

const MANIFEST_TYPES = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

export class ContainerRegistryProvider {
  private readonly registries = new Map<string, RegistryState>();
  private readonly operations = new Map<string, ImportOperation>();

  constructor(private readonly ctx: ContainerRegistryContext) {}

  addRegistry(ref: RegistryRef, init: RegistryInit): void {
    this.registries.set(registryKey(ref), { ref, init });
  }

  hasResourceGroup(sub: string, rg: string): boolean {
    const prefix = `${sub}/${rg}/`.toLowerCase();
    return [...this.registries.keys()].some((key) => key.startsWith(prefix));
  }

  handle(req: ArmRequest, rgExists: (sub: string, rg: string) => boolean): Reply | undefined {
    let m: RegExpExecArray | null;
    const registryOf = (mm: RegExpExecArray): RegistryState => {
      const ref = { subscriptionId: mm[1]!, resourceGroup: mm[2]!, registryName: mm[3]! };
      const found = this.registries.get(registryKey(ref));
      if (found) return found;
      throw missingResource(
        rgExists(ref.subscriptionId, ref.resourceGroup),
        "Microsoft.ContainerRegistry/registries",
        ref.registryName,
        ref.resourceGroup,
      );
    };
    if ((m = routes.operation.exec(req.path))) {
      requireMethod(req, ["GET"]);
      registryOf(m);
      const op = this.operation(m[4]!);
      return {
        status: 200,
        body: {
          id: req.path,
          name: op.id,
          status: op.status,
          startTime: op.startTime,
          ...(op.endTime ? { endTime: op.endTime } : {}),
          ...(op.error ? { error: op.error } : {}),
        },
      };
    }
    if ((m = routes.result.exec(req.path))) {
      requireMethod(req, ["GET"]);
      registryOf(m);
      const op = this.operation(m[4]!);
      if (op.status === "InProgress") {
        return {
          status: 202,
          headers: {
            location: this.ctx.endpoint() + req.path + `?api-version=${req.apiVersion}`,
            "retry-after": "1",
          },
        };
      }
      if (op.status === "Failed") return { status: 400, body: { error: op.error } };
      return { status: 200 };
    }
    if ((m = routes.importImage.exec(req.path))) {
      requireMethod(req, ["POST"]);
      const target = registryOf(m);
      return this.importImage(req, target);
    }
    if ((m = routes.registry.exec(req.path))) {
      requireMethod(req, ["GET"]);
      const found = registryOf(m);
      return { status: 200, body: this.registryJson(found) };
    }
    return undefined;
  }

  private operation(id: string): ImportOperation {
    const op = this.operations.get(id);
    if (!op) throw new ArmHttpError(404, "OperationNotFound", `The operation '${id}' was not found.`);
    return op;
  }

  private registryJson(found: RegistryState): Record<string, unknown> {
    const { subscriptionId, resourceGroup, registryName } = found.ref;
    return {
      id: `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.ContainerRegistry/registries/${registryName}`,
      name: registryName,
      type: "Microsoft.ContainerRegistry/registries",
      location: found.init.location ?? "westus",
      sku: { name: "Standard", tier: "Standard" },
      properties: {
        loginServer: found.init.loginServer,
        provisioningState: "Succeeded",
        adminUserEnabled: false,
        creationDate: "2026-01-01T00:00:00.000Z",
      },
    };
  }

  /** Validates the body as the service does (400 before any 202), then copies in the operation. */
  private importImage(req: ArmRequest, target: RegistryState): Reply {
    const body = req.body;
    if (!isRecord(body))
      throw badRequest("InvalidRequestContent", "The request content was invalid: expected a JSON object.");
    const source = body.source;
    if (!isRecord(source)) throw badRequest("InvalidParameter", "The parameter 'source' is required.");
    if (typeof source.sourceImage !== "string" || source.sourceImage === "") {
      throw badRequest("InvalidParameter", "The parameter 'source.sourceImage' is required.");
    }
    const parsed = SOURCE_IMAGE.exec(source.sourceImage);
    if (!parsed) {
      throw badRequest(
        "InvalidParameter",
        `The source image '${source.sourceImage}' is invalid: give 'repository', 'repository:tag' or 'repository@sha256:<digest>'.`,
      );
    }
    const hasResource = typeof source.resourceId === "string" && source.resourceId !== "";
    const hasUri = typeof source.registryUri === "string" && source.registryUri !== "";
    if (hasResource === hasUri) {
      throw badRequest(
        "InvalidParameter",
        "Exactly one of 'source.resourceId' and 'source.registryUri' must be given.",
      );
    }
    if (hasUri) {
      throw badRequest(
        "InvalidParameter",
        "This local registry emulator imports only from another registry by 'source.resourceId'.",
      );
    }
    const mode = body.mode ?? "NoForce";
    if (mode !== "NoForce" && mode !== "Force") {
      throw badRequest(
        "InvalidParameter",
        `The mode '${JSON.stringify(mode)}' is invalid: use 'NoForce' or 'Force'.`,
      );
    }
    const rawTargets = body.targetTags ?? [];
    const untagged = body.untaggedTargetRepositories ?? [];
    if (!Array.isArray(rawTargets) || !rawTargets.every((t) => typeof t === "string")) {
      throw badRequest("InvalidParameter", "'targetTags' must be a list of strings of the form repo[:tag].");
    }
    if (!Array.isArray(untagged) || !untagged.every((t) => typeof t === "string")) {
      throw badRequest(
        "InvalidParameter",
        "'untaggedTargetRepositories' must be a list of repository names.",
      );
    }
    const sourceId =
      /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.ContainerRegistry\/registries\/([^/]+)$/i.exec(
        source.resourceId as string,
      );
    if (!sourceId) {
      throw badRequest(
        "InvalidParameter",
        `The source resource id '${String(source.resourceId)}' is not a container registry's resource id.`,
      );
    }
    const from = this.registries.get(
      registryKey({ subscriptionId: sourceId[1]!, resourceGroup: sourceId[2]!, registryName: sourceId[3]! }),
    );
    if (!from) {
      throw new ArmHttpError(
        404,
        "ResourceNotFound",
        `The source registry '${String(source.resourceId)}' could not be found.`,
      );
    }
    const repository = parsed[1]!;
    const reference = parsed[3] ?? parsed[2] ?? "latest";
    const targets: { repository: string; tag: string | undefined }[] = [];
    for (const text of rawTargets) {
      const t = TARGET_TAG.exec(text);
      if (!t)
        throw badRequest("InvalidParameter", `The target tag '${text}' is invalid: give 'repository[:tag]'.`);
      targets.push({ repository: t[1]!, tag: t[2] ?? parsed[2] ?? (parsed[3] ? undefined : "latest") });
    }
    for (const name of untagged) {
      if (!TARGET_TAG.exec(name) || name.includes(":")) {
        throw badRequest("InvalidParameter", `The untagged target repository '${name}' is invalid.`);
      }
      targets.push({ repository: name, tag: undefined });
    }
    if (targets.length === 0)
      targets.push({ repository, tag: parsed[2] ?? (parsed[3] ? undefined : "latest") });

    const op: ImportOperation = { id: newId(), status: "InProgress", startTime: armTime() };
    this.operations.set(op.id, op);
    this.ctx.timers.after(this.ctx.importDelayMs, () => {
      copyImage(
        from.init.storeUrl,
        target.init.storeUrl,
        repository,
        reference,
        targets,
        mode === "Force",
      ).then(
        () => {
          op.status = "Succeeded";
          op.endTime = armTime();
        },
        (error: unknown) => {
          op.status = "Failed";
          op.endTime = armTime();
          op.error =
            error instanceof ImportFailure
              ? { code: error.code, message: error.message }
              : { code: "InternalServerError", message: String(error) };
        },
      );
    });
    const base = this.ctx.endpoint() + req.path.replace(/\/importImage$/i, "");
    return {
      status: 202,
      headers: {
        location: `${base}/operationResults/${op.id}?api-version=${req.apiVersion}`,
        "azure-asyncoperation": `${base}/operationStatuses/${op.id}?api-version=${req.apiVersion}`,
        "retry-after": "1",
      },
    };
  }
}

class ImportFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Copies `repository@reference` (a tag or digest) from one store to another, byte for byte. */
async function copyImage(
  fromUrl: string,
  toUrl: string,
  repository: string,
  reference: string,
  targets: { repository: string; tag: string | undefined }[],
  force: boolean,
): Promise<void> {
  if (!force) {
    for (const t of targets) {
      if (t.tag === undefined) continue;
      const head = await fetch(`${toUrl}/v2/${t.repository}/manifests/${t.tag}`, {
        method: "HEAD",
        headers: { accept: MANIFEST_TYPES },
      });
      if (head.status === 200) {
        throw new ImportFailure(
          "TagAlreadyExists",
          `The target tag '${t.repository}:${t.tag}' already exists; use mode 'Force' to overwrite it.`,
        );
      }
    }
  }
  const manifest = await readManifest(fromUrl, repository, reference);
  for (const t of targets) {
    await copyManifestTree(fromUrl, toUrl, repository, t.repository, manifest);
    // The manifest under its digest first (untagged repositories), then under the tag.
    const digest = `sha256:${createHash("sha256").update(manifest.bytes).digest("hex")}`;
    await putManifest(toUrl, t.repository, t.tag ?? digest, manifest);
  }
}

interface Manifest {
  bytes: Buffer;
  mediaType: string;
}

async function readManifest(storeUrl: string, repository: string, reference: string): Promise<Manifest> {
  const response = await fetch(`${storeUrl}/v2/${repository}/manifests/${reference}`, {
    headers: { accept: MANIFEST_TYPES },
  });
  if (response.status === 404) {
    throw new ImportFailure(
      "ImageNotFound",
      `The source image '${repository}${reference.startsWith("sha256:") ? "@" : ":"}${reference}' was not found in the source registry.`,
    );
  }
  if (!response.ok) throw new Error(`reading manifest ${repository}:${reference}: HTTP ${response.status}`);
  return {
    bytes: Buffer.from(await response.arrayBuffer()),
    mediaType: response.headers.get("content-type") ?? "application/vnd.oci.image.manifest.v1+json",
  };
}

/** The blobs of an image manifest, and the child manifests of an index, are copied first. */
async function copyManifestTree(
  fromUrl: string,
  toUrl: string,
  fromRepo: string,
  toRepo: string,
  manifest: Manifest,
): Promise<void> {
  const json = JSON.parse(manifest.bytes.toString("utf8")) as {
    config?: { digest?: string };
    layers?: { digest?: string }[];
    manifests?: { digest?: string }[];
  };
  for (const child of json.manifests ?? []) {
    if (!child.digest) continue;
    const nested = await readManifest(fromUrl, fromRepo, child.digest);
    await copyManifestTree(fromUrl, toUrl, fromRepo, toRepo, nested);
    await putManifest(toUrl, toRepo, child.digest, nested);
  }
  const blobs = [json.config?.digest, ...(json.layers ?? []).map((l) => l.digest)].filter(
    (d): d is string => typeof d === "string",
  );
  for (const digest of blobs) {
    const head = await fetch(`${toUrl}/v2/${toRepo}/blobs/${digest}`, { method: "HEAD" });
    if (head.status === 200) continue;
    const blob = await fetch(`${fromUrl}/v2/${fromRepo}/blobs/${digest}`);
    if (!blob.ok)
      throw new ImportFailure("BlobNotFound", `The source registry has no blob ${digest} for ${fromRepo}.`);
    const bytes = Buffer.from(await blob.arrayBuffer());
    const started = await fetch(`${toUrl}/v2/${toRepo}/blobs/uploads/`, { method: "POST" });
    const location = started.headers.get("location");
    if (started.status !== 202 || !location)
      throw new Error(`starting a blob upload to ${toRepo}: HTTP ${started.status}`);
    const url = new URL(location, toUrl);
    url.searchParams.set("digest", digest);
    const put = await fetch(url, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream" },
      body: bytes,
    });
    if (put.status !== 201) throw new Error(`uploading blob ${digest} to ${toRepo}: HTTP ${put.status}`);
  }
}

async function putManifest(
  storeUrl: string,
  repository: string,
  reference: string,
  manifest: Manifest,
): Promise<void> {
  const put = await fetch(`${storeUrl}/v2/${repository}/manifests/${reference}`, {
    method: "PUT",
    headers: { "content-type": manifest.mediaType },
    body: manifest.bytes,
  });
  if (put.status !== 201) {
    throw new Error(`putting manifest ${repository}:${reference}: HTTP ${put.status} ${await put.text()}`);
  }
}

function registryKey(ref: RegistryRef): string {
  return `${ref.subscriptionId}/${ref.resourceGroup}/${ref.registryName}`.toLowerCase();
}
