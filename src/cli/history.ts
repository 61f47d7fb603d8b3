/**
 * `fast-build history [--env E] [--limit N] [--json]` and `fast-build costs [--days N] [--env E]
 * [--json]`: the build history (newest first, following the API's pages up to --limit) and the
 * builders' VM and disk minutes with their cost. Read-only; an unknown environment is the API's
 * 404, which exits 2 (src/cli/run.ts).
 */
import type { BuildHistoryRecord, CostsResponse, HistoryPage } from "../core/history.js";
import { CLI_HISTORY_LIMIT, HISTORY_LIMIT, PHASE_LABELS } from "../core/history.js";
import { STEPS } from "../core/status.js";
import { ApiClient } from "./apiClient.js";
import type { BuildCommandRun } from "./builds.js";
import { EXIT, writeJson } from "./follow.js";

function client(opts: BuildCommandRun): ApiClient {
  return new ApiClient({ baseUrl: opts.settings.apiUrl, apiKey: opts.settings.apiKey });
}

export async function runHistory(
  query: { environment: string | undefined; limit: number },
  json: boolean,
  opts: BuildCommandRun,
): Promise<number> {
  const api = client(opts);
  const builds: BuildHistoryRecord[] = [];
  let cursor: string | undefined;
  do {
    const page: HistoryPage = await api.history({
      ...(query.environment !== undefined ? { environment: query.environment } : {}),
      limit: Math.min(HISTORY_LIMIT.max, query.limit - builds.length),
      ...(cursor !== undefined ? { cursor } : {}),
    });
    builds.push(...page.builds);
    cursor = page.next;
  } while (cursor !== undefined && builds.length < query.limit);
  if (json) writeJson(opts.stdout, { builds, ...(cursor !== undefined ? { next: cursor } : {}) });
  else for (const line of renderHistory(builds, cursor !== undefined)) opts.out.line(line);
  return EXIT.ok;
}

export async function runCosts(
  query: { environment: string | undefined; days: number },
  json: boolean,
  opts: BuildCommandRun,
): Promise<number> {
  const answer = await client(opts).costs(query);
  if (json) writeJson(opts.stdout, answer);
  else for (const line of renderCosts(answer)) opts.out.line(line);
  return EXIT.ok;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]?.length ?? 0)));
  return [header, ...rows].map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd(),
  );
}

/** `1 min 05 s`, `12 s`, `850 ms`. */
export function shortDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
}

const when = (iso: string) => `${iso.slice(0, 16).replace("T", " ")}Z`;

/** The history as a table, newest first; `more`: older builds exist past --limit. */
export function renderHistory(builds: readonly BuildHistoryRecord[], more: boolean): string[] {
  if (builds.length === 0) return ["no builds in the history yet"];
  const rows = builds.map((b) => {
    const source = `${b.branch ?? "-"}@${b.commit ? b.commit.slice(0, 7) : "-"}${b.dirty ? "+dirty" : ""}`;
    const phases = b.registryHit
      ? "registry hit (no builder)"
      : STEPS.filter((step) => b.phasesMs[step] !== undefined)
          .map((step) => `${PHASE_LABELS[step]} ${shortDuration(b.phasesMs[step]!)}`)
          .join(", ") || "-";
    return [
      when(b.createdAt),
      b.environment,
      b.buildId,
      source,
      b.author?.name ?? b.author?.email ?? "-",
      b.outcome,
      shortDuration(b.durationMs),
      phases,
      b.image?.digest ? b.image.digest.replace(/^sha256:/, "").slice(0, 12) : "-",
      b.revision ?? "-",
    ];
  });
  const lines = table(
    ["WHEN", "ENV", "BUILD", "BRANCH@COMMIT", "BY", "OUTCOME", "DURATION", "PHASES", "IMAGE", "REVISION"],
    rows,
  );
  if (more) lines.push(`(older builds not shown: raise --limit, up to ${CLI_HISTORY_LIMIT.max})`);
  return lines;
}

const money = (value: number | undefined, currency: string) =>
  value === undefined ? "unknown" : `${value.toFixed(value < 1 ? 4 : 2)} ${currency}`;
const minutes = (m: number) => m.toFixed(1);

/** Per day, per builder, per build and the totals; one note per VM size without a rate. */
export function renderCosts(answer: CostsResponse): string[] {
  const c = answer.currency;
  const scope = answer.environment ? `environment ${answer.environment}` : "every environment";
  const lines = [
    `builder costs of ${scope}, last ${answer.days} day(s) (${when(answer.from)} → ${when(answer.to)})`,
    "",
  ];
  lines.push(
    ...table(
      ["DAY", "VM MIN", "DISK MIN", "COST"],
      [
        ...answer.perDay.map((d) => [
          d.day,
          minutes(d.runningMinutes),
          minutes(d.stoppedMinutes),
          money(d.cost, c),
        ]),
        [
          "total",
          minutes(answer.total.runningMinutes),
          minutes(answer.total.stoppedMinutes),
          money(answer.total.cost, c),
        ],
      ],
    ),
  );
  if (answer.builders.length > 0) {
    lines.push("");
    lines.push(
      ...table(
        ["BUILDER", "SIZE", "VM MIN", "DISK MIN", "COST"],
        answer.builders.map((b) => [
          b.builder,
          b.vmSizes.join(", "),
          minutes(b.runningMinutes),
          minutes(b.stoppedMinutes),
          money(b.cost, c),
        ]),
      ),
    );
  }
  const builds = answer.builds;
  lines.push("");
  lines.push(
    builds.count === 0
      ? "builds: none in this window"
      : `builds: ${builds.count}, ${minutes(builds.vmMinutes)} builder min in all, ${minutes(builds.averageVmMinutes ?? 0)} min per build${builds.averageCost !== undefined ? ` (about ${money(builds.averageCost, c)})` : ""}`,
  );
  for (const note of answer.notes) lines.push(`note: ${note}`);
  return lines;
}
