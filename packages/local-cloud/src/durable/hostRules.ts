/**
 * Rules the Durable Functions host (extension 2.x/3.x in the `[4.*, 5.0.0)` bundle, on
 * DurableTask.Core) applies to what a JavaScript app hands it, each written once here so the
 * driver and tests elsewhere check against the same definition. Sources are named per rule
 * (Azure/azure-functions-durable-extension unless said otherwise).
 */

/** `DurableOrchestrationContext.cs` SetCustomStatus: `MaxCustomStatusPayloadSizeInKB = 16`. */
export const MAX_CUSTOM_STATUS_KB = 16;

/**
 * The host's message when a custom status is too large, or `undefined` when it fits.
 * `MessagePayloadDataConverter.cs` Serialize(value, maxSizeInKB): the size is the JSON's UTF-16
 * byte count / 1024, truncated to an integer, and fails when it *exceeds* 16, so up to 17,407
 * bytes pass (8,703 ASCII characters; a non-BMP character counts as two UTF-16 units). A JS
 * string is UTF-16, so the byte count is twice its length. `null`/absent is never checked
 * (`OutOfProcOrchestrationShim.cs` only calls SetCustomStatus when CustomStatus != null).
 */
export function customStatusSizeError(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  const json = JSON.stringify(value) as string | undefined;
  if (json === undefined) return undefined;
  const sizeInKB = Math.floor((json.length * 2) / 1024);
  if (sizeInKB <= MAX_CUSTOM_STATUS_KB) return undefined;
  return (
    `The UTF-16 size of the JSON-serialized payload must not exceed ${MAX_CUSTOM_STATUS_KB} KB. ` +
    `The current payload size is ${sizeInKB.toLocaleString("en-US")} KB.`
  );
}

/**
 * How a failed episode reads in the instance's output: `TaskOrchestrationShim.cs`
 * InvokeUserCodeAndHandleResults wraps every failure as `Orchestrator function '<name>' failed: <message>`
 * (`OutOfProcOrchestrationShim.cs` does the same for an orchestrator that threw).
 */
export function orchestratorFailure(name: string, message: string): string {
  return `Orchestrator function '${name}' failed: ${message}`;
}

export interface TaskFailure {
  reason: string;
  details: string;
}

/**
 * TaskFailed for a Node activity that threw. The worker reports the error as an RpcException whose
 * message is `Result: Failure\nException: <message>\nStack: <stack>` (the host's RpcException);
 * `OutOfProcExceptionHelpers.cs` TryGetExceptionWithFriendlyMessage keeps the text between
 * `\nException:` and `\nStack:` (with its leading space) as a new System.Exception wrapping the
 * RpcException, and `Listener/TaskActivityShim.cs` writes Reason
 * `Activity function '<name>' failed: <that message>` (hence two spaces) and Details = the Json.NET
 * serialization of that exception (DurableTask.Core `Common/Utils.cs` SerializeCause). Details
 * here carries the fields a reader uses, not every field .NET writes.
 */
export function activityFailure(name: string, error: unknown): TaskFailure {
  const message = error instanceof Error ? error.message : String(error);
  const stack = error instanceof Error ? (error.stack ?? "") : "";
  const friendly = ` ${message}`;
  return {
    reason: `Activity function '${name}' failed: ${friendly}`,
    details: JSON.stringify({
      $type: "System.Exception, System.Private.CoreLib",
      ClassName: "System.Exception",
      Message: friendly,
      Data: null,
      InnerException: {
        $type: "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException, Microsoft.Azure.WebJobs.Script",
        Message: `Result: Failure\nException: ${message}\nStack: ${stack}`,
        RemoteStackTrace: stack,
      },
    }),
  };
}

/**
 * TaskFailed for an activity that ran past host.json's functionTimeout. The WebJobs host fails the
 * invocation with FunctionTimeoutException `Timeout value of <TimeSpan> was exceeded by function:
 * Functions.<name>`; `Listener/FunctionExecutionHelper.cs` maps it to FunctionTimeoutError and
 * `Listener/TaskActivityShim.cs` reports it like a user error (one space: not an RpcException).
 */
