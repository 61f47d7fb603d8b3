/**
 * The local registry's login server as Azure Container Registry presents it to a client that signs
 * in with Microsoft Entra ID: HTTPS only, and ACR's token exchange in front of the Docker Registry v2
 * API of the storage behind it (Debian's `docker-registry`, see registry.ts). This is what
 * `@azure/container-registry` talks to, so the product's registry gateway runs its library path here.
 *
 * The protocol, from ACR's own description (github:Azure/acr docs/AAD-OAuth.md, "Getting credentials
 * programmatically"), and what the library sends
 * (`ContainerRegistryChallengeHandler`, `ContainerRegistryRefreshTokenCredential` in
 * @azure/container-registry 1.1.x):
 * - a registry request without a valid bearer token gets 401 with
 *   `WWW-Authenticate: Bearer realm="https://<login server>/oauth2/token",service="<login server>"`
 *   and, for a repository, `scope="repository:<name>:pull"` (`pull,push` for writes), body
 *   `{"errors":[{"code":"UNAUTHORIZED",…}]}`;
 * - `POST /oauth2/exchange` (form: `grant_type=access_token`, `service`, `tenant`, `access_token` =
 *   the caller's Entra access token) answers `{"refresh_token": …}`, an ACR-issued JWT for `service`;
 *   the Entra token must be unexpired and for ACR's audience (the library asks for
 *   `https://containerregistry.azure.net/.default`), or ARM's (ACR also accepts ARM tokens unless
 *   "authentication-as-arm" is disabled); anything else is refused with 401 UNAUTHORIZED;
 * - `POST /oauth2/token` (form: `grant_type=refresh_token`, `service`, `scope` (repeatable),
 *   `refresh_token`) answers `{"access_token": …}` carrying the granted `access` claim: the
 *   requested actions the caller's role allows (AcrPull: `pull`; AcrPush: `pull`, `push`).
 * Tokens here are HMAC-signed by this front (a forged or altered one is refused), name `service` as
 * `aud`, and expire: the access token after 75 min (the docs' claim set: `exp - iat` = 4500 s), the
 * refresh token after 3 h (what Microsoft Learn says of `az acr login --expose-token`'s token). Entra tokens are decoded, not verified, as elsewhere in the local cloud.
 *
 * LOCAL ONLY, never a thing Azure does: the storage's own plain-http port stays open, anonymously,
 * for the local builder VM (build.sh's `FASTBUILD_REGISTRY_LOGIN=none`, scheme http), whose
 * buildah would otherwise have to run `az acr login`; see registry.ts.
 */
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { AZURE_PUBLIC_AUDIENCES } from "./arm/auth.js";
import { close, listen, readBody } from "./httpServer.js";
import { createLoopbackCertificate } from "./tls.js";

/** Entra token audiences ACR's `/oauth2/exchange` accepts (ACR's own resource, then ARM's). */
export const ACR_AUDIENCES: readonly string[] = [
  "https://containerregistry.azure.net",
  "https://containerregistry.azure.net/",
  ...AZURE_PUBLIC_AUDIENCES,
];

/** The registry actions a role grants on every repository (ACR's built-in roles' data actions). */
export const ROLE_ACTIONS = {
  AcrPull: ["pull"],
  AcrPush: ["pull", "push"],
} as const satisfies Record<string, readonly string[]>;

export type AcrRole = keyof typeof ROLE_ACTIONS;

export interface AcrFrontOptions {
  /** The storage's Docker Registry v2 API, `http://127.0.0.1:PORT`. */
  backendUrl: string;
  /**
   * The role of a caller (its Entra `oid`) on this registry, or undefined for none (then
   * `/oauth2/token` grants nothing and every request is refused). Default: AcrPull for everyone.
   */
  roleOf?: (objectId: string) => AcrRole | undefined;
  /** Clock (tests); defaults to the system clock. */
  now?: () => Date;
}

export interface AcrFront {
  /** `127.0.0.1:PORT`: the login server, ACR's `service`. */
  loginServer: string;
  /** `https://127.0.0.1:PORT`. */
  url: string;
  /** PEM of the certificate the front serves; clients trust it through `tlsOptions.ca`. */
  ca: string;
  /** Requests answered so far, by path kind (`exchange`, `token`, `v2`): the tests count them. */
  requests: { exchange: number; token: number; v2: number };
  stop(): Promise<void>;
}

