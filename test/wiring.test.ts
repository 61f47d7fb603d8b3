/**
 * The wiring's transport options reach the clients it makes: the lease store trusts the CA it is
 * given, as the ARM gateways do (those are exercised by every test that runs a build). Real
 * Azurite over HTTPS with its own self-signed certificate.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startAzurite, type SecureAzurite } from "@fast-build/local-cloud/azurite";
import { loadConfig, type Config } from "../src/config/index.js";
import { emptyRecord } from "../src/core/lease.js";
import { createDeps } from "../src/wiring.js";
import { staticCredential, SUB } from "./azure/armHelpers.js";

let azurite: SecureAzurite;
let config: Config;

before(async () => {
  azurite = await startAzurite({ https: true });
  config = loadConfig({
    FASTBUILD_ENVIRONMENTS: JSON.stringify({
      dev: {
        subscriptionId: SUB,
        resourceGroup: "rg",
        builderVm: "vm",
        registry: "127.0.0.1:5000",
        imageRepository: "apps/demo",
        containerApp: "demo",
        containerName: "main",
        binaryName: "app",
      },
    }),
    AzureWebJobsStorage: azurite.connectionString,
  });
});
after(async () => {
  await azurite?.stop();
});

describe("wiring", () => {
  it("hands its CA to the lease store, which then reaches Table Storage over TLS", async () => {
    const { leases } = createDeps({ config, credential: staticCredential, tlsCa: azurite.ca });
    assert.equal(await leases.write(emptyRecord("builder-tls"), undefined), true);
    assert.equal((await leases.read("builder-tls"))?.record.key, "builder-tls");
  });

  it("without that CA, the lease store refuses the emulator's self-signed certificate", async () => {
    const { leases } = createDeps({ config, credential: staticCredential });
    await assert.rejects(leases.read("builder-tls"), /self-signed certificate/);
  });
});
