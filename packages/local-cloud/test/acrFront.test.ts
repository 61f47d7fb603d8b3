/**
 * The registry's ACR-faithful login server at the protocol level (github:Azure/acr
 * docs/AAD-OAuth.md): the 401 challenge, `POST /oauth2/exchange`, `POST /oauth2/token`, and the
 * Docker Registry v2 API behind a repository-scoped access token.
 */
import assert from "node:assert/strict";
import { request } from "node:https";
import { after, before, describe, it } from "node:test";
import { unsignedStorageToken, LOCAL_OBJECT_ID } from "../src/oauthToken.js";
import { startRegistry, type LocalRegistry } from "../src/registry.js";

let registry: LocalRegistry;
const PUSHER = "00000000-0000-0000-0000-00000000beef";

before(async () => {
  registry = await startRegistry({
    roleOf: (oid) => (oid === PUSHER ? "AcrPush" : oid === LOCAL_OBJECT_ID ? "AcrPull" : undefined),
  });
});
after(async () => {
  await registry?.stop();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function call(
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: string } = {},
) {
  return new Promise<Answer>((resolve, reject) => {
    const req = request(
      new URL(path, registry.loginUrl),
      { method, headers: options.headers, ca: registry.ca },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

const form = (fields: Record<string, string | string[]>) => {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(fields))
    for (const one of [value].flat()) params.append(name, one);
  return { headers: { "content-type": "application/x-www-form-urlencoded" }, body: params.toString() };
};

const entraToken = (
  audience = "https://containerregistry.azure.net",
  objectId = LOCAL_OBJECT_ID,
  lifetimeSeconds = 3600,
) => unsignedStorageToken({ audience, objectId, lifetimeSeconds });

async function refreshToken(aad = entraToken()): Promise<string> {
  const answer = await call(
    "POST",
    "/oauth2/exchange",
    form({ grant_type: "access_token", service: registry.loginServer, access_token: aad }),
  );
  assert.equal(answer.status, 200, answer.body);
  return (JSON.parse(answer.body) as { refresh_token: string }).refresh_token;
}

async function accessToken(scope: string, refresh: string): Promise<string> {
  const answer = await call(
    "POST",
    "/oauth2/token",
    form({ grant_type: "refresh_token", service: registry.loginServer, scope, refresh_token: refresh }),
  );
  assert.equal(answer.status, 200, answer.body);
  return (JSON.parse(answer.body) as { access_token: string }).access_token;
}

const claims = (jwt: string) =>
  JSON.parse(Buffer.from(jwt.split(".")[1]!, "base64url").toString("utf8")) as Record<string, unknown>;

describe("ACR login server (local cloud)", () => {
  it("challenges an anonymous request with ACR's Bearer realm, service and scope", async () => {
    const root = await call("GET", "/v2/");
    assert.equal(root.status, 401);
    assert.equal(
      root.headers["www-authenticate"],
      `Bearer realm="https://${registry.loginServer}/oauth2/token",service="${registry.loginServer}"`,
    );
    const manifest = await call("GET", "/v2/team/app/manifests/latest");
    assert.equal(manifest.status, 401);
    assert.match(String(manifest.headers["www-authenticate"]), /,scope="repository:team\/app:pull"$/);
    assert.equal(
      (JSON.parse(manifest.body) as { errors: { code: string }[] }).errors[0]?.code,
      "UNAUTHORIZED",
    );
  });

  it("exchanges an Entra token for ACR's audience for a refresh token, and that for a scoped access token", async () => {
    const refresh = await refreshToken();
    assert.equal(claims(refresh).aud, registry.loginServer);
    assert.equal(claims(refresh).grant_type, "refresh_token");
    const access = await accessToken("repository:team/app:pull,push", refresh);
    // AcrPull: only pull of what was asked.
    assert.deepEqual(claims(access).access, [{ type: "repository", name: "team/app", actions: ["pull"] }]);
    const missing = await call("GET", "/v2/team/app/manifests/nope", {
      headers: { authorization: `Bearer ${access}` },
    });
    assert.equal(missing.status, 404);
    assert.match(missing.body, /MANIFEST_UNKNOWN|NAME_UNKNOWN/);
  });

  it("accepts an ARM token too (ACR's authentication-as-ARM)", async () => {
    await refreshToken(entraToken("https://management.azure.com/"));
  });

  it("refuses an Entra token for another audience, an expired one, and what is not a JWT", async () => {
    for (const [token, pattern] of [
      [entraToken("https://storage.azure.com"), /audience 'https:\/\/storage.azure.com' is not valid/],
      [entraToken(undefined, undefined, -120), /expired/],
      ["not-a-jwt", /not a JWT/],
    ] as const) {
      const answer = await call(
        "POST",
        "/oauth2/exchange",
        form({ grant_type: "access_token", service: registry.loginServer, access_token: token }),
      );
      assert.equal(answer.status, 401, answer.body);
      assert.match(answer.body, pattern);
    }
  });

  it("refuses another grant type or service with a message saying what to send", async () => {
    const grant = await call(
      "POST",
      "/oauth2/exchange",
      form({ grant_type: "password", service: registry.loginServer, access_token: entraToken() }),
    );
    assert.equal(grant.status, 400);
    assert.match(grant.body, /use access_token/);
    const service = await call(
      "POST",
      "/oauth2/exchange",
      form({ grant_type: "access_token", service: "other.azurecr.io", access_token: entraToken() }),
    );
    assert.equal(service.status, 400);
    assert.match(service.body, new RegExp(`service must be '${registry.loginServer}'`));
  });

  it("refuses a refresh token it did not issue, and an access token as a refresh token", async () => {
    const refresh = await refreshToken();
    const [head, body] = refresh.split(".");
    const forgedBody = Buffer.from(JSON.stringify({ ...claims(refresh), sub: PUSHER })).toString("base64url");
    for (const token of [
      `${head}.${forgedBody}.${refresh.split(".")[2]}`,
      `${head}.${body}.`,
      await accessToken("repository:team/app:pull", refresh),
    ]) {
      const answer = await call(
        "POST",
        "/oauth2/token",
        form({
          grant_type: "refresh_token",
          service: registry.loginServer,
          scope: "repository:team/app:pull",
          refresh_token: token,
        }),
      );
      assert.equal(answer.status, 401, answer.body);
    }
  });

  it("lets AcrPush push through the front and AcrPull only read; no role, nothing", async () => {
    const pusher = await accessToken(
      "repository:team/pushed:pull,push",
      await refreshToken(entraToken(undefined, PUSHER)),
    );
    const upload = await call("POST", "/v2/team/pushed/blobs/uploads/", {
      headers: { authorization: `Bearer ${pusher}` },
    });
    assert.equal(upload.status, 202, upload.body);
    // The storage's Location names the login server, over https.
    assert.match(
      String(upload.headers.location),
      new RegExp(`^(https://${registry.loginServer})?/v2/team/pushed/blobs/uploads/`),
    );

    const reader = await accessToken("repository:team/pushed:pull,push", await refreshToken());
    const refused = await call("POST", "/v2/team/pushed/blobs/uploads/", {
      headers: { authorization: `Bearer ${reader}` },
    });
    assert.equal(refused.status, 401);
    assert.match(String(refused.headers["www-authenticate"]), /scope="repository:team\/pushed:pull,push"/);

    const nobody = await accessToken(
      "repository:team/pushed:pull",
      await refreshToken(entraToken(undefined, "00000000-0000-0000-0000-000000000bad")),
    );
    assert.deepEqual(claims(nobody).access, [{ type: "repository", name: "team/pushed", actions: [] }]);
    const read = await call("GET", "/v2/team/pushed/tags/list", {
      headers: { authorization: `Bearer ${nobody}` },
    });
    assert.equal(read.status, 401);
  });
});
