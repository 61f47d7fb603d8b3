/**
 * Who is calling: the one place the API derives a caller's identity from a request.
 *
 * App Service authentication ("Easy Auth") signs the user in before the request reaches the app
 * and passes who they are in `x-ms-client-principal-name`, `x-ms-client-principal-id` and
 * `x-ms-client-principal` (base64 JSON with `claims`); the platform removes any copy of these
 * headers a client sent, but only while authentication is on (MicrosoftDocs azure-docs
 * `articles/app-service/configure-authentication-user-identities.md`). So the headers are trusted
 * only when the app says authentication is on (FASTBUILD_AUTH=appservice); otherwise nobody is
 * known and whatever needs an identity (approvals) is refused with what to configure.
 */
import type { HttpRequest } from "@azure/functions";
import type { Config } from "../config/index.js";
import { ForbiddenError } from "../core/errors.js";
import type { Principal } from "../core/promotion.js";

/** The caller, when App Service authentication is on and signed them in; else undefined. */
export function callerIdentity(request: HttpRequest, auth: Config["auth"]): Principal | undefined {
  if (auth.mode !== "appservice") return undefined;
  const name = request.headers.get("x-ms-client-principal-name")?.trim();
  const id = request.headers.get("x-ms-client-principal-id")?.trim();
  if (name) return { name: name.slice(0, 200), ...(id ? { id: id.slice(0, 100) } : {}) };
  // Some providers leave the name header empty: read the name claim of the encoded principal.
  const encoded = request.headers.get("x-ms-client-principal");
  if (!encoded) return undefined;
  try {
    const principal = JSON.parse(Buffer.from(encoded, "base64").toString("utf8")) as {
      claims?: { typ?: unknown; val?: unknown }[];
      name_typ?: unknown;
    };
    const nameType = typeof principal.name_typ === "string" ? principal.name_typ : "name";
    const claim = principal.claims?.find((c) => c.typ === nameType || c.typ === "name");
    if (typeof claim?.val === "string" && claim.val !== "") {
      return { name: claim.val.slice(0, 200), ...(id ? { id: id.slice(0, 100) } : {}) };
    }
  } catch {
    // Not the platform's header: no identity.
  }
  return undefined;
}

/** The caller, or a 403 that says what to configure (auth off) or to sign in (no principal). */
export function requireCaller(request: HttpRequest, auth: Config["auth"]): Principal {
  if (auth.mode !== "appservice") {
    throw new ForbiddenError("approvals need to know who is approving, and this API does not", {
      code: "AuthenticationNotConfigured",
      hint: "Turn on App Service authentication for the function app (Microsoft Entra ID) and set the app setting FASTBUILD_AUTH=appservice.",
    });
  }
  const caller = callerIdentity(request, auth);
  if (!caller) {
    throw new ForbiddenError("the request carries no signed-in user", {
      code: "NotSignedIn",
      hint: "Call the API as a signed-in user (App Service authentication), e.g. with a bearer token from az account get-access-token.",
    });
  }
  return caller;
}
