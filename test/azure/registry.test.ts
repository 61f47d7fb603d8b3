/**
 * The registry gateway against a real registry through its ACR-faithful login server: Debian's
 * `docker-registry` behind packages/local-cloud/src/acrFront.ts (HTTPS, ACR's token exchange), read
 * with `@azure/container-registry` as the app's identity: the library path of src/azure/registry.ts.
 */
import assert from "node:assert/strict";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";
import { createLoopbackCertificate } from "@fast-build/local-cloud/tls";
import { createRegistryGateway, type RegistryGatewayOptions } from "../../src/azure/registry.js";
import { ConfigError, PermanentError, TransientError, UnauthorizedError } from "../../src/core/errors.js";
import { staticCredential } from "./armHelpers.js";
import { pushImage } from "./registryImages.js";

let registry: LocalRegistry;
/** A registry where the app's identity holds no role. */
let noRole: LocalRegistry;

const gatewayFor = (target: LocalRegistry, extra: Partial<RegistryGatewayOptions> = {}) =>
  createRegistryGateway({
    credential: staticCredential,
    tlsCa: target.ca,
    endpoints: { [target.host]: target.loginUrl },
    maxRetries: 0,
    ...extra,
  });

before(async () => {
  [registry, noRole] = await Promise.all([startRegistry(), startRegistry({ roleOf: () => undefined })]);
});
after(async () => {
  await Promise.all([registry?.stop(), noRole?.stop()]);
});

describe("registry gateway (library path, ACR token exchange)", () => {
  it("reads the digest a tag names, as the registry computed it, after the token exchange", async () => {
    const pushed = await pushImage(registry.url, "team/app", "b-1");
    const before = { ...registry.frontRequests };
    const gateway = gatewayFor(registry);
    assert.equal(
      await gateway.manifestDigest({ registry: registry.host, repository: "team/app" }, "b-1"),
      pushed,
    );
    // The library met the challenge: one exchange (Entra → refresh token), one token (→ access token).
    assert.equal(registry.frontRequests.exchange - before.exchange, 1);
    assert.equal(registry.frontRequests.token - before.token, 1);
  });

  it("follows a tag that was pushed again", async () => {
    await pushImage(registry.url, "team/app", "moving", "one");
    const second = await pushImage(registry.url, "team/app", "moving", "two");
    assert.equal(
      await gatewayFor(registry).manifestDigest(
        { registry: registry.host, repository: "team/app" },
        "moving",
      ),
      second,
    );
  });

  it("answers undefined for a tag or repository the registry does not have (404 MANIFEST_UNKNOWN / NAME_UNKNOWN)", async () => {
    await pushImage(registry.url, "team/app", "b-2");
    const gateway = gatewayFor(registry);
    const ref = { registry: registry.host, repository: "team/app" };
    assert.equal(await gateway.manifestDigest(ref, "nope"), undefined);
    assert.equal(await gateway.manifestDigest({ ...ref, repository: "team/none" }, "b-2"), undefined);
  });

  it("refuses an identity token for another audience with the registry's 401, and says which role is needed", async () => {
    await pushImage(registry.url, "team/app", "b-3");
    const gateway = gatewayFor(registry, { audience: "https://storage.azure.com" });
    await assert.rejects(
      gateway.manifestDigest({ registry: registry.host, repository: "team/app" }, "b-3"),
      (error: unknown) =>
        error instanceof UnauthorizedError &&
        /audience/.test(error.message) &&
        /AcrPull/.test(error.hint ?? ""),
    );
  });

  it("refuses an identity without a role on the registry (the access token grants nothing)", async () => {
    await pushImage(noRole.url, "team/app", "b-4");
    await assert.rejects(
      gatewayFor(noRole).manifestDigest({ registry: noRole.host, repository: "team/app" }, "b-4"),
      (error: unknown) => error instanceof UnauthorizedError && /AcrPull/.test(error.hint ?? ""),
    );
  });

  it("refuses a manifest whose bytes do not hash to the digest the server claims", async () => {
    // A registry that lies about the digest (a protocol-level double: the real one never does).
    const { key, cert } = await createLoopbackCertificate();
    const liar = createServer({ key, cert }, (_request, response) => {
      response.writeHead(200, {
        "content-type": "application/vnd.oci.image.manifest.v1+json",
        "docker-content-digest": `sha256:${"0".repeat(64)}`,
      });
      response.end('{"schemaVersion":2}');
    });
    await new Promise<void>((resolve) => liar.listen(0, "127.0.0.1", resolve));
    const { port } = liar.address() as AddressInfo;
    try {
      const gateway = createRegistryGateway({ credential: staticCredential, tlsCa: cert, maxRetries: 0 });
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
      gatewayFor(registry, { endpoints: {} }).manifestDigest(
        { registry: "127.0.0.1:9", repository: "team/app" },
        "b-1",
      ),
      (error: unknown) => error instanceof TransientError,
    );
  });

  it("refuses a plain-http endpoint: ACR's data plane is HTTPS only", () => {
    assert.throws(
      () => gatewayFor(registry, { endpoints: { [registry.host]: registry.url } }),
      (error: unknown) => error instanceof ConfigError && /https URL/.test(error.message),
    );
  });
});
