/**
 * `fast-build promote`, `rollback`, `approve`, `reject` and `promotion`: start a promotion or a
 * rollback and follow it to its end (its approval, ACR's import, the new revision's health), decide
 * on one, or print one's status. Through the same API client as the build commands; the exit codes
 * are EXIT's (src/cli/follow.ts): a refusal by the API (409, 403) is `refused`, nothing changed.
 */
import type { ApiSettings } from "../config/cli.js";
import { TransientError } from "../core/errors.js";
import type { DeployStatus } from "../core/promotion.js";
import { ApiClient } from "./apiClient.js";
import type { BuildCommandRun } from "./builds.js";
import {
  EXIT,
  exitCodeForPhase,
  MAX_FOLLOW_MS,
  MAX_TRANSIENT_FAILURES,
  POLL_INTERVAL_MS,
  pollDelayMs,
  sleep,
  writeJson,
} from "./follow.js";

function client(settings: ApiSettings): ApiClient {
  return new ApiClient({
    baseUrl: settings.apiUrl,
    apiKey: settings.apiKey,
    ...(settings.apiToken ? { apiToken: settings.apiToken } : {}),
  });
}

/** The exit code of an ended promotion or rollback. */
export function exitCodeForDeploy(status: DeployStatus): number {
  if (status.error?.code === "ApprovalTimedOut") return EXIT.timedOut;
  return exitCodeForPhase(status.phase);
}

/** One line per state worth telling, e.g. `approval: approved by alice@example.com`. */
export function describeDeploy(status: DeployStatus): string[] {
  const lines: string[] = [];
  const d = status.deploy;
  const approval = d.approval;
  if (approval?.required) {
    const who = approval.by ? ` by ${approval.by.name}${approval.at ? ` at ${approval.at}` : ""}` : "";
    const until =
      approval.state === "pending" && approval.deadline
        ? ` (until ${approval.deadline}; approvers: ${approval.approvers.join(", ")})`
        : "";
    lines.push(`approval: ${approval.state}${who}${until}${approval.reason ? `: ${approval.reason}` : ""}`);
  }
  if (d.import) {
    lines.push(
      d.import.state === "succeeded"
        ? `import: done, ${d.import.reference ?? ""} (digest identical: ${d.import.digestIdentical ? "yes" : "no"})`
        : `import: ${d.import.state}`,
    );
  }
  if (status.revision) {
    const health = [status.revision.provisioningState, status.revision.healthState].filter(Boolean).join("/");
    lines.push(`revision: ${status.revision.name}${health ? ` ${health}` : ""}`);
  }
  if (status.terminal) {
    lines.push(status.deployment?.message ?? `${d.kind} ${status.phase}`);
    if (status.error)
      lines.push(`error: ${status.error.message}${status.error.hint ? `\nhint: ${status.error.hint}` : ""}`);
  }
  return lines;
}

/** Polls the status until it ends, printing each new line once; returns the final status. */
async function follow(id: string, opts: BuildCommandRun): Promise<DeployStatus | undefined> {
  const api = client(opts.settings);
  const seen = new Set<string>();
  const started = Date.now();
  let failures = 0;
  for (;;) {
    let status: DeployStatus;
    try {
      status = await api.promotion(id);
      failures = 0;
    } catch (error) {
      if (!(error instanceof TransientError) || ++failures > MAX_TRANSIENT_FAILURES) throw error;
      await sleep(pollDelayMs(opts.pollIntervalMs ?? POLL_INTERVAL_MS, failures), opts.interrupt);
      continue;
    }
    for (const line of describeDeploy(status)) {
      if (seen.has(line)) continue;
      seen.add(line);
      opts.out.line(line);
    }
    if (status.terminal) return status;
    if (opts.interrupt.aborted || Date.now() - started > MAX_FOLLOW_MS) return undefined;
    await sleep(opts.pollIntervalMs ?? POLL_INTERVAL_MS, opts.interrupt);
    if (opts.interrupt.aborted) return undefined;
  }
}

async function followOrReturn(
  id: string,
  json: boolean,
  followIt: boolean,
  opts: BuildCommandRun,
): Promise<number> {
  if (!followIt) {
    if (json) writeJson(opts.stdout, await client(opts.settings).promotion(id));
    opts.out.line(`follow it with: fast-build promotion ${id}`);
    return EXIT.ok;
  }
  const status = await follow(id, opts);
  if (!status) {
    opts.out.line(`stopped following; ${id} goes on (fast-build promotion ${id})`);
    return EXIT.interrupted;
  }
  if (json) writeJson(opts.stdout, status);
  return exitCodeForDeploy(status);
}

export function runPromote(
  from: string,
  to: string,
  flags: { json: boolean; follow: boolean; build: string | undefined },
  opts: BuildCommandRun,
): Promise<number> {
  return (async () => {
    const started = await client(opts.settings).promote({
      from,
      to,
      ...(flags.build ? { buildId: flags.build } : {}),
    });
    opts.out.line(
      `promotion ${started.promotionId}: ${started.image} (${started.source}) from ${from} to ${to}`,
    );
    if (started.approvalRequired) {
      opts.out.line(`${to} requires an approval: an approver runs fast-build approve ${started.promotionId}`);
    }
    return followOrReturn(started.promotionId, flags.json, flags.follow, opts);
  })();
}

export function runRollback(
  environment: string,
  flags: { json: boolean; follow: boolean; to: string | undefined },
  opts: BuildCommandRun,
): Promise<number> {
  return (async () => {
    const started = await client(opts.settings).rollback(environment, flags.to);
    opts.out.line(
      `rollback ${started.rollbackId}: ${environment} back to ${started.image} (revision ${started.revision})`,
    );
    return followOrReturn(started.rollbackId, flags.json, flags.follow, opts);
  })();
}

export function runDecide(
  id: string,
  decision: "approve" | "reject",
  flags: { json: boolean; reason?: string | undefined },
  opts: BuildCommandRun,
): Promise<number> {
  return (async () => {
    const answer = await client(opts.settings).decide(id, decision, flags.reason);
    if (flags.json) writeJson(opts.stdout, answer);
    else
      opts.out.line(
        `${id}: ${decision === "approve" ? "approved" : "rejected"}; follow it with: fast-build promotion ${id}`,
      );
    return EXIT.ok;
  })();
}

export async function runPromotion(id: string, json: boolean, opts: BuildCommandRun): Promise<number> {
  const status = await client(opts.settings).promotion(id);
  if (json) writeJson(opts.stdout, status);
  else {
    opts.out.line(`${status.deploy.kind} ${id} to ${status.deploy.to}: ${status.phase}`);
    for (const line of describeDeploy(status)) opts.out.line(line);
  }
  return status.terminal ? exitCodeForDeploy(status) : EXIT.ok;
}
