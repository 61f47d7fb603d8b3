/**
 * LOCAL ONLY (never deployed, never sent to Azure): unsigned access tokens in the shape Azurite's
 * `--oauth basic` accepts. Azurite decodes the bearer token without checking its signature, but
 * insists on `iat nbf exp`, an `iss` under `https://sts.windows.net/`, an `aud` it knows
 * (`https://storage.azure.com`) and the `oid` / `tid` it derives user-delegation keys from.
 */

export interface UnsignedTokenOptions {
  /** Default `https://storage.azure.com` (blob and table both accept it). */
  audience?: string;
  /** The identity's object id (becomes `skoid` in user-delegation SAS URLs). */
  objectId?: string;
  /** The identity's tenant id (becomes `sktid`). */
  tenantId?: string;
  /** Default 24 h: longer than any test or simulation run. */
  lifetimeSeconds?: number;
  /** Clock (tests); defaults to the system clock. */
  now?: () => Date;
}

export const LOCAL_OBJECT_ID = "00000000-0000-0000-0000-00000000f00d";
export const LOCAL_TENANT_ID = "00000000-0000-0000-0000-0000000000a1";

/** An `alg: none` JWT for the local storage emulator. */
export function unsignedStorageToken(options: UnsignedTokenOptions = {}): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const tenantId = options.tenantId ?? LOCAL_TENANT_ID;
  const now = Math.floor((options.now?.() ?? new Date()).getTime() / 1000);
  // nbf/iat a minute back: Azurite compares them with its own clock.
  const payload = {
    aud: options.audience ?? "https://storage.azure.com",
    iss: `https://sts.windows.net/${tenantId}/`,
    iat: now - 60,
    nbf: now - 60,
    exp: now + (options.lifetimeSeconds ?? 24 * 3600),
    oid: options.objectId ?? LOCAL_OBJECT_ID,
    tid: tenantId,
  };
  return `${part({ alg: "none", typ: "JWT" })}.${part(payload)}.`;
}
