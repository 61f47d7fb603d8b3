/**
 * The builder lease store on the production path: Table Storage reached with the app's managed
 * identity only (no connection string, no key). Real Azurite over HTTPS with `--oauth basic`; the
 * real ManagedIdentityCredential gets its token from the ARM emulator's identity endpoint.
 *
 * `TableLeaseStore` takes no TLS options, so the scenario runs in a child process started with
 * `NODE_EXTRA_CA_CERTS` (see leaseOverIdentity.ts); this file asserts on its report.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { get as httpsGet } from "node:https";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { startArmEmulator, type ArmEmulator } from "@fast-build/local-cloud/arm";
import { startAzurite, type SecureAzurite } from "@fast-build/local-cloud/azurite";
import { unsignedStorageToken } from "@fast-build/local-cloud/oauthToken";
import type { LeaseOverIdentityReport } from "./leaseOverIdentity.js";

const SCENARIO = fileURLToPath(new URL("./leaseOverIdentity.ts", import.meta.url));

let azurite: SecureAzurite;
let arm: ArmEmulator;
let report: LeaseOverIdentityReport;

/** Runs the scenario as a Functions host would start the app: CA and identity from the environment. */
async function runScenario(env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, ["--import", "tsx", SCENARIO], {
    env: { PATH: process.env.PATH, ...env },
    timeout: 60_000,
  });
}

before(async () => {
  [azurite, arm] = await Promise.all([
    startAzurite({ https: true, oauth: true }),
    startArmEmulator({ accessToken: unsignedStorageToken() }),
  ]);
  const { stdout } = await runScenario({
    NODE_EXTRA_CA_CERTS: azurite.caFile,
    IDENTITY_ENDPOINT: arm.identityEndpoint,
    IDENTITY_HEADER: arm.identityHeader,
    FASTBUILD_TEST_TABLE_ENDPOINT: azurite.tableEndpoint,
  });
  report = JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as LeaseOverIdentityReport;
});
after(async () => {
  await Promise.all([azurite?.stop(), arm?.stop()]);
});

describe("table lease store over the managed identity (no key)", () => {
  it("creates a builder record once and refuses the second create", () => {
    assert.deepEqual(report.creates, [true, false]);
  });

  it("refuses a write based on a version someone else has already replaced", () => {
    assert.deepEqual(report.casWrites, [true, false]);
    assert.equal(report.holderAfterCas, "build-a");
  });

  it("gives the lease to exactly one of two builds asking at once", () => {
    assert.deepEqual([...report.acquires].sort(), ["acquired", "queued"]);
    assert.equal(report.generationAfterAcquire, 1);
    assert.equal(report.queuedAfterAcquire, 1);
  });

  it("lists the builder records", () => {
    assert.deepEqual(report.listedKeys, ["k-create", "k-race"]);
  });

  it("is refused without a token: the scenario got in only through the identity", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const request = httpsGet(`${azurite.tableEndpoint}/Tables`, { ca: azurite.ca }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on("error", reject);
    });
    assert.equal(status, 403);
  });
});
