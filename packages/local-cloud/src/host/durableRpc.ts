/**
 * The Durable Functions extension's RPC endpoint, served over a {@link DurableEngine}.
 *
 * durable-functions' `DurableClient` talks to `rpcBaseUrl` with these requests (read from
 * `lib/src/durableClient/DurableClient.js` in 3.5.0), and the replies follow the extension's
 * HTTP API so the client's own status handling applies unchanged:
 * - `POST orchestrators/{name}[/{instanceId}]`, body = JSON input or empty → 202 `{id, …}`
 * - `GET instances/{id}` → 200 (ended) / 202 (running) with the status, 404 unknown;
 *   `GET instances/` → 200 with every instance
 * - `POST instances/{id}/raiseEvent/{event}`, body = JSON data → 202; 410 when the instance ended
 * - `POST instances/{id}/terminate?reason=…` → 202; 410 when the instance ended
 *
 * Like the real extension it listens on loopback only, on its own port: whoever reaches it can
 * start, signal or end any instance, so it must never be the app's public port.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ServiceRequestError } from "../errors.js";
import { TERMINAL_STATUSES, type DurableEngine, type InstanceStatus } from "../durable/engine.js";
import { close, listen, readBody, reply } from "../httpServer.js";

/** Event payloads and inputs are small JSON; anything bigger is a bug in the caller. */
const MAX_RPC_BODY_BYTES = 8 * 1024 * 1024;

export interface DurableRpcServer {
  /** Ends with `/`, as the extension's own does (the client resolves relative paths against it). */
  rpcBaseUrl: string;
  /** The `durableClient` input binding data a function receives, as the extension sends it. */
  clientBindingData(): Record<string, unknown>;
  stop(): Promise<void>;
}

export async function startDurableRpcServer(
  engine: () => DurableEngine,
  options: { taskHubName: string },
): Promise<DurableRpcServer> {
  const server = createServer((req, res) => {
    handle(engine(), req, res).catch((error: unknown) => {
      reply(res, 500, { message: `local durable endpoint failed: ${describe(error)}` });
    });
  });
  await listen(server);
  const { port } = server.address() as AddressInfo;
  const rpcBaseUrl = `http://127.0.0.1:${port}/durabletask/`;

  return {
    rpcBaseUrl,
    clientBindingData() {
      // The webhook URLs normally carry the durable system key. Locally there is none: they point
      // at the loopback RPC endpoint, and our functions never hand them out anyway.
      const instance = `${rpcBaseUrl}instances/INSTANCEID`;
      return {
        taskHubName: options.taskHubName,
        creationUrls: {
          createNewInstancePostUri: `${rpcBaseUrl}orchestrators/{functionName}[/{instanceId}]`,
          createAndWaitOnNewInstancePostUri: `${rpcBaseUrl}orchestrators/{functionName}[/{instanceId}]?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}`,
        },
        managementUrls: {
          id: "INSTANCEID",
          statusQueryGetUri: instance,
          sendEventPostUri: `${instance}/raiseEvent/{eventName}`,
          terminatePostUri: `${instance}/terminate?reason={text}`,
          rewindPostUri: `${instance}/rewind?reason={text}`,
          purgeHistoryDeleteUri: instance,
          restartPostUri: `${instance}/restart`,
          suspendPostUri: `${instance}/suspend?reason={text}`,
          resumePostUri: `${instance}/resume?reason={text}`,
        },
        baseUrl: rpcBaseUrl.replace(/\/$/, ""),
        requiredQueryStringParameters: "",
        rpcBaseUrl,
        httpBaseUrl: rpcBaseUrl.replace(/\/$/, ""),
      };
    },
    stop: () => close(server),
  };

  function payload(id: string): Record<string, unknown> {
    const instance = `${rpcBaseUrl}instances/${id}`;
    return {
      id,
      statusQueryGetUri: instance,
      sendEventPostUri: `${instance}/raiseEvent/{eventName}`,
      terminatePostUri: `${instance}/terminate?reason={text}`,
      purgeHistoryDeleteUri: instance,
    };
  }

  async function handle(engine: DurableEngine, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", rpcBaseUrl);
    const path = url.pathname.replace(/^\/durabletask\//, "");
    if (path === url.pathname) return reply(res, 404, { message: `not a durable endpoint: ${url.pathname}` });
    const parts = path.split("/").map(decodeURIComponent);
    const method = req.method ?? "GET";
    let body: unknown;
    try {
      body = await readJson(req);
    } catch (error) {
      return reply(res, 400, { message: describe(error) });
    }

    if (method === "POST" && parts[0] === "orchestrators" && parts[1] && parts.length <= 3) {
      const id = parts[2] || randomUUID().replaceAll("-", "");
      try {
        await engine.startNew(parts[1], id, body);
      } catch (error) {
        return replyError(res, error);
      }
      return reply(res, 202, payload(id));
    }

    if (parts[0] !== "instances") return reply(res, 404, { message: `unknown durable endpoint: ${path}` });
    const id = parts[1] ?? "";
    if (method === "GET" && id === "" && parts.length <= 2) {
      return reply(res, 200, (await engine.listInstances()).map(wire));
    }
    if (!id) return reply(res, 404, { message: "no instance id given" });
    const status = await engine.getStatus(id);

    if (method === "GET" && parts.length === 2) {
      if (!status) return reply(res, 404, { message: `no instance with id '${id}'` });
      return reply(res, TERMINAL_STATUSES.has(status.runtimeStatus) ? 200 : 202, wire(status));
    }
    if (method === "POST" && parts[2] === "raiseEvent" && parts[3] && parts.length === 4) {
      if (!status) return reply(res, 404, { message: `no instance with id '${id}'` });
      if (TERMINAL_STATUSES.has(status.runtimeStatus))
        return reply(res, 410, { message: `instance '${id}' has ended` });
      try {
        await engine.raiseEvent(id, parts[3], body ?? null);
      } catch (error) {
        return replyError(res, error);
      }
      return reply(res, 202, undefined);
    }
    if (method === "POST" && parts[2] === "terminate" && parts.length === 3) {
      if (!status) return reply(res, 404, { message: `no instance with id '${id}'` });
      if (TERMINAL_STATUSES.has(status.runtimeStatus))
        return reply(res, 410, { message: `instance '${id}' has ended` });
      try {
        await engine.terminate(id, url.searchParams.get("reason") ?? "");
      } catch (error) {
        return replyError(res, error);
      }
      return reply(res, 202, undefined);
    }
    // purge, rewind, suspend, resume, entities: not part of the DurableEngine contract.
    return reply(res, 501, { message: `${method} ${path} is not supported by the local durable engine` });
  }
}

/** The status as the extension serialises it: every field present (the client rejects `undefined`). */
function wire(status: InstanceStatus): Record<string, unknown> {
  return {
    name: status.name,
    instanceId: status.instanceId,
    runtimeStatus: status.runtimeStatus,
    input: status.input ?? null,
    customStatus: status.customStatus ?? null,
    output: status.output ?? null,
    createdTime: status.createdTime,
    lastUpdatedTime: status.lastUpdatedTime,
  };
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const text = (await readBody(req, MAX_RPC_BODY_BYTES)).toString("utf8").trim();
  if (text === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ServiceRequestError(400, "request body is not valid JSON");
  }
}

function replyError(res: ServerResponse, error: unknown): void {
  const status = error instanceof ServiceRequestError ? error.status : 500;
  reply(res, status, { message: describe(error) });
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
