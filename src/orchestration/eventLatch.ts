import type { OrchestrationContext, Task } from "durable-functions";

/**
 * An external event waited for at several points. The library hands a raised event to the most
 * recently created waiter for its name (or buffers it until one exists), so the latch always
 * waits with a fresh waiter and remembers it: if the event landed on that waiter after its race
 * was decided by another task, `fired` still sees it. Reusing one waiter in two `Task.any`s
 * instead would make the host schedule it twice.
 */
export class EventLatch {
  private waiter: Task | undefined;
  constructor(
    private readonly df: OrchestrationContext["df"],
    readonly name: string,
  ) {}

  get fired(): boolean {
    return this.waiter?.isCompleted === true;
  }

  get value(): unknown {
    return this.waiter?.result;
  }

  arm(): Task {
    if (this.fired) throw new Error(`event ${this.name} already arrived; check fired before arming`);
    this.waiter = this.df.waitForExternalEvent(this.name);
    return this.waiter;
  }

  /** Drops an event that was read and rejected, so the next `arm` waits for a new one. */
  reset(): void {
    this.waiter = undefined;
  }
}
