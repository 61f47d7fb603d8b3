/**
 * The Durable Functions host's compatibility check, run ahead of a deploy: would the new
 * orchestrator code accept the histories of instances that are in flight when it is deployed?
 * Azure replays every running instance on the newly deployed code (MicrosoftDocs azure-docs
 * `articles/azure-functions/durable/durable-functions-versioning.md`); an instance whose history
 * the new code contradicts fails with `NonDeterministicOrchestrationException`.
 *
 * How the host gets there for a JavaScript orchestrator, read in the sources:
 * - azure-functions-durable-extension `src/WebJobs.Extensions.DurableTask/Listener/TaskOrchestrationShim.cs`
 *   runs the JS function (which replays the whole history on durable-functions' engine) and hands
 *   its actions to `Listener/OutOfProcOrchestrationShim.cs`, which calls the .NET context's API once
 *   per action in the order emitted (`ProcessAsyncActionsV2` for V3, `ProcessAsyncActionsV1` for
 *   V1): every activity and timer takes the next sequence number (`idCounter++` in
 *   durabletask `src/DurableTask.Core/TaskOrchestrationContext.cs`), an event wait takes none.
 * - durabletask `src/DurableTask.Core/TaskOrchestrationExecutor.cs` (`ProcessEvent`) then walks the
 *   history; `TaskOrchestrationContext.cs` `HandleTaskScheduledEvent` requires the action with the
 *   event's `EventId` to exist and be an activity of the same name (ordinal, case-insensitive),
 *   `HandleTimerCreatedEvent` requires a timer there. Inputs, timer times and retry options are
 *   not compared. `NonDeterministicOrchestrationException.cs` prefixes the message
 *   "Non-Deterministic workflow detected".
 *
 * The in-flight states a deploy can land on are the history cut before each `OrchestratorStarted`:
 * the host then delivers that episode's new events (an activity's result, a timer, a raised event)
 * to the new code with the old history before them. Each cut is replayed that way, and the whole
 * history once more.
 */
import type { OrchestrationHandler } from "durable-functions";
import { flattenActions, NonDeterminismError, replayOnce, type ReplaySchemaName } from "./driver.js";
import { HistoryEventType, inFlightCuts, type HistoryEvent } from "./history.js";

export { inFlightCuts };

/** One recorded instance, as a fixture holds it. */
export interface RecordedRun {
  /** Names the run in every break (the fixture's name). */
  name: string;
  instanceId: string;
  input: unknown;
  schema: ReplaySchemaName;
  history: readonly HistoryEvent[];
  /** How the recorded run ended. */
  runtimeStatus: "Completed" | "Failed";
  /** The recorded orchestrator output (Completed) or error message (Failed). */
  output: unknown;
}

export interface ReplayCheckOptions {
  /**
   * What of a Completed output must stay the same when the whole history replays (e.g. a build's
   * phase); other fields may change freely. Default: the output is not compared.
   */
  outcome?: (output: unknown) => unknown;
  /** The cuts to replay (default: {@link inFlightCuts} of the history). */
  cuts?: readonly number[];
}

/** One way the new code contradicts a recorded history, at one or more cuts. */
export interface ReplayBreak {
  run: string;
  /** Where it shows, in words: "before event #12 (next: the result of #4 fb_StartVm)", "the whole history". */
  where: string[];
  /** The recorded event the new code contradicts, when it is one event. */
  eventIndex: number | undefined;
  message: string;
}

/** What the host writes for the orchestrator's own actions: not delivered to it, checked against it. */
const SCHEDULING: ReadonlySet<number> = new Set([
  HistoryEventType.TaskScheduled,
  HistoryEventType.TimerCreated,
  HistoryEventType.OrchestratorCompleted,
]);

/**
 * The history the host replays when the deploy landed before `cut`: everything before it (seen),
 * then the episode's new events (not yet seen); the old code's reaction to them is left out.
 */
export function historyAtCut(history: readonly HistoryEvent[], cut: number): HistoryEvent[] {
  const seen = history.slice(0, cut).map((event) => ({ ...event, IsPlayed: true }));
  const arriving: HistoryEvent[] = [];
  for (let i = cut; i < history.length; i++) {
    const event = history[i]!;
    if (i > cut && event.EventType === HistoryEventType.OrchestratorStarted) break;
    if (!SCHEDULING.has(event.EventType)) arriving.push({ ...event, IsPlayed: false });
  }
  return [...seen, ...arriving];
}

/**
 * Replays `run` at every cut and as a whole on `orchestrator` and returns every break (empty:
 * compatible). A break is an action the host would refuse, an error the old run did not have, or
 * (whole history) a Completed outcome that differs from the recorded one.
 */
