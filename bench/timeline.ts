/**
 * Where a build's time went, read from what the local cloud recorded at its boundaries: the
 * orchestration's durable history (when each activity was scheduled and its result delivered,
 * each timer created and fired, each event raised, each episode's replay) and the ARM emulator's
 * request log. Used by `bench/orchestration.bench.ts` for its breakdown (`BENCH_TRACE=1` also
 * prints one build's whole timeline).
 */
import type { RecordedRequest } from "@fast-build/local-cloud/arm";
import { HistoryEventType, type HistoryEvent } from "@fast-build/local-cloud/durable/history";

/** Milliseconds per part of a build's created → ended window. */
export type Breakdown = Record<string, number>;

const at = (event: HistoryEvent): number => Date.parse(event.Timestamp);

/**
 * Splits `from` → `to` (epoch ms) over the orchestration's episodes: the time from one episode's
 * end (when it had scheduled its work) to the next episode's start goes to what woke that next
 * episode: an activity's result (`activity <name>`: the local driver runs one at a time, so this
 * is its run plus the driver's dispatch), a timer (`timer waits`: poll and retry waits), or an
 * external event (`event <name>`: e.g. the builder's callback, while build.sh runs); each
 * episode's own replay goes to `episode replays`. The parts add up to the window.
 */
export function breakdown(history: readonly HistoryEvent[], from: number, to: number): Breakdown {
  const parts: Breakdown = {};
  const add = (key: string, ms: number) => (parts[key] = (parts[key] ?? 0) + ms);
  const names = new Map<number, string>();
  let last = from;
  let wokenBy: string | undefined;
  for (const event of history) {
    if (event.EventType === HistoryEventType.TaskScheduled) names.set(event.EventId, event.Name ?? "?");
    const time = Math.min(to, Math.max(from, at(event)));
    switch (event.EventType) {
      case HistoryEventType.OrchestratorStarted:
        // The wait that ended with this episode; what it was waiting for is read from its first message.
        wokenBy = undefined;
        if (time > last) add("(episode start)", time - last);
        last = time;
        break;
      case HistoryEventType.TaskCompleted:
      case HistoryEventType.TaskFailed:
        wokenBy ??= `activity ${names.get(event.TaskScheduledId ?? -1) ?? "?"}`;
        break;
      case HistoryEventType.TimerFired:
        wokenBy ??= "timer waits";
        break;
      case HistoryEventType.EventRaised:
        wokenBy ??= `event ${event.Name ?? "?"}`;
        break;
      case HistoryEventType.TaskScheduled:
      case HistoryEventType.TimerCreated:
        // Stamped after the episode's replay: the episode ran from its start to here.
        if (time > last) add("episode replays", time - last);
        last = Math.max(last, time);
        break;
    }
    if (wokenBy && parts["(episode start)"] !== undefined) {
      add(wokenBy, parts["(episode start)"]);
      delete parts["(episode start)"];
    }
  }
  if (to > last) add("after the last episode", to - last);
  if (parts["(episode start)"] !== undefined) {
    add("unattributed", parts["(episode start)"]);
    delete parts["(episode start)"];
  }
  return parts;
}

/** One line per history event and ARM request, in time order, relative to `from`. */
export function timeline(
  history: readonly HistoryEvent[],
  requests: readonly RecordedRequest[],
  from: number,
  to: number,
): string[] {
  const names = new Map<number, string>();
  const lines: { time: number; text: string }[] = [];
  for (const event of history) {
    const time = at(event);
    if (event.EventType === HistoryEventType.TaskScheduled) names.set(event.EventId, event.Name ?? "?");
    if (time < from || time > to) continue;
    const text =
      event.EventType === HistoryEventType.OrchestratorStarted
        ? "── episode"
        : event.EventType === HistoryEventType.TaskScheduled
          ? `   schedule ${event.Name}`
          : event.EventType === HistoryEventType.TaskCompleted ||
              event.EventType === HistoryEventType.TaskFailed
            ? `   result of ${names.get(event.TaskScheduledId ?? -1)}${event.EventType === HistoryEventType.TaskFailed ? " (failed)" : ""}`
            : event.EventType === HistoryEventType.TimerCreated
              ? `   timer for +${Date.parse(event.FireAt ?? "") - time} ms`
              : event.EventType === HistoryEventType.TimerFired
                ? "   timer fired"
                : event.EventType === HistoryEventType.EventRaised
                  ? `   event ${event.Name}`
                  : undefined;
    if (text) lines.push({ time, text });
  }
  for (const request of requests) {
    if (request.at < from || request.at > to) continue;
    const path = request.path.replace(/^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\//i, "");
    lines.push({ time: request.at, text: `      ARM ${request.method} ${path}` });
  }
  return lines
    .sort((a, b) => a.time - b.time)
    .map(({ time, text }) => `${String(time - from).padStart(6)} ms ${text}`);
}