const REFRESH_LIFETIME_S = 3 * 3600;
const ACCESS_LIFETIME_S = 75 * 60;
/** `<name>` of a repository scope: Docker's distribution grammar (path components, lower case). */
const REPOSITORY_NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

interface Access {
  type: string;
  name: string;
  actions: string[];
}

export async function startAcrFront(options: AcrFrontOptions): Promise<AcrFront> {
  const { key, cert } = await createLoopbackCertificate();
  const secret = randomBytes(32);
  const now = () => options.now?.() ?? new Date();
  const roleOf = options.roleOf ?? (() => "AcrPull" as const);
  const requests = { exchange: 0, token: 0, v2: 0 };
  let loginServer = "";

  const sign = (claims: Record<string, unknown>): string => {
    const head = Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT" })).toString("base64url");
    const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
    const mac = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
    return `${head}.${body}.${mac}`;
  };
  /** The claims of a token this front issued, if its MAC is right and it is unexpired and for us. */
  const verify = (token: string, grantType: string): Record<string, unknown> | undefined => {
    const [head, body, mac] = token.split(".");
    if (!head || !body || !mac) return undefined;
    const expected = createHmac("sha256", secret).update(`${head}.${body}`).digest();
    const given = Buffer.from(mac, "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    const claims = decode(token);
    if (!claims || claims.aud !== loginServer || claims.grant_type !== grantType) return undefined;
    if (typeof claims.exp !== "number" || claims.exp * 1000 <= now().getTime()) return undefined;
    return claims;
  };

  const exchange = async (req: IncomingMessage, res: ServerResponse) => {
    requests.exchange++;
    const form = new URLSearchParams((await readBody(req, 64 * 1024)).toString("utf8"));
    const grantType = form.get("grant_type");
    if (grantType !== "access_token") {
      return errors(
        res,
        400,
        "UNSUPPORTED",
        `grant_type '${grantType ?? ""}' is not supported: use access_token`,
      );
    }
    if (form.get("service") !== loginServer) {
      return errors(res, 400, "DENIED", `service must be '${loginServer}', the registry's login server`);
    }
    const claims = decode(form.get("access_token") ?? "");
    if (!claims) return errors(res, 401, "UNAUTHORIZED", "the access_token is not a JWT");
    if (typeof claims.exp !== "number" || claims.exp * 1000 <= now().getTime()) {
      return errors(res, 401, "UNAUTHORIZED", "the access_token has expired");
    }
    const aud = typeof claims.aud === "string" ? claims.aud : "";
    if (!ACR_AUDIENCES.includes(aud)) {
      return errors(
        res,
        401,
        "UNAUTHORIZED",
        `the access_token's audience '${aud}' is not valid for this registry: request a token for https://containerregistry.azure.net`,
      );
    }
    const seconds = Math.floor(now().getTime() / 1000);
    const tenant = form.get("tenant") ?? (typeof claims.tid === "string" ? claims.tid : "");
    json(res, 200, {
      refresh_token: sign({
        jti: randomUUID(),
        sub: typeof claims.oid === "string" ? claims.oid : "",
        nbf: seconds,
        iat: seconds,
        exp: seconds + REFRESH_LIFETIME_S,
        iss: "Azure Container Registry",
        aud: loginServer,
        version: "1.0",
        grant_type: "refresh_token",
        tenant,
      }),
    });
  };

  const token = async (req: IncomingMessage, res: ServerResponse) => {
    requests.token++;
    if (req.method !== "POST") {
      return errors(res, 405, "UNSUPPORTED", "only POST /oauth2/token with a refresh token is emulated here");
    }
    const form = new URLSearchParams((await readBody(req, 64 * 1024)).toString("utf8"));
    if (form.get("grant_type") !== "refresh_token") {
      return errors(res, 400, "UNSUPPORTED", "grant_type must be refresh_token");
    }
    if (form.get("service") !== loginServer) {
      return errors(res, 400, "DENIED", `service must be '${loginServer}', the registry's login server`);
    }
    const refresh = verify(form.get("refresh_token") ?? "", "refresh_token");
    if (!refresh) return errors(res, 401, "UNAUTHORIZED", "the refresh_token is not valid for this registry");
    const subject = typeof refresh.sub === "string" ? refresh.sub : "";
    const role = roleOf(subject);
    const allowed: readonly string[] = role ? ROLE_ACTIONS[role] : [];
    const access: Access[] = [];
    for (const scope of form.getAll("scope")) {
      const parsed = parseScope(scope);
      if (!parsed) return errors(res, 400, "UNSUPPORTED", `scope '${scope}' is not type:name:actions`);
      const actions = parsed.actions.filter((action) => allowed.includes(action));
      access.push({ ...parsed, actions });
    }
    const seconds = Math.floor(now().getTime() / 1000);
    json(res, 200, {
      access_token: sign({
        jti: randomUUID(),
        sub: subject,
        nbf: seconds,
        iat: seconds,
        exp: seconds + ACCESS_LIFETIME_S,
        iss: "Azure Container Registry",
        aud: loginServer,
        version: "1.0",
        access,
        grant_type: "access_token",
      }),
    });
  };

  const v2 = (req: IncomingMessage, res: ServerResponse) => {
    requests.v2++;
    // The library sends the repository percent-encoded (`/v2/team%2Fapp/…`); ACR decodes it.
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? "/", "https://x").pathname);
    } catch {
      return errors(res, 400, "NAME_INVALID", "the request path is not valid percent-encoding");
    }
    const repository = /^\/v2\/(.+?)\/(?:manifests|blobs|tags)\//.exec(path)?.[1];
    const write = !["GET", "HEAD"].includes(req.method ?? "GET");
    const needed = write ? ["pull", "push"] : ["pull"];
    const realm = `realm="https://${loginServer}/oauth2/token",service="${loginServer}"`;
    const challenge = repository
      ? `Bearer ${realm},scope="repository:${repository}:${needed.join(",")}"`
      : `Bearer ${realm}`;
    const bearer = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    const claims = bearer ? verify(bearer, "access_token") : undefined;
    const granted = Array.isArray(claims?.access) ? (claims.access as Access[]) : [];
    const allowed = claims
      ? repository
        ? needed.every((action) =>
            granted.some(
              (a) => a.type === "repository" && a.name === repository && a.actions.includes(action),
            ),
          )
        : path === "/v2/" // the version check needs only a valid token
      : false;
    if (!allowed) {
      req.resume();
      const text = JSON.stringify({
        errors: [
          {
            code: "UNAUTHORIZED",
            message: "authentication required, visit https://aka.ms/acr/authorization for more information.",
            detail: null,
          },
        ],
      });
      res.writeHead(401, {
        "content-type": "application/json; charset=utf-8",
        "content-length": Buffer.byteLength(text),
        "www-authenticate": challenge,
        "docker-distribution-api-version": "registry/2.0",
      });
      res.end(text);
      return;
    }
    proxy(req, res, options.backendUrl, loginServer);
  };

  const server = createHttpsServer({ key, cert }, (req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const handle =
      path === "/oauth2/exchange" && req.method === "POST"
        ? exchange(req, res)
        : path === "/oauth2/token"
          ? token(req, res)
          : path === "/v2" || path.startsWith("/v2/")
            ? v2(req, res)
            : errors(res, 404, "NOT_FOUND", `no route ${req.method} ${path}`);
    Promise.resolve(handle).catch((error: unknown) => {
      errors(res, 400, "UNSUPPORTED", error instanceof Error ? error.message : String(error));
    });
  });
  await listen(server);
  const { port } = server.address() as AddressInfo;
  loginServer = `127.0.0.1:${port}`;
  return {
    loginServer,
    url: `https://${loginServer}`,
    ca: cert,
    requests,
    stop: () => close(server),
  };
}

/** Forwards a registry request to the storage, as `https://<login server>` (its Location headers name the front). */
function proxy(req: IncomingMessage, res: ServerResponse, backendUrl: string, loginServer: string): void {
  const headers = { ...req.headers, host: loginServer, "x-forwarded-proto": "https" };
  delete headers.authorization;
  const upstream = httpRequest(
    new URL(req.url ?? "/", backendUrl),
    { method: req.method, headers },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on("error", (error) =>
    errors(res, 502, "UNAVAILABLE", `the registry's storage did not answer: ${error.message}`),
  );
  req.pipe(upstream);
}

function parseScope(scope: string): Access | undefined {
  const parts = scope.split(":");
  if (parts.length !== 3) return undefined;
  const [type, name, actions] = parts as [string, string, string];
  if (type !== "repository" || !REPOSITORY_NAME.test(name)) return undefined;
  return { type, name, actions: actions.split(",").filter(Boolean) };
}

function decode(token: string): Record<string, unknown> | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8"));
    return claims && typeof claims === "object" ? (claims as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

/** ACR's error body: `{"errors":[{"code","message"}]}` (the Docker Registry v2 error shape). */
function errors(res: ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) return;
  json(res, status, { errors: [{ code, message }] });
}
