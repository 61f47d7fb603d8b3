/**
 * Our own `@azure/functions-core` for the local runtime only.
 *
 * `@azure/functions` registers functions through a module of that name which exists only inside the
 * Azure Functions Node worker: the worker intercepts `Module.prototype.require` and answers that one
 * name with its API. We do the same here, so `app.http(...)`, `app.timer(...)` and durable-functions'
 * `df.app.*` hand us exactly the metadata and handlers Azure would get. Nothing here is reachable from
 * the deployed package (it lives in this package, which is never deployed), so Azure always gets its own.
 *
 * This file must stay free of imports beyond `node:module`: the cold-start benchmark transpiles it
 * on its own and preloads it.
 */
import Module from "node:module";

/** One binding as `@azure/functions` describes it (`toCoreFunctionMetadata`). */
export interface CapturedBinding {
  type: string;
  direction?: string;
  name?: string;
  [key: string]: unknown;
}

export type CapturedHandler = (...args: unknown[]) => unknown;

/** A registration exactly as the worker would receive it. */
export interface CapturedFunction {
  name: string;
  bindings: Readonly<Record<string, CapturedBinding>>;
  retryOptions?: unknown;
  handler: CapturedHandler;
}

interface Registry {
  functions: Map<string, CapturedFunction>;
  /** Set once by `@azure/functions` on its first `app.*` call; its absence means test mode. */
  programmingModel: unknown;
  installed: boolean;
}

// Kept on globalThis so a second copy of this module (ESM and CJS loaders both loading it) shares
// one registry: registrations happen once per process, at import time.
const REGISTRY_KEY = Symbol.for("fast-build.local.functions-core");

function registry(): Registry {
  const holder = globalThis as unknown as Record<symbol, Registry | undefined>;
  let found = holder[REGISTRY_KEY];
  if (!found) {
    found = {
      functions: new Map(),
      programmingModel: undefined,
      installed: false,
    };
    holder[REGISTRY_KEY] = found;
  }
  return found;
}

class Disposable {
  #callback: (() => void) | undefined;

  constructor(callback: () => void) {
    this.#callback = callback;
  }

  static from(...items: { dispose?: () => void }[]): Disposable {
    return new Disposable(() => {
      for (const item of items) item.dispose?.();
    });
  }

  dispose(): void {
    this.#callback?.();
    this.#callback = undefined;
  }
}

function createCoreApi(state: Registry) {
  return {
    version: "0.0.0-local",
    hostVersion: "4.0.0-local",
    Disposable,
    setProgrammingModel(model: unknown): void {
      state.programmingModel = model;
    },
    getProgrammingModel(): unknown {
      return state.programmingModel;
    },
    registerFunction(
      metadata: { name: string; bindings: Record<string, CapturedBinding>; retryOptions?: unknown },
      callback: CapturedHandler,
    ): Disposable {
      // The Functions host refuses two functions with one name; so do we, rather than serve one silently.
      if (state.functions.has(metadata.name)) {
        throw new Error(
          `A function named "${metadata.name}" is already registered; function names must be unique.`,
        );
      }
      state.functions.set(metadata.name, {
        name: metadata.name,
        bindings: metadata.bindings,
        retryOptions: metadata.retryOptions,
        handler: callback,
      });
      return new Disposable(() => state.functions.delete(metadata.name));
    },
    // The app registers no invocation hooks, and the local host runs none.
    registerHook(): Disposable {
      return new Disposable(() => undefined);
    },
    log(level: string, _category: string, message: string): void {
      if (level === "error" || level === "critical" || level === "warning") {
        console.warn(`[functions ${level}] ${message}`);
      }
    },
  };
}

/**
 * Makes `require("@azure/functions-core")` answer with our API in this process. Idempotent. Must run
 * before the first `app.*` call: `@azure/functions` looks the module up once and, if it is missing,
 * stays in test mode for the life of the process.
 */
export function installCoreShim(): void {
  const state = registry();
  if (state.installed) return;
  const api = createCoreApi(state);
  // Kept unbound on purpose: the proxy calls it with the original `this` through Reflect.apply.
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const original = Module.prototype.require;
  Module.prototype.require = new Proxy(original, {
    apply(target, thisArg: unknown, args: unknown[]) {
      if (args[0] === "@azure/functions-core") return api;
      return Reflect.apply(target, thisArg, args) as unknown;
    },
  });
  state.installed = true;
}

/** Every function registered in this process so far, in registration order. */
export function capturedFunctions(): CapturedFunction[] {
  return [...registry().functions.values()];
}

/** `false` means `@azure/functions` has not registered anything through us (not used yet, or test mode). */
export function programmingModelSet(): boolean {
  return registry().programmingModel !== undefined;
}
