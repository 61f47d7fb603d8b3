import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { easyAuthHeaders } from "../../src/host/index.js";

const token = (claims: object) =>
  `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.`;

describe("the local host's App Service authentication", () => {
  it("drops every x-ms-client-principal header a client sent", () => {
    const headers = easyAuthHeaders({
      "x-ms-client-principal-name": "admin@contoso.com",
      "x-ms-client-principal-id": "forged",
      "x-ms-client-principal": "e30=",
      accept: "application/json",
    });
    assert.deepEqual(headers, { accept: "application/json" });
  });

  it("names the signed-in user from the bearer token, as the platform does", () => {
    const headers = easyAuthHeaders({
      authorization: `Bearer ${token({ preferred_username: "alice@contoso.com", oid: "oid-1" })}`,
      "x-ms-client-principal-name": "admin@contoso.com",
    });
    assert.equal(headers["x-ms-client-principal-name"], "alice@contoso.com");
    assert.equal(headers["x-ms-client-principal-id"], "oid-1");
    const principal = JSON.parse(
      Buffer.from(headers["x-ms-client-principal"] ?? "", "base64").toString(),
    ) as {
      claims: { typ: string; val: string }[];
    };
    assert.deepEqual(principal.claims[0], { typ: "name", val: "alice@contoso.com" });
  });

  it("gives no user for a token without a name or a malformed one", () => {
    assert.equal(
      easyAuthHeaders({ authorization: `Bearer ${token({ oid: "x" })}` })["x-ms-client-principal-name"],
      undefined,
    );
    assert.equal(
      easyAuthHeaders({ authorization: "Bearer not-a-jwt" })["x-ms-client-principal-name"],
      undefined,
    );
  });
});
