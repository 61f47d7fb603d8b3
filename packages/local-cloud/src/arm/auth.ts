/**
 * Who is calling and may they: ARM's bearer-token checks (shape, expiry, audience), the
 * `/metadata/endpoints` document Azure Stack Hub publishes, and an optional RBAC model that maps
 * each emulated operation to the action Azure would authorize.
 */
import type { AuthorizationModel, RoleGrant } from "./types.js";
import type { Reply } from "./http.js";

/**
 * What Azure public cloud's ARM accepts as `aud`: both the new and the classic management
 * resource, with and without the trailing slash (the list Azure prints in
 * `InvalidAuthenticationTokenAudience`).
 */
export const AZURE_PUBLIC_AUDIENCES = [
  "https://management.core.windows.net/",
  "https://management.core.windows.net",
  "https://management.azure.com/",
  "https://management.azure.com",
];

export interface Caller {
  objectId: string;
}

interface Claims {
  aud?: unknown;
  exp?: unknown;
  oid?: unknown;
}

/**
 * Checks the bearer token as ARM does before routing: present, a JWT, not expired, for one of
 * `audiences`. The signature is not checked (tokens here are unsigned). Returns the caller, or the
 * 401 ARM answers (with `WWW-Authenticate`).
 */
export function authenticate(
  authorization: string | undefined,
  audiences: readonly string[],
  now = new Date(),
): Caller | Reply {
  const match = /^Bearer (\S+)$/i.exec(authorization ?? "");
  if (!match) {
    return unauthorized(
      "AuthenticationFailed",
      "Authentication failed. The 'Authorization' header is missing or is not a Bearer token.",
    );
  }
  const claims = decodeJwt(match[1]!);
  if (!claims) return unauthorized("InvalidAuthenticationToken", "The access token is invalid.");
  if (typeof claims.exp === "number" && claims.exp * 1000 <= now.getTime()) {
    return unauthorized(
      "ExpiredAuthenticationToken",
      `The access token expiry UTC time '${new Date(claims.exp * 1000).toUTCString()}' is earlier than current UTC time '${now.toUTCString()}'.`,
    );
  }
  const aud = typeof claims.aud === "string" ? claims.aud : "";
  if (!audiences.includes(aud)) {
    return unauthorized(
      "InvalidAuthenticationTokenAudience",
      `The access token has been obtained for wrong audience or resource '${aud}'. It should exactly match with one of the allowed audiences ${audiences.map((a) => `'${a}'`).join(",")}.`,
    );
  }
  return { objectId: typeof claims.oid === "string" ? claims.oid : "" };
}

function unauthorized(code: string, message: string): Reply {
  return {
    status: 401,
    headers: {
      "WWW-Authenticate": `Bearer authorization_uri="https://login.windows.net/", error="invalid_token", error_description="${message.replace(/"/g, "'")}"`,
    },
    body: { error: { code, message } },
  };
}