export async function checkReplayCompatibility(
  orchestrator: OrchestrationHandler,
  run: RecordedRun,
  options: ReplayCheckOptions = {},
): Promise<ReplayBreak[]> {
  const breaks: ReplayBreak[] = [];
  const cuts = options.cuts ?? inFlightCuts(run.history);
  const lastCut = cuts.at(-1);
  const whole = run.history.length;
  for (const cut of [...cuts, whole]) {
    const history = cut === whole ? run.history : historyAtCut(run.history, cut);
    const add = (eventIndex: number | undefined, message: string): void => {
      const where =
        cut === whole ? "the whole history" : `before event #${cut} (next: ${arrival(run.history, cut)})`;
      const same = breaks.find((b) => b.eventIndex === eventIndex && b.message === message);
      if (same) same.where.push(where);
      else breaks.push({ run: run.name, where: [where], eventIndex, message });
    };
    // The recorded run ended in the last episode; before it, it neither ended nor failed.
    const ended = cut === whole || cut === lastCut;
    const { state, error } = await replayOnce(orchestrator, {
      instanceId: run.instanceId,
      history,
      input: run.input,
      schema: run.schema,
    });
    let actions: ReturnType<typeof flattenActions>;
    try {
      actions = flattenActions(state.actions);
    } catch (thrown) {
      if (!(thrown instanceof NonDeterminismError)) throw thrown;
      add(undefined, thrown.message);
      continue;
    }
    // Scheduling events sit only in the part before the cut, whose indices are the recording's.
    const mismatch = matchScheduled(history, actions);
    if (mismatch) {
      add(mismatch.index, mismatch.message);
    } else if (error !== undefined && !(ended && run.runtimeStatus === "Failed")) {
      add(undefined, `the new code throws where the recorded run did not: ${error}`);
    } else if (cut === whole && run.runtimeStatus === "Completed" && state.isDone && error === undefined) {
      const before = options.outcome?.(run.output);
      const after = options.outcome?.(state.output);
      if (JSON.stringify(before) !== JSON.stringify(after)) {
        add(
          undefined,
          `the whole history now ends with outcome ${JSON.stringify(after)}, recorded ${JSON.stringify(before)}`,
        );
      }
    }
  }
  return breaks;
}

type Atomic = ReturnType<typeof flattenActions>[number];

/**
 * The host's check (TaskOrchestrationContext.cs `HandleTaskScheduledEvent`, `HandleTimerCreatedEvent`):
 * each scheduling event in `history`, by its sequence number, against the action that takes it.
 */
function matchScheduled(
  history: readonly HistoryEvent[],
  actions: readonly Atomic[],
): { index: number; message: string } | undefined {
  const retried = actions.find((action) => action.kind === "activity" && action.retry !== undefined);
  if (retried?.kind === "activity") {
    // The library and the host give each retry attempt and its timer their own sequence numbers,
    // as failures arrive; this check does not model that numbering.
    throw new Error(
      `replayCheck does not model callActivityWithRetry (activity ${retried.name}): retry in the ` +
        "orchestrator with callActivity and a timer, or teach replayCheck the retry numbering",
    );
  }
  // In emitted order, what takes a sequence number: activities and timers (event waits take none).
  const numbered = actions.filter((action) => action.kind !== "event");
  for (let index = 0; index < history.length; index++) {
    const event = history[index]!;
    const isTask = event.EventType === HistoryEventType.TaskScheduled;
    if (!isTask && event.EventType !== HistoryEventType.TimerCreated) continue;
    const recorded = isTask ? `activity "${event.Name}"` : `a timer (fire at ${event.FireAt})`;
    const action = numbered[event.EventId];
    const now =
      action === undefined
        ? `schedules nothing there (it emits only ${numbered.length} activities and timers so far)`
        : action.kind === "activity"
          ? `schedules activity "${action.name}" there`
          : `creates a timer there (fire at ${action.fireAt.toISOString()})`;
    const matches =
      action !== undefined &&
      (isTask
        ? action.kind === "activity" && action.name.toLowerCase() === (event.Name ?? "").toLowerCase()
        : action.kind === "timer");
    if (!matches) {
      return {
        index,
        message:
          `history event #${index} records ${recorded} as sequence number ${event.EventId}; the new code ${now}. ` +
          "Azure would fail this instance (NonDeterministicOrchestrationException)",
      };
    }
  }
  return undefined;
}

/** What the host delivers at `cut` (the new events of that episode), in words. */
export function arrival(history: readonly HistoryEvent[], cut: number): string {
  const task = (id: number | undefined) => {
    const scheduled = history.find(
      (e) =>
        e.EventId === id &&
        (e.EventType === HistoryEventType.TaskScheduled || e.EventType === HistoryEventType.TimerCreated),
    );
    return `#${id}${scheduled?.Name ? ` ${scheduled.Name}` : ""}`;
  };
  const words = historyAtCut(history, cut)
    .slice(cut + 1)
    .map((event) => {
      switch (event.EventType) {
        case HistoryEventType.TaskCompleted:
          return `the result of ${task(event.TaskScheduledId)}`;
        case HistoryEventType.TaskFailed:
          return `the failure of ${task(event.TaskScheduledId)}`;
        case HistoryEventType.TimerFired:
          return `timer #${event.TimerId} firing`;
        case HistoryEventType.EventRaised:
          return `event ${event.Name}`;
        default:
          return `an event of type ${event.EventType}`;
      }
    });
  return words.join(", ") || "nothing new";
}

/** A break usually shows at every later cut too: name the first few. */
const SHOWN_CUTS = 3;

/** The breaks as a developer reads them: run, where, what; and what to do. */
export function formatBreaks(breaks: readonly ReplayBreak[]): string {
  const lines = breaks.map((b) => {
    const where = b.where.slice(0, SHOWN_CUTS).join("; ");
    const more = b.where.length > SHOWN_CUTS ? ` and ${b.where.length - SHOWN_CUTS} later points` : "";
    return `- ${b.run}, deploy landing ${where}${more}:\n  ${b.message}`;
  });
  return (
    `${breaks.length} break(s) with recorded histories:\n${lines.join("\n")}\n` +
    "In-flight instances of these shapes would fail after the deploy: keep the old order and names, " +
    "or version the orchestrator (README: Changing the orchestrator safely)."
  );
}
