/**
 * The local cloud's own error shapes. It stands in for Azure, so it shares no types with the
 * product it serves: the product's errors are what its callers see, these are what a service says.
 */

/** A request the stand-in refuses with a 4xx status, as the real service would. */
export class ServiceRequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ServiceRequestError";
  }
}

/** A short, safe description of any thrown value (no stack). */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