function decodeJwt(token: string): Claims | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8"));
    return typeof payload === "object" && payload !== null ? payload : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `GET <arm>/metadata/endpoints?api-version=2015-01-01`, unauthenticated, as Azure Stack Hub
 * serves it: clients read the token audience from `authentication.audiences`
 * (https://learn.microsoft.com/azure-stack/user/azure-stack-version-profiles-azurecli2).
 */
export function metadataEndpoints(endpoint: string, audiences: readonly string[]): Reply {
  return {
    status: 200,
    body: {
      galleryEndpoint: `${endpoint}/gallery/`,
      graphEndpoint: "https://graph.windows.net/",
      portalEndpoint: `${endpoint}/portal/`,
      authentication: { loginEndpoint: "https://login.microsoftonline.com/", audiences: [...audiences] },
    },
  };
}

// ---- authorization ---------------------------------------------------------------------------

const ID = "([^/]+)";
const VM = `/subscriptions/${ID}/resourceGroups/${ID}/providers/Microsoft\\.Compute/virtualMachines/${ID}`;
const APP = `/subscriptions/${ID}/resourceGroups/${ID}/providers/Microsoft\\.App/containerApps/${ID}`;
const REGISTRY = `/subscriptions/${ID}/resourceGroups/${ID}/providers/Microsoft\\.ContainerRegistry/registries/${ID}`;

/** One emulated ARM operation and the RBAC action Azure checks for it. */
export interface ArmOperation {
  method: string;
  /** Matched against the decoded request path; the scope is the resource id it names. */
  path: RegExp;
  action: string;
}

/**
 * Every operation the emulator serves, with its action (Azure's resource-provider operations list,
 * https://learn.microsoft.com/azure/role-based-access-control/permissions/compute and
 * …/permissions/containers). The scope Azure reports is the resource the path names, without the
 * trailing action segment. Operation-status polls are not listed: ARM lets whoever started an
 * operation poll it.
 */
export const ARM_OPERATIONS: readonly ArmOperation[] = [
  { method: "GET", path: re(`${VM}`), action: "Microsoft.Compute/virtualMachines/read" },
  {
    method: "GET",
    path: re(`${VM}/instanceView`),
    action: "Microsoft.Compute/virtualMachines/instanceView/read",
  },
  { method: "POST", path: re(`${VM}/start`), action: "Microsoft.Compute/virtualMachines/start/action" },
  {
    method: "POST",
    path: re(`${VM}/deallocate`),
    action: "Microsoft.Compute/virtualMachines/deallocate/action",
  },
  {
    method: "POST",
    path: re(`${VM}/powerOff`),
    action: "Microsoft.Compute/virtualMachines/powerOff/action",
  },
  {
    method: "POST",
    path: re(`${VM}/runCommand`),
    action: "Microsoft.Compute/virtualMachines/runCommand/action",
  },
  {
    method: "GET",
    path: re(`${VM}/runCommands(?:/${ID})?`),
    action: "Microsoft.Compute/virtualMachines/runCommands/read",
  },
  {
    method: "PUT",
    path: re(`${VM}/runCommands/${ID}`),
    action: "Microsoft.Compute/virtualMachines/runCommands/write",
  },
  {
    method: "PATCH",
    path: re(`${VM}/runCommands/${ID}`),
    action: "Microsoft.Compute/virtualMachines/runCommands/write",
  },
  {
    method: "DELETE",
    path: re(`${VM}/runCommands/${ID}`),
    action: "Microsoft.Compute/virtualMachines/runCommands/delete",
  },
  { method: "GET", path: re(`${APP}`), action: "Microsoft.App/containerApps/read" },
  { method: "PATCH", path: re(`${APP}`), action: "Microsoft.App/containerApps/write" },
  {
    method: "GET",
    path: re(`${APP}/revisions(?:/${ID})?`),
    action: "Microsoft.App/containerApps/revisions/read",
  },
  {
    method: "GET",
    path: re(`${REGISTRY}`),
    action: "Microsoft.ContainerRegistry/registries/read",
  },
  {
    method: "POST",
    path: re(`${REGISTRY}/importImage`),
    action: "Microsoft.ContainerRegistry/registries/importImage/action",
  },
];

function re(pattern: string): RegExp {
  return new RegExp(`^${pattern}$`, "i");
}

/** The action a request needs and the scope it is checked over, when the emulator knows the route. */
export function requiredPermission(
  method: string,
  path: string,
): { action: string; scope: string } | undefined {
  const operation = ARM_OPERATIONS.find((op) => op.method === method && op.path.test(path));
  if (!operation) return undefined;
  // `…/virtualMachines/vm/start` is authorized over the VM: drop an action segment.
  const scope = /\/(?:start|deallocate|powerOff|runCommand|instanceView|importImage)$/i.test(path)
    ? path.replace(/\/[^/]+$/, "")
    : path;
  return { action: operation.action, scope };
}

/**
 * 403 `AuthorizationFailed` in Azure's words when the model gives `caller` no role that allows the
 * request's action over its scope; undefined when allowed, or when there is no model.
 */
export function authorize(
  model: AuthorizationModel | undefined,
  caller: Caller,
  method: string,
  path: string,
): Reply | undefined {
  if (!model) return undefined;
  const needed = requiredPermission(method, path);
  if (!needed) return undefined;
  const grants = model.roleAssignments[caller.objectId] ?? [];
  if (grants.some((grant) => allows(grant, needed.action, needed.scope))) return undefined;
  const oid = caller.objectId;
  return {
    status: 403,
    body: {
      error: {
        code: "AuthorizationFailed",
        message: `The client '${oid}' with object id '${oid}' does not have authorization to perform action '${needed.action}' over scope '${needed.scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.`,
      },
    },
  };
}

/** Whether one assignment allows a control-plane action at a scope (inherited from parent scopes). */
export function allows(grant: RoleGrant, action: string, scope: string): boolean {
  const parent = grant.scope.replace(/\/+$/, "").toLowerCase();
  const target = scope.toLowerCase();
  if (parent !== "/" && target !== parent && !target.startsWith(`${parent}/`)) return false;
  const matches = (patterns: string[] | undefined) => (patterns ?? []).some((p) => wildcard(p).test(action));
  return matches(grant.actions) && !matches(grant.notActions);
}

function wildcard(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${escaped}$`, "i");
}
