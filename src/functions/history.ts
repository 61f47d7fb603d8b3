/**
 * `GET /api/builds?env=E&limit=N&cursor=C`: the build history, newest first, a page at a time;
 * `GET /api/costs?days=N&env=E`: builder VM and disk minutes per UTC day, per builder and per
 * build, priced by FASTBUILD_VM_RATES. Both read only the history table (src/azure/history.ts);
 * what the numbers mean is src/core/history.ts.
 */
import type { HttpRequest, HttpResponseInit } from "@azure/functions";
import { builders } from "../builders/idleShutdown.js";
import { builderKey, builderVm } from "../core/buildInput.js";
import { InvalidInputError } from "../core/errors.js";
import {
  buildCost,
  COST_DAYS,
  HISTORY_LIMIT,
  unknownRateNote,
  usageByDay,
  type CostsResponse,
} from "../core/history.js";
import { quoted } from "../core/logText.js";
import { getDeps, type Deps } from "./deps.js";
import { apiHandler, json, knownEnvironment, queryInteger } from "./http.js";

/** Builds a cost answer counts at most (a window of 90 days of a busy team is well under this). */
const MAX_COST_BUILDS = 5000;

const QUERY_KEYS = { builds: ["env", "limit", "cursor"], costs: ["env", "days"] } as const;

/** An unknown query parameter is a typo (`--limt`), not something to ignore. */
function checkKeys(request: HttpRequest, allowed: readonly string[]): void {
  for (const key of request.query.keys()) {
    if (!allowed.includes(key)) {
      throw new InvalidInputError(`unknown query parameter ${quoted(key, 40)}`, {
        code: "InvalidQuery",
        hint: `This endpoint takes: ${allowed.join(", ")}.`,
      });
    }
  }
}

/** The `env` query parameter: absent (every environment) or a configured one (404 otherwise). */
function queryEnvironment(request: HttpRequest, deps: Deps): string | undefined {
  const name = request.query.get("env");
  return name === null ? undefined : knownEnvironment(deps.config.environments, name).name;
}

async function listHistory(request: HttpRequest): Promise<HttpResponseInit> {
  const deps = await getDeps();
  checkKeys(request, QUERY_KEYS.builds);
  const environment = queryEnvironment(request, deps);
  const limit = queryInteger(
    request,
    "limit",
    HISTORY_LIMIT.min,
    HISTORY_LIMIT.max,
    HISTORY_LIMIT.default,
    `Ask for up to ${HISTORY_LIMIT.max} builds a page and follow \`next\` for more.`,
  );
  const cursor = request.query.get("cursor") ?? undefined;
  const page = await deps.history.listBuilds({
    ...(environment !== undefined ? { environment } : {}),
    limit,
    ...(cursor !== undefined ? { cursor } : {}),
  });
  return json(200, page);
}

async function costs(request: HttpRequest): Promise<HttpResponseInit> {
  const deps = await getDeps();
  checkKeys(request, QUERY_KEYS.costs);
  const environment = queryEnvironment(request, deps);
  const days = queryInteger(
    request,
    "days",
    COST_DAYS.min,
    COST_DAYS.max,
    COST_DAYS.default,
    `Ask for 1 to ${COST_DAYS.max} days back (default ${COST_DAYS.default}).`,
  );
  const now = deps.now();
  const from = new Date(now.getTime() - days * 86_400_000);
  const { vmRates, currency } = deps.config.history;
  // The builders of the environment asked for, or every one (environments may share a builder).
  const fleet = environment
    ? [builderKey(builderVm(deps.config.environments[environment]!))]
    : builders(deps.config.environments).map((b) => b.key);
  const [transitions, builds] = await Promise.all([
    Promise.all(fleet.map((key) => deps.history.powerSince(key, from))).then((lists) => lists.flat()),
    deps.history.buildsSince(from, environment, MAX_COST_BUILDS),
  ]);
  const usage = usageByDay(transitions, from.getTime(), now.getTime(), vmRates);
  const vmMinutes = builds.reduce((sum, b) => sum + b.vmMinutes, 0);
  const sizes = [...new Set(usage.builders.flatMap((b) => b.vmSizes))];
  const average = builds.length > 0 ? vmMinutes / builds.length : undefined;
  const averageCost = average === undefined ? undefined : buildCost(average, sizes, vmRates);
  const answer: CostsResponse = {
    ...(environment !== undefined ? { environment } : {}),
    from: from.toISOString(),
    to: now.toISOString(),
    days,
    currency,
    perDay: usage.days,
    builders: usage.builders,
    total: usage.total,
    builds: {
      count: builds.length,
      vmMinutes: Math.round(vmMinutes * 100) / 100,
      ...(average !== undefined ? { averageVmMinutes: Math.round(average * 100) / 100 } : {}),
      ...(averageCost !== undefined ? { averageCost } : {}),
    },
    notes: (usage.total.unknownRates ?? []).map(unknownRateNote),
  };
  return json(200, answer);
}

/** The handlers `register.ts` routes to (tests call them with their own request and context). */
export const listHistoryHandler = apiHandler(listHistory);
export const costsHandler = apiHandler(costs);
