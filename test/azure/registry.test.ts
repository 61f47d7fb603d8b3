/**
 * The registry gateway against a real registry: Debian's `docker-registry` on 127.0.0.1, over the
 * Docker Registry v2 API (the loopback path of src/azure/registry.ts).
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";
import { createRegistryGateway } from "../../src/azure/registry.js";
import { PermanentError, TransientError } from "../../src/core/errors.js";
import { staticCredential } from "./armHelpers.js";
import { pushImage } from "./registryImages.js";

let registry: LocalRegistry;
const gateway = createRegistryGateway({ credential: staticCredential, timeoutMs: 5000 });

before(async () => {
  registry = await startRegistry();
});
after(async () => {
  await registry?.stop();
});

describe("registry gateway", () => {
  it("reads the digest a tag names, as the registry computed it", async () => {
    const pushed = await pushImage(registry.url, "team/app", "b-1");
    assert.equal(
      await gateway.manifestDigest({ registry: registry.host, repository: "team/app" }, "b-1"),
      pushed,
    );
  });

  it("follows a tag that was pushed again", async () => {
    await pushImage(registry.url, "team/app", "moving", "one");
    const second = await pushImage(registry.url, "team/app", "moving", "two");
    assert.equal(
      await gateway.manifestDigest({ registry: registry.host, repository: "team/app" }, "moving"),
      second,
    );
  });

  it("answers undefined for a tag or repository the registry does not have", async () => {
    await pushImage(registry.url, "team/app", "b-2");
    const ref = { registry: registry.host, repository: "team/app" };
    assert.equal(await gateway.manifestDigest(ref, "nope"), undefined);
    assert.equal(await gateway.manifestDigest({ ...ref, repository: "team/none" }, "b-2"), undefined);
  });

  it("refuses a manifest whose bytes do not hash to the digest the server claims", async () => {
    // A registry that lies about the digest (a protocol-level double: the real one never does).
    const liar = createServer((_request, response) => {
      response.writeHead(200, {
        "content-type": "application/vnd.oci.image.manifest.v1+json",
        "docker-content-digest": `sha256:${"0".repeat(64)}`,
      });
      response.end('{"schemaVersion":2}');
    });
    await new Promise<void>((resolve) => liar.listen(0, "127.0.0.1", resolve));
    const address = liar.address();
    const port = typeof address === "object" && address ? address.port : 0;
    try {
      await assert.rejects(
        gateway.manifestDigest({ registry: `127.0.0.1:${port}`, repository: "team/app" }, "b-1"),
        (error: unknown) => error instanceof PermanentError && error.code === "RegistryDigestMismatch",
      );
    } finally {
      liar.close();
    }
  });

  it("reports an unreachable registry as transient", async () => {
    await assert.rejects(
      gateway.manifestDigest({ registry: "127.0.0.1:9", repository: "team/app" }, "b-1"),
      (error: unknown) => error instanceof TransientError && error.code === "RegistryUnavailable",
    );
  });
});