export function activityTimeout(name: string, functionTimeoutMs: number): TaskFailure {
  const message = `Timeout value of ${formatTimeSpan(functionTimeoutMs)} was exceeded by function: Functions.${name}`;
  return {
    reason: `Activity function '${name}' failed: ${message}`,
    details: JSON.stringify({
      $type: "Microsoft.Azure.WebJobs.Host.FunctionTimeoutException, Microsoft.Azure.WebJobs.Host",
      ClassName: "Microsoft.Azure.WebJobs.Host.FunctionTimeoutException",
      Message: message,
    }),
  };
}

/** .NET `TimeSpan.ToString()`: `[d.]hh:mm:ss[.fffffff]` (host.json's functionTimeout format). */
export function formatTimeSpan(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`a function timeout must be >= 0 ms, got ${ms}`);
  const pad = (n: number) => String(n).padStart(2, "0");
  const days = Math.floor(ms / 86_400_000);
  const hours = Math.floor(ms / 3_600_000) % 24;
  const minutes = Math.floor(ms / 60_000) % 60;
  const seconds = Math.floor(ms / 1000) % 60;
  const fraction = ms % 1000 ? `.${String(Math.round((ms % 1000) * 10_000)).padStart(7, "0")}` : "";
  return `${days ? `${days}.` : ""}${pad(hours)}:${pad(minutes)}:${pad(seconds)}${fraction}`;
}

/**
 * `preserve`: strings cross the host unchanged. `json.net` (default, what the current bundle does):
 * `Listener/TaskOrchestrationShim.cs` parses the orchestrator's reply with `JObject.Parse`, whose
 * default DateParseHandling turns ISO-8601-looking strings into DateTimes, and writes them back in
 * Json.NET's round-trip format (PR 1440 set DateParseHandling.None only in the extension's own
 * serializer settings, `MessageSerializerSettingsFactory.cs`; azure-functions-durable-js issue 264
 * is still open). durable-js JSON-encodes a top-level string input itself, so only strings nested
 * in objects/arrays of an activity input change; custom status and output change at any depth.
 * Activity results: the same reformatting of nested strings (durable-extension issue 1476).
 */
export type DateStringMode = "json.net" | "preserve";

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?(Z|[+-]\d{2}:\d{2})?$/;

/**
 * One string as Json.NET writes it back after parsing it as a date, or the string unchanged when
 * Json.NET would not read it as one: fractional seconds lose trailing zeros (all of `.000`), `Z`
 * stays `Z`, an offset is converted to the host's zone (UTC in Azure, written `+00:00`), and no zone
 * stays without one (DateTimeKind Utc / Local / Unspecified, format `yyyy-MM-ddTHH:mm:ss.FFFFFFFK`).
 */
export function jsonNetDateString(text: string): string {
  const m = ISO_DATE.exec(text);
  if (!m) return text;
  const [, y, mo, d, h, mi, s, frac = "", zone] = m;
  const wholeMs = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  const check = new Date(wholeMs);
  if (
    Number.isNaN(wholeMs) ||
    check.getUTCFullYear() !== Number(y) ||
    check.getUTCMonth() !== Number(mo) - 1 ||
    check.getUTCDate() !== Number(d) ||
    Number(h) > 23 ||
    Number(mi) > 59 ||
    Number(s) > 59
  ) {
    return text;
  }
  const ticks = frac.padEnd(7, "0").replace(/0+$/, "");
  let local = wholeMs;
  let suffix = "";
  if (zone === "Z") suffix = "Z";
  else if (zone) {
    const sign = zone.startsWith("-") ? -1 : 1;
    local -= sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6))) * 60_000;
    suffix = "+00:00";
  }
  const base = new Date(local).toISOString().slice(0, 19);
  return `${base}${ticks ? `.${ticks}` : ""}${suffix}`;
}

/** Applies {@link jsonNetDateString} to every string in a JSON value (`nestedOnly`: not the top level). */
export function reformatDates(value: unknown, mode: DateStringMode, nestedOnly: boolean): unknown {
  if (mode === "preserve") return value;
  const walk = (node: unknown, top: boolean): unknown => {
    if (typeof node === "string") return top && nestedOnly ? node : jsonNetDateString(node);
    if (Array.isArray(node)) return node.map((child) => walk(child, false));
    if (typeof node === "object" && node !== null) {
      return Object.fromEntries(Object.entries(node).map(([key, child]) => [key, walk(child, false)]));
    }
    return node;
  };
  return walk(value, true);
}
