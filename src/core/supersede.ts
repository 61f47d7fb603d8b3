/**
 * Supersede (issue 12 item 3): a new build for an environment and branch cancels an older build of
 * the same environment and branch that still waits in the builder's queue; the older build ends
 * `cancelled` and names the build that superseded it. The queue decision is `decideAcquire` in
 * lease.ts; this file holds the setting's default, the one rule for what "production" means here.
 */

/** The words of an environment name that make it a production environment (supersede off by default). */
export const PRODUCTION_WORDS: readonly string[] = ["prod", "production", "prd", "live"];

/**
 * Whether an environment name reads as production: one of {@link PRODUCTION_WORDS} as a whole word
 * of the name (split at anything but letters and digits), so `prod`, `eu-prod`, `production_2`
 * count and `product-demo` does not.
 */
export function isProductionName(name: string): boolean {
  return name
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .some((word) => PRODUCTION_WORDS.includes(word));
}

/**
 * The environment's supersede setting: what it says, else on, except for an environment whose
 * name reads as production (a release queued there is usually meant to go out, each one).
 */
export function supersedeEnabled(environment: string, setting: boolean | undefined): boolean {
  return setting ?? !isProductionName(environment);
}

/** The terminal reason's first words for a superseded build (the CLI prints it as it is). */
export function supersededMessage(by: string, branch: string): string {
  return `superseded by build ${by}, a newer build of branch ${JSON.stringify(branch)} for this environment, while it was still queued`;
}

/** How a superseded build ends (its phase is `cancelled`); the same whichever way it learnt it. */
export function supersededError(by: string, branch: string): { code: string; message: string; hint: string } {
  return {
    code: "Superseded",
    message: supersededMessage(by, branch),
    hint: `Follow the newer build instead: fast-build follow ${by}. To keep every queued build of a branch in this environment, set "supersede": false in its configuration.`,
  };
}

/**
 * The cancel event's data `POST /builds` raises to a build it superseded: `reason` as any cancel's,
 * plus who superseded it and the branch, so the build ends with {@link supersededError}.
 */
export interface SupersededCancel {
  reason: string;
  supersededBy: string;
  branch: string;
}
