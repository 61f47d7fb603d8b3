/**
 * The one mapper from SDK errors to typed errors, as a table: the SDK's own `RestError` (from the
 * pipeline package every Azure client shares) with the status, code and headers a service sends,
 * and what each gateway's callers get. The gateways' own tests cover the same mapping end to end
 * against Azurite and the ARM emulator.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createHttpHeaders, createPipelineRequest, RestError } from "@azure/core-rest-pipeline";
import { retryAfterMs, toTypedError, type AzureService } from "../../src/azure/errors.js";
import {
  ConflictError,
  type FastBuildError,
  InvalidInputError,
  NotFoundError,
  PermanentError,
  TransientError,
  UnauthorizedError,
} from "../../src/core/errors.js";

function restError(
  status: number | undefined,
  options: { code?: string; headers?: Record<string, string>; message?: string } = {},
): RestError {
  const request = createPipelineRequest({ url: "https://acct.blob.core.windows.net/c/b?sig=SECRET" });
  return new RestError(options.message ?? `status ${status ?? "none"}`, {
    ...(options.code === undefined ? {} : { code: options.code }),
    ...(status === undefined ? {} : { statusCode: status }),
    request,
    ...(status === undefined
      ? {}
      : { response: { status, request, headers: createHttpHeaders(options.headers ?? {}) } }),
  });
}

function networkError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 10.0.0.1:443`), { code });
}

type ErrorClass = abstract new (...args: never[]) => FastBuildError;

const TABLE: Array<{
  service: AzureService;
  given: string;
  error: unknown;
  is: ErrorClass;
  code: string;
  retryable: boolean;
  retryAfterMs?: number;
}> = [
  // ARM
  {
    service: "arm",
    given: "404",
    error: restError(404, { code: "ResourceNotFound" }),
    is: NotFoundError,
    code: "ResourceNotFound",
    retryable: false,
  },
  {
    service: "arm",
    given: "409 busy",
    error: restError(409, { code: "OperationNotAllowed" }),
    is: ConflictError,
    code: "OperationNotAllowed",
    retryable: true,
  },
  {
    service: "arm",
    given: "401",
    error: restError(401, { code: "InvalidAuthenticationToken" }),
    is: UnauthorizedError,
    code: "InvalidAuthenticationToken",
    retryable: false,
  },
  {
    service: "arm",
    given: "403",
    error: restError(403, { code: "AuthorizationFailed" }),
    is: PermanentError,
    code: "AuthorizationFailed",
    retryable: false,
  },
  {
    service: "arm",
    given: "400",
    error: restError(400, { code: "InvalidParameter" }),
    is: PermanentError,
    code: "InvalidParameter",
    retryable: false,
  },
  {
    service: "arm",
    given: "429 with Retry-After seconds",
    error: restError(429, { code: "TooManyRequests", headers: { "retry-after": "7" } }),
    is: TransientError,
    code: "TooManyRequests",
    retryable: true,
    retryAfterMs: 7000,
  },
  {
    service: "arm",
    given: "503 with retry-after-ms",
    error: restError(503, { headers: { "retry-after-ms": "1500", "retry-after": "9" } }),
    is: TransientError,
    code: "Http503",
    retryable: true,
    retryAfterMs: 1500,
  },
  {
    service: "arm",
    given: "500 with x-ms-retry-after-ms",
    error: restError(500, { headers: { "x-ms-retry-after-ms": "250" } }),
    is: TransientError,
    code: "Http500",
    retryable: true,
    retryAfterMs: 250,
  },
  {
    service: "arm",
    given: "501 (never works)",
    error: restError(501),
    is: PermanentError,
    code: "Http501",
    retryable: false,
  },
  {
    service: "arm",
    given: "400 with a capacity code",
    error: restError(400, { code: "AllocationFailed" }),
    is: TransientError,
    code: "AllocationFailed",
    retryable: true,
  },
  {
    service: "arm",
    given: "a failed LRO with a capacity code",
    error: new Error("The long-running operation has failed. ZonalAllocationFailed. No capacity in zone 1."),
    is: TransientError,
    code: "ZonalAllocationFailed",
    retryable: true,
  },
  {
    service: "arm",
    given: "a failed LRO",
    error: new Error(
      "The long-running operation has failed. VMExtensionProvisioningError. Extension failed.",
    ),
    is: PermanentError,
    code: "VMExtensionProvisioningError",
    retryable: false,
  },
  {
    service: "arm",
    given: "ECONNRESET",
    error: networkError("ECONNRESET"),
    is: TransientError,
    code: "ECONNRESET",
    retryable: true,
  },
  {
    service: "arm",
    given: "a send error",
    error: restError(undefined, { code: "REQUEST_SEND_ERROR" }),
    is: TransientError,
    code: "REQUEST_SEND_ERROR",
    retryable: true,
  },
  {
    service: "arm",
    given: "an unclassified error",
    error: new Error("cannot serialize"),
    is: PermanentError,
    code: "Unknown",
    retryable: false,
  },
  // blobs
  {
    service: "blob",
    given: "404 (code in x-ms-error-code)",
    error: restError(404, { headers: { "x-ms-error-code": "BlobNotFound" } }),
    is: NotFoundError,
    code: "BlobNotFound",
    retryable: false,
  },
  {
    service: "blob",
    given: "412 lost If-Match",
    error: restError(412, { headers: { "x-ms-error-code": "ConditionNotMet" } }),
    is: ConflictError,
    code: "ConditionNotMet",
    retryable: true,
  },
  {
    service: "blob",
    given: "403",
    error: restError(403, { headers: { "x-ms-error-code": "AuthorizationPermissionMismatch" } }),
    is: PermanentError,
    code: "AuthorizationPermissionMismatch",
    retryable: false,
  },
  {
    service: "blob",
    given: "503 ServerBusy with Retry-After",
    error: restError(503, { headers: { "x-ms-error-code": "ServerBusy", "retry-after": "2" } }),
    is: TransientError,
    code: "ServerBusy",
    retryable: true,
    retryAfterMs: 2000,
  },
  {
    service: "blob",
    given: "a stream cut mid-body",
    error: new Error("aborted"),
    is: TransientError,
    code: "StorageUnavailable",
    retryable: true,
  },
  {
    service: "blob",
    given: "ECONNREFUSED",
    error: networkError("ECONNREFUSED"),
    is: TransientError,
    code: "ECONNREFUSED",
    retryable: true,
  },
  // tables
  {
    service: "table",
    given: "404",
    error: restError(404, { code: "ResourceNotFound" }),
    is: NotFoundError,
    code: "ResourceNotFound",
    retryable: false,
  },
  {
    service: "table",
    given: "409 entity exists",
    error: restError(409, { code: "EntityAlreadyExists" }),
    is: ConflictError,
    code: "EntityAlreadyExists",
    retryable: true,
  },
  {
    service: "table",
    given: "412 stale ETag",
    error: restError(412, { code: "UpdateConditionNotSatisfied" }),
    is: ConflictError,
    code: "UpdateConditionNotSatisfied",
    retryable: true,
  },
  {
    service: "table",
    given: "403",
    error: restError(403, { code: "AuthorizationFailure" }),
    is: PermanentError,
    code: "AuthorizationFailure",
    retryable: false,
  },
  {
    service: "table",
    given: "429",
    error: restError(429),
    is: TransientError,
    code: "Http429",
    retryable: true,
  },
  {
    service: "table",
    given: "ETIMEDOUT",
    error: networkError("ETIMEDOUT"),
    is: TransientError,
    code: "ETIMEDOUT",
    retryable: true,
  },
];

describe("SDK errors → typed errors (src/azure/errors.ts)", () => {
  for (const row of TABLE) {
    it(`${row.service}: ${row.given} → ${row.is.name} ${row.code}`, () => {
      const typed = toTypedError(row.error, row.service, "do the thing");
      assert.ok(typed instanceof row.is, `${typed.name}: ${typed.message}`);
      assert.equal(typed.code, row.code);
      assert.equal(typed.retryable, row.retryable);
      assert.equal(typed instanceof TransientError ? typed.retryAfterMs : undefined, row.retryAfterMs);
      assert.equal(typed.cause, row.error);
      assert.match(typed.message, /^do the thing/);
    });
  }

  it("passes an error that is already typed through unchanged", () => {
    const typed = new InvalidInputError("no", { code: "Nope" });
    assert.equal(toTypedError(typed, "blob", "x"), typed);
  });

  it("never quotes a storage message (it may carry a SAS URL)", () => {
    const error = restError(403, { message: "refused https://acct.blob.core.windows.net/c/b?sig=SECRET" });
    assert.doesNotMatch(toTypedError(error, "blob", "blob b").message, /sig=|https?:/);
  });

  it("reads Retry-After as an HTTP date too", () => {
    const at = new Date(Date.now() + 60_000).toUTCString();
    const wait = retryAfterMs(restError(429, { headers: { "retry-after": at } }));
    assert.ok(wait !== undefined && wait > 55_000 && wait <= 60_000, String(wait));
  });
});
