/**
 * One virtual clock for a test: the durable driver reads it for history timestamps and timers, and
 * a test hands `() => clock.now()` to the product's activities, so lease expiry, retry backoff and
 * host stalls all move on the same time line.
 */
export class VirtualClock {
  private ms: number;

  constructor(start: Date = new Date(Date.UTC(2030, 0, 1))) {
    if (Number.isNaN(start.getTime())) throw new Error("VirtualClock needs a valid start date");
    this.ms = start.getTime();
  }

  now(): Date {
    return new Date(this.ms);
  }

  /** Moves the clock forward by `ms` (0 or more). */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) {
      throw new Error(`VirtualClock.advance takes a finite number of ms >= 0, got ${ms}`);
    }
    this.ms += ms;
  }

  /** Moves the clock to `at` if that is later; time never runs backwards. */
  advanceTo(at: Date): void {
    this.ms = Math.max(this.ms, at.getTime());
  }
}
