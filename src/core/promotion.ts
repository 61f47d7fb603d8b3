/**
 * Promotions and rollbacks (issue 11, items 3 and 4): their ids, the deploy orchestration's input,
 * the API's request bodies, the approval decision, the caller's identity and the choice of the
 * image a rollback goes back to. Pure: the HTTP handlers and the orchestrator both use these.
 */
import { randomBytes } from "node:crypto";
import { z } from "zod";
import type { ApiError, BuildStatus } from "./api.js";
import type { RegistryResourceRef } from "./ports.js";
import { BUILD_ID, ruleSchema } from "./rules.js";

export { DEPLOY_ORCHESTRATOR } from "./activityContract.js";

/** The deploy orchestration's version (its own line; the build orchestrator's is ORCHESTRATOR_VERSION). */
export const DEPLOY_ORCHESTRATOR_VERSION = 1;

/** The approval's external event (raised by `POST /api/promotions/{id}/approve|reject`). */
export const PROMOTION_EVENTS = { decision: "PromotionDecision" } as const;

/** Waiting for an approval longer than this is refused at start (a durable timer of weeks is fine; years are not). */
export const MAX_APPROVAL_HOURS = 30 * 24;
export const DEFAULT_APPROVAL_HOURS = 72;

/** `p-<yyyymmddhhmmss>-<hex>` (promotion) or `r-…` (rollback): valid build-id syntax, so the id rules apply. */
export function createDeployId(kind: DeployKind, now: Date = new Date(), random = randomBytes(4)): string {
  const stamp = now.toISOString().replace(/[-:T]/g, "").slice(0, 14);
  return `${kind === "promote" ? "p" : "r"}-${stamp}-${Buffer.from(random).toString("hex")}`;
}

export type DeployKind = "promote" | "rollback";

/** Ids of promotions and rollbacks; `kind` tells which a route expects. */
export const deployIdSchema = ruleSchema(BUILD_ID).refine(
  (id) => /^[pr]-\d{14}-[0-9a-f]{8}$/.test(id),
  "a promotion id (p-…) or rollback id (r-…) as fast-build printed it",
);

const envName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/, "an environment name");
/** `sha256:` and 64 hex digits: a manifest digest. */
export const manifestDigestSchema = z.string().regex(/^sha256:[0-9a-f]{64}$/, "sha256: and 64 hex digits");

export const promoteRequestSchema = z
  .object({
    from: envName,
    to: envName,
    /** The build whose deployed image is promoted; default: the image `from` runs now. */
    buildId: ruleSchema(BUILD_ID).optional(),
  })
  .strict()
  .refine((r) => r.from !== r.to, { message: "from and to must be different environments", path: ["to"] });
export type PromoteRequest = z.infer<typeof promoteRequestSchema>;

export const rollbackRequestSchema = z
  .object({
    /** A revision name of the environment's app, or a build id that deployed there. */
    to: z.string().min(1).max(100).optional(),
  })
  .strict();

export const decisionRequestSchema = z.object({ reason: z.string().max(500).optional() }).strict();

/** Who asked, as the platform's authentication says (never a client-chosen header when auth is off). */
export interface Principal {
  name: string;
  id?: string | undefined;
}

export const principalSchema = z.object({ name: z.string(), id: z.string().optional() });

/** The approval as the promotion records it. */
export interface ApprovalState {
  required: boolean;
  approvers: string[];
  state: "not-required" | "pending" | "approved" | "rejected" | "timed-out";
  /** When a pending approval lapses. */
  deadline?: string;
  by?: Principal;
  at?: string;
  reason?: string;
}

/** What a promotion or rollback status adds to the build status shape it shares (phases, revision, deployment). */
export interface DeployInfo {
  kind: DeployKind;
  /** The source environment (promotions). */
  from?: string;
  to: string;
  requestedBy?: Principal;
  /** The image being deployed: what it is, where it came from. */
  image: { repository: string; digest: string; source: string };
  approval?: ApprovalState;
  /** ACR's import into the target registry (promotions). */
  import?: { state: "pending" | "running" | "succeeded"; reference?: string; digestIdentical?: boolean };
}

export type DeployStatus = BuildStatus & { deploy: DeployInfo };

export const deployInputSchema = z
  .object({
    id: deployIdSchema,
    kind: z.enum(["promote", "rollback"]),
    environment: envName,
    from: envName.optional(),
    createdAt: z.iso.datetime(),
    requestedBy: principalSchema.optional(),
    image: z.object({
      /** Repository in the source registry (promotions) or the environment's registry (rollbacks). */
      repository: z.string().min(1).max(256),
      digest: manifestDigestSchema,
      /** Where it was found, for the status: "build …", "revision …". */
      source: z.string().max(300),
    }),
    /** The source environment's registry resource (promotions). */
    sourceRegistryResourceId: z.string().max(500).optional(),
    approval: z
      .object({
        required: z.boolean(),
        approvers: z.array(z.string()).max(100),
        timeoutMs: z.number().int().min(60_000),
      })
      .optional(),
    orchestratorVersion: z.number().int().min(1).max(DEPLOY_ORCHESTRATOR_VERSION).optional(),
    /**
     * Whose deploy steps run (src/orchestration/deploy.ts branches on the build orchestrator's
     * version): fixed at the start, so a later build version never changes a promotion in flight.
     */
    deployStepsVersion: z.number().int().min(6),
  })
  .strict();
export type DeployInput = z.infer<typeof deployInputSchema>;

