/**
 * Promotions and rollbacks as the HTTP triggers see them: the deploy orchestration's instances over
 * durable-functions' client (start, read, raise the approval's decision). As instances.ts for builds.
 */
import type { InvocationContext } from "@azure/functions";
import * as df from "durable-functions";
import { ENDED_RUNTIME_STATUSES, TERMINAL_PHASES } from "../core/api.js";
import { NotFoundError, TransientError } from "../core/errors.js";
import {
  DEPLOY_ORCHESTRATOR,
  deployInputSchema,
  type DeployInput,
  type DeployStatus,
} from "../core/promotion.js";
import { projectStatus } from "../core/status.js";

export interface DeployInstance {
  input: DeployInput;
  status: DeployStatus;
  ended: boolean;
}

export interface DeployInstances {
  start(input: DeployInput): Promise<void>;
  get(id: string): Promise<DeployInstance | undefined>;
  raise(id: string, eventName: string, data: unknown): Promise<void>;
}

export function deployInstances(context: InvocationContext): DeployInstances {
  const client = df.getClient(context);
  const unavailable = (what: string, error: unknown) =>
    new TransientError(`could not ${what}: the durable task hub did not answer as expected`, {
      code: "DurableUnavailable",
      cause: error,
    });
  return {
    async start(input) {
      try {
        await client.startNew(DEPLOY_ORCHESTRATOR, { instanceId: input.id, input });
      } catch (error) {
        throw unavailable(`start ${input.kind} ${input.id}`, error);
      }
    },
    async get(id) {
      let raw: df.DurableOrchestrationStatus;
      try {
        raw = await client.getStatus(id, { showInput: true });
      } catch (error) {
        if (error instanceof Error && /HTTP 404/.test(error.message)) return undefined;
        throw unavailable(`read ${id}`, error);
      }
      const parsed = deployInputSchema.safeParse(raw.input);
      if (!parsed.success) return undefined;
      const input = parsed.data;
      const view = {
        runtimeStatus: String(raw.runtimeStatus),
        customStatus: raw.customStatus,
        output: raw.output,
        createdTime: new Date(raw.createdTime).toISOString(),
        lastUpdatedTime: new Date(raw.lastUpdatedTime).toISOString(),
      };
      const projected = projectStatus(id, input.environment, view);
      const published = view.customStatus as Partial<DeployStatus> | undefined;
      const deploy = published?.deploy ?? {
        kind: input.kind,
        to: input.environment,
        image: input.image,
        ...(input.from ? { from: input.from } : {}),
      };
      const status: DeployStatus = {
        ...projected,
        deploy,
      };
      return {
        input,
        status,
        ended: ENDED_RUNTIME_STATUSES.has(view.runtimeStatus) || TERMINAL_PHASES.has(status.phase),
      };
    },
    async raise(id, eventName, data) {
      try {
        await client.raiseEvent(id, eventName, data);
      } catch (error) {
        throw unavailable(`signal ${id} (${eventName})`, error);
      }
    },
  };
}

/** The instance, or a 404 naming the id. */
export function requireDeploy(found: DeployInstance | undefined, id: string): DeployInstance {
  if (!found) {
    throw new NotFoundError(`No promotion or rollback with id ${id}.`, {
      code: "PromotionNotFound",
      hint: "Use the id fast-build promote or fast-build rollback printed.",
    });
  }
  return found;
}
