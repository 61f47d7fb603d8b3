/**
 * The build orchestrations as the HTTP triggers see them, over durable-functions' own client
 * (which talks to the Durable extension, or to the local host's engine). Narrow on purpose: start,
 * read, raise an event. The client's "HTTP 404" error becomes `undefined`, its other failures a
 * `TransientError`, so handlers map them like any other.
 */
import type { InvocationContext } from "@azure/functions";
import * as df from "durable-functions";
import { ENDED_RUNTIME_STATUSES, TERMINAL_PHASES, type BuildStatus } from "../core/api.js";
import { BUILD_ORCHESTRATOR } from "../core/activityContract.js";
import { buildInputSchema, type BuildInput } from "../core/buildInput.js";
import { ConflictError, NotFoundError, TransientError } from "../core/errors.js";
import { projectStatus, type InstanceView } from "../core/status.js";

export interface BuildInstance extends InstanceView {
  buildId: string;
  /** The orchestration input; undefined if it is not a build input (never expected). */
  input: BuildInput | undefined;
  /** The status as `GET /api/builds/{id}` shows it. */
  status: BuildStatus;
  /** The orchestration has ended, or published a terminal phase. */
  ended: boolean;
}

export interface BuildInstances {
  start(input: BuildInput): Promise<void>;
  get(buildId: string): Promise<BuildInstance | undefined>;
  raise(buildId: string, eventName: string, data: unknown): Promise<void>;
}

export function buildInstances(context: InvocationContext): BuildInstances {
  const client = df.getClient(context);
  return {
    async start(input) {
      await call("start the build", () =>
        client.startNew(BUILD_ORCHESTRATOR, { instanceId: input.buildId, input }),
      );
    },
    async get(buildId) {
      let raw: df.DurableOrchestrationStatus;
      try {
        raw = await client.getStatus(buildId, { showInput: true });
      } catch (error) {
        if (error instanceof Error && /HTTP 404/.test(error.message)) return undefined;
        throw unavailable("read the build", error);
      }
      const parsed = buildInputSchema.safeParse(raw.input);
      const input = parsed.success ? parsed.data : undefined;
      const view: InstanceView = {
        runtimeStatus: String(raw.runtimeStatus),
        customStatus: raw.customStatus,
        output: raw.output,
        createdTime: toIso(raw.createdTime),
        lastUpdatedTime: toIso(raw.lastUpdatedTime),
      };
      const status = projectStatus(buildId, input?.environment ?? "", view);
      return {
        ...view,
        buildId,
        input,
        status,
        ended: ENDED_RUNTIME_STATUSES.has(view.runtimeStatus) || TERMINAL_PHASES.has(status.phase),
      };
    },
    async raise(buildId, eventName, data) {
      await call(`signal the build (${eventName})`, () => client.raiseEvent(buildId, eventName, data));
    },
  };
}

/** A build known to the task hub, with its input. */
export type KnownBuild = BuildInstance & { input: BuildInput };

/** The build, or a 404 naming the id. */
export function requireBuild(build: BuildInstance | undefined, buildId: string): KnownBuild {
  if (!build?.input) {
    throw new NotFoundError(`No build with id ${buildId}.`, {
      code: "BuildNotFound",
      hint: "Check the id: it is the buildId that POST /api/builds returned.",
    });
  }
  return build as KnownBuild;
}

/** The build must still be running; `hint` says what the caller can do instead. */
export function requireRunning(build: KnownBuild, buildId: string, hint: string): void {
  if (build.ended) {
    throw new ConflictError(`Build ${buildId} has already ended (${build.status.phase}).`, {
      code: "BuildEnded",
      hint,
    });
  }
}

async function call<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw unavailable(what, error);
  }
}

function unavailable(what: string, error: unknown): TransientError {
  return new TransientError(`could not ${what}: the durable task hub did not answer as expected`, {
    code: "DurableUnavailable",
    cause: error,
  });
}

function toIso(value: Date | string): string {
  return value instanceof Date ? value.toISOString() : new Date(value).toISOString();
}
