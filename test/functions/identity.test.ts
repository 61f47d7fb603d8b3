import assert from "node:assert/strict";
import { describe, it } from "node:test";
// Default import: the package is a webpack bundle (as the local host imports it).
import functions from "@azure/functions";
import { isFastBuildError } from "../../src/core/errors.js";
import { callerIdentity, requireCaller } from "../../src/functions/identity.js";

const request = (headers: Record<string, string>) =>
  new functions.HttpRequest({ method: "POST", url: "http://localhost/api/promotions/x/approve", headers });

describe("the caller's identity", () => {
  const principal = {
    "x-ms-client-principal-name": "alice@example.com",
    "x-ms-client-principal-id": "oid-alice",
  };

  it("is read from App Service authentication's headers when FASTBUILD_AUTH=appservice", () => {
    assert.deepEqual(callerIdentity(request(principal), { mode: "appservice" }), {
      name: "alice@example.com",
      id: "oid-alice",
    });
  });

  it("falls back to the name claim of x-ms-client-principal", () => {
    const encoded = Buffer.from(
      JSON.stringify({ name_typ: "name", claims: [{ typ: "name", val: "bob@example.com" }] }),
    ).toString("base64");
    assert.deepEqual(callerIdentity(request({ "x-ms-client-principal": encoded }), { mode: "appservice" }), {
      name: "bob@example.com",
    });
  });

  it("ignores the same headers when authentication is off: a client could have sent them", () => {
    assert.equal(callerIdentity(request(principal), { mode: "none" }), undefined);
  });

  it("is required for approvals: 403 saying what to configure, or to sign in", () => {
    assert.throws(
      () => requireCaller(request(principal), { mode: "none" }),
      (error: unknown) =>
        isFastBuildError(error) &&
        error.kind === "forbidden" &&
        /FASTBUILD_AUTH=appservice/.test(error.hint ?? ""),
    );
    assert.throws(
      () => requireCaller(request({}), { mode: "appservice" }),
      (error: unknown) => isFastBuildError(error) && error.code === "NotSignedIn",
    );
  });
});
