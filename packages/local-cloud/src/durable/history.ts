/**
 * History events as the Durable Functions host hands them to the JavaScript replay engine: plain
 * objects with PascalCase fields (the library's own event classes are not typed). Times are ISO
 * strings; the library turns `Timestamp`/`FireAt` strings into `Date`s when it reads the binding.
 */

/** The subset of `HistoryEventType` (durable-functions `lib/src/history/HistoryEventType.js`) the driver writes. */
export const HistoryEventType = {
  ExecutionStarted: 0,
  ExecutionTerminated: 3,
  TaskScheduled: 4,
  TaskCompleted: 5,
  TaskFailed: 6,
  TimerCreated: 10,
  TimerFired: 11,
  OrchestratorStarted: 12,
  OrchestratorCompleted: 13,
  EventRaised: 15,
} as const;

export interface HistoryEvent {
  EventType: number;
  EventId: number;
  Timestamp: string;
  IsPlayed: boolean;
  Name?: string;
  Input?: string;
  Result?: string;
  TaskScheduledId?: number;
  TimerId?: number;
  FireAt?: string;
  Reason?: string;
  Details?: string;
}

const base = (type: number, at: Date, eventId = -1): HistoryEvent => ({
  EventType: type,
  EventId: eventId,
  Timestamp: at.toISOString(),
  IsPlayed: false,
});

/** `undefined` stays absent: the library only parses `Input`/`Result` when present. */
const json = (value: unknown): string | undefined =>
  value === undefined ? undefined : JSON.stringify(value);

export const events = {
  orchestratorStarted: (at: Date): HistoryEvent => base(HistoryEventType.OrchestratorStarted, at),
  orchestratorCompleted: (at: Date): HistoryEvent => base(HistoryEventType.OrchestratorCompleted, at),
  executionStarted: (at: Date, name: string, input: unknown): HistoryEvent => ({
    ...base(HistoryEventType.ExecutionStarted, at),
    Name: name,
    Input: json(input),
  }),
  taskScheduled: (at: Date, id: number, name: string, input: unknown): HistoryEvent => ({
    ...base(HistoryEventType.TaskScheduled, at, id),
    Name: name,
    Input: json(input),
  }),
  taskCompleted: (at: Date, id: number, result: unknown): HistoryEvent => ({
    ...base(HistoryEventType.TaskCompleted, at),
    TaskScheduledId: id,
    Result: json(result) ?? "null",
  }),
  taskFailed: (at: Date, id: number, reason: string, details: string): HistoryEvent => ({
    ...base(HistoryEventType.TaskFailed, at),
    TaskScheduledId: id,
    Reason: reason,
    Details: details,
  }),
  timerCreated: (at: Date, id: number, fireAt: Date): HistoryEvent => ({
    ...base(HistoryEventType.TimerCreated, at, id),
    FireAt: fireAt.toISOString(),
  }),
  timerFired: (at: Date, id: number, fireAt: Date): HistoryEvent => ({
    ...base(HistoryEventType.TimerFired, at),
    TimerId: id,
    FireAt: fireAt.toISOString(),
  }),
  eventRaised: (at: Date, name: string, data: unknown): HistoryEvent => ({
    ...base(HistoryEventType.EventRaised, at),
    Name: name,
    Input: json(data),
  }),
};

/** Indices of every `OrchestratorStarted` after the first: each is a state a deploy can land on. */
export function inFlightCuts(history: readonly HistoryEvent[]): number[] {
  const cuts: number[] = [];
  history.forEach((event, index) => {
    if (index > 0 && event.EventType === HistoryEventType.OrchestratorStarted) cuts.push(index);
  });
  return cuts;
}