export const decisionEventSchema = z.object({
  approved: z.boolean(),
  by: principalSchema,
  at: z.string(),
  reason: z.string().max(500).optional(),
});
export type DecisionEvent = z.infer<typeof decisionEventSchema>;

/** The approval rule: who may decide on a promotion into an environment. */
export function mayDecide(
  approvers: readonly string[],
  caller: Principal,
): { ok: true } | { ok: false; error: ApiError } {
  const names = approvers.map((a) => a.toLowerCase());
  if (names.includes(caller.name.toLowerCase()) || (caller.id && names.includes(caller.id.toLowerCase()))) {
    return { ok: true };
  }
  return {
    ok: false,
    error: {
      code: "NotAnApprover",
      message: `${caller.name} may not approve or reject promotions to this environment`,
      hint: `Approvers: ${approvers.join(", ") || "(none configured)"}. Ask one of them, or add the user to the environment's approval.approvers.`,
    },
  };
}

/** A revision as the rollback rule reads it. */
export interface RevisionCandidate {
  name: string;
  createdTime: string | undefined;
  healthState: string;
  provisioningState: string;
  /** The image of the environment's container. */
  image: string | undefined;
}

/** `<registry>/<repository>@sha256:…` split; undefined for a tag reference. */
export function digestReference(
  image: string | undefined,
): { registry: string; repository: string; digest: string } | undefined {
  const m = /^([^/]+)\/(.+)@(sha256:[0-9a-f]{64})$/.exec(image ?? "");
  return m ? { registry: m[1]!, repository: m[2]!, digest: m[3]! } : undefined;
}

export type RollbackChoice =
  | { ok: true; revision: string; image: string; digest: string; repository: string }
  | { ok: false; error: ApiError };

/**
 * The image a rollback goes back to. `to` absent: the newest healthy, provisioned revision whose
 * image digest differs from the current one's. `to` a revision name: that revision, which must be
 * healthy and digest-pinned. (A build id is resolved to its deployed digest by the caller and
 * passed as `digest`.) Revisions come newest first.
 */
export function chooseRollback(
  revisions: readonly RevisionCandidate[],
  current: string | undefined,
  wanted: { revision?: string; digest?: string } = {},
): RollbackChoice {
  const currentDigest = digestReference(current)?.digest;
  const healthy = (r: RevisionCandidate) =>
    r.healthState === "Healthy" && r.provisioningState === "Provisioned";
  const refuse = (code: string, message: string, hint: string): RollbackChoice => ({
    ok: false,
    error: { code, message, hint },
  });
  const pick = (r: RevisionCandidate): RollbackChoice => {
    const ref = digestReference(r.image);
    if (!ref) {
      return refuse(
        "NotDigestPinned",
        `revision ${r.name} runs ${r.image ?? "no image"}, not an image by digest: fast-build cannot be sure which bytes that was`,
        "Roll back to a revision fast-build deployed (its image is <registry>/<repository>@sha256:…).",
      );
    }
    if (ref.digest === currentDigest) {
      return refuse(
        "AlreadyRunning",
        `the app already runs ${ref.digest} (revision ${r.name}'s image): nothing to roll back`,
        "Pick another revision with --to, or leave the app as it is.",
      );
    }
    return { ok: true, revision: r.name, image: r.image!, digest: ref.digest, repository: ref.repository };
  };
  if (wanted.revision !== undefined) {
    const found = revisions.find((r) => r.name.toLowerCase() === wanted.revision!.toLowerCase());
    if (!found) {
      return refuse(
        "RevisionNotFound",
        `the app has no revision named ${wanted.revision}`,
        `Revisions: ${revisions.map((r) => r.name).join(", ") || "(none)"}.`,
      );
    }
    if (!healthy(found)) {
      return refuse(
        "TargetUnhealthy",
        `revision ${found.name} is ${found.provisioningState}/${found.healthState}: only a revision that was healthy can be rolled back to`,
        "Pick a healthy revision (fast-build rollback <env> without --to picks the newest one).",
      );
    }
    return pick(found);
  }
  if (wanted.digest !== undefined) {
    const found = revisions.find((r) => digestReference(r.image)?.digest === wanted.digest);
    if (!found) {
      return refuse(
        "NotDeployedHere",
        `no revision of the app ran ${wanted.digest}`,
        "Give a build that deployed to this environment, or a revision name.",
      );
    }
    if (!healthy(found)) {
      return refuse(
        "TargetUnhealthy",
        `revision ${found.name}, which ran ${wanted.digest}, is ${found.provisioningState}/${found.healthState}`,
        "Pick a build or revision that ran healthy here.",
      );
    }
    return pick(found);
  }
  const candidate = revisions.find((r) => {
    const ref = digestReference(r.image);
    return healthy(r) && ref !== undefined && ref.digest !== currentDigest;
  });
  if (!candidate) {
    return refuse(
      "NothingToRollBackTo",
      "no earlier healthy revision runs another image by digest: there is nothing to go back to",
      "Azure keeps a limited number of inactive revisions; deploy the image you want with a build or a promotion.",
    );
  }
  return pick(candidate);
}

/** The ARM resource id of a registry (ACR's import names its source by it). */
export function registryResourceId(ref: RegistryResourceRef): string {
  return `/subscriptions/${ref.subscriptionId}/resourceGroups/${ref.resourceGroup}/providers/Microsoft.ContainerRegistry/registries/${ref.registryName}`;
}
