/**
 * Every HTTP and timer trigger of the API, in one table. Registering must stay cheap (it runs on
 * every cold start): this module imports only `@azure/functions`, and each handler module (with
 * zod, the durable client and the SDK gateways behind it) is imported on its trigger's first call.
 * Orchestrator and activities are registered in orchestration.ts.
 */
import { app, input, type HttpHandler, type InvocationContext, type Timer } from "@azure/functions";

/**
 * The durable client input: the same binding `df.input.durableClient()` declares, made without
 * loading durable-functions (and its HTTP client) at start.
 */
export const durableClientInput = input.generic({ type: "durableClient" });

/**
 * Every minute: a builder held by a build whose orchestration ended is freed within a minute
 * (queued builds wait behind a dead holder no longer); idle checks are a table read per builder,
 * and ARM is asked only for builders nobody holds.
 */
export const IDLE_SHUTDOWN_SCHEDULE = "0 * * * * *";

/** A handler that imports its module on first use; a failed import is retried on the next call. */
function lazy<A extends unknown[], R>(
  load: () => Promise<(...args: A) => R | Promise<R>>,
): (...args: A) => Promise<R> {
  let loaded: Promise<(...args: A) => R | Promise<R>> | undefined;
  return async (...args) => {
    loaded ??= load().catch((error: unknown) => {
      loaded = undefined;
      throw error;
    });
    const handler = await loaded;
    return handler(...args);
  };
}

const http = (
  name: string,
  methods: ("GET" | "POST")[],
  route: string,
  authLevel: "function" | "anonymous",
  load: () => Promise<HttpHandler>,
  durable = true,
): void => {
  app.http(name, {
    route,
    methods,
    authLevel,
    extraInputs: durable ? [durableClientInput] : [],
    handler: lazy(load),
  });
};

http("startBuild", ["POST"], "builds", "function", async () => (await import("./startBuild.js")).startBuild);
http("getBuild", ["GET"], "builds/{id}", "function", async () => (await import("./getBuild.js")).getBuild);
http(
  "sourceUploaded",
  ["POST"],
  "builds/{id}/source",
  "function",
  async () => (await import("./sourceUploaded.js")).sourceUploaded,
);
http("getLogs", ["GET"], "builds/{id}/logs", "function", async () => (await import("./getLogs.js")).getLogs);
http(
  "cancelBuild",
  ["POST"],
  "builds/{id}/cancel",
  "function",
  async () => (await import("./cancelBuild.js")).cancelBuild,
);
// The builder VM has no function key (and must never get the durable system key): the per-build
// token in the orchestration input is its only credential, checked by the handler.
http(
  "buildCallback",
  ["POST"],
  "builds/{id}/callback",
  "anonymous",
  async () => (await import("./buildCallback.js")).buildCallback,
);
http(
  "listBuilders",
  ["GET"],
  "builders",
  "function",
  async () => (await import("./listBuilders.js")).listBuilders,
  false,
);
// Read-only: what the registry has for a source digest and base key (`fast-build plan --api`).
http(
  "findImages",
  ["GET"],
  "environments/{env}/images",
  "function",
  async () => (await import("./findImages.js")).findImages,
  false,
);
// Starts the builder now (a pre-push hook), counted as use by the idle rule; never takes the lease.
http(
  "warmBuilder",
  ["POST"],
  "environments/{env}/warm",
  "function",
  async () => (await import("./warmBuilder.js")).warmBuilderHandler,
  false,
);

// Promotions and rollbacks (src/functions/promotions.ts): start, status, the approval's decision.
http(
  "startPromotion",
  ["POST"],
  "promotions",
  "function",
  async () => (await import("./promotions.js")).startPromotion,
);
http(
  "getPromotion",
  ["GET"],
  "promotions/{id}",
  "function",
  async () => (await import("./promotions.js")).getPromotion,
);
http(
  "approvePromotion",
  ["POST"],
  "promotions/{id}/approve",
  "function",
  async () => (await import("./promotions.js")).approvePromotion,
);
http(
  "rejectPromotion",
  ["POST"],
  "promotions/{id}/reject",
  "function",
  async () => (await import("./promotions.js")).rejectPromotion,
);
http(
  "startRollback",
  ["POST"],
  "environments/{env}/rollback",
  "function",
  async () => (await import("./promotions.js")).startRollback,
);
// The build history, newest first (GET; POST on the same route starts a build), and the builders' costs.
http(
  "listHistory",
  ["GET"],
  "builds",
  "function",
  async () => (await import("./history.js")).listHistoryHandler,
  false,
);
http(
  "getCosts",
  ["GET"],
  "costs",
  "function",
  async () => (await import("./history.js")).costsHandler,
  false,
);

app.timer("idleShutdown", {
  schedule: IDLE_SHUTDOWN_SCHEDULE,
  // A missed tick is not worth catching up: the next one decides with fresh data.
  runOnStartup: false,
  useMonitor: true,
  extraInputs: [durableClientInput],
  handler: lazy<[Timer, InvocationContext], void>(
    async () => (await import("./idleShutdown.js")).idleShutdown,
  ),
});
