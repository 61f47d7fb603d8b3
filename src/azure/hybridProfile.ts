/**
 * The Azure Stack Hub hybrid profile (`2020-09-01-hybrid`) for compute.
 *
 * The design card names `@azure/arm-compute-profile-2020-09-01-hybrid`, but that package is not in
 * the npm registry (404), and its source has no run-command operations. `@azure/arm-compute` 25.x
 * fixes each operation's api-version and ignores an `apiVersion` option, so instead a per-call
 * pipeline policy rewrites `api-version` to 2020-06-01 (Compute's version in that profile) on every
 * request the client sends, including LRO polls. What 2020-06-01 lacks (e.g.
 * `treatFailureAsDeploymentFailure`) the gateway must not send, and builds use the action Run Command.
 */
import type { PipelinePolicy } from "@azure/core-rest-pipeline";
import type { ComputeProfile } from "../config/index.js";

export const HYBRID_COMPUTE_API_VERSION = "2020-06-01";

/** A policy that forces `api-version` on every request that carries one. */
export function forceApiVersionPolicy(apiVersion: string): PipelinePolicy {
  return {
    name: `forceApiVersion-${apiVersion}`,
    sendRequest(request, next) {
      const url = new URL(request.url);
      url.searchParams.set("api-version", apiVersion);
      request.url = url.toString();
      return next(request);
    },
  };
}

/** The compute api-version a profile pins, or undefined for the SDK's own (latest). */
export function computeApiVersion(profile: ComputeProfile): string | undefined {
  return profile === "2020-09-01-hybrid" ? HYBRID_COMPUTE_API_VERSION : undefined;
}
