/**
 * decideIdleShutdown with the signals besides the lease: the VM's run commands, the builder's
 * heartbeat, the expired holder's orchestration, the warm hours. Each keeps the builder, says why,
 * and only all of them quiet lets it go.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decideIdleShutdown, QUIET_SIGNALS, type IdleSignals } from "../../src/core/idle.js";
import { emptyRecord, type BuilderRecord } from "../../src/core/lease.js";

const NOW = new Date("2030-01-09T12:00:00.000Z");
const POLICY = {
  idleMs: 30 * 60_000,
  shutdownLeaseMs: 20 * 60_000,
  queueStaleMs: 10 * 60_000,
  heartbeatFreshMs: 5 * 60_000,
};
const ago = (ms: number) => new Date(NOW.getTime() - ms).toISOString();
/** A build's lease that expired while the function app was down: never released. */
const expired: BuilderRecord = {
  ...emptyRecord("builder"),
  holder: "b-long",
  generation: 3,
  leaseExpiresAt: ago(20 * 60_000),
  acquiredAt: ago(50 * 60_000),
  lastActivityAt: ago(50 * 60_000),
};
const decide = (signals: Partial<IdleSignals>, record: BuilderRecord = expired) =>
  decideIdleShutdown(record, "running", NOW, POLICY, { ...QUIET_SIGNALS, ...signals });
const reason = (decision: ReturnType<typeof decide>) =>
  decision.kind === "keep" ? decision.reason : "(deallocate)";

describe("idle shutdown's signals besides the lease", () => {
  it("deallocates a builder whose lease expired when every signal is quiet (the lease alone)", () => {
    assert.equal(decide({}).kind, "deallocate");
  });

  it("keeps a builder whose lease expired while the VM still runs the build's command, and says so", () => {
    const decision = decide({
      commands: {
        kind: "read",
        busy: [{ name: "fb-b-long", executionState: "Running", provisioningState: "Succeeded" }],
      },
    });
    assert.equal(decision.kind, "keep");
    assert.equal(reason(decision), "the VM is running build b-long's command fb-b-long (Running)");
  });

  it("keeps it while the heartbeat is fresh: 'heartbeat 40 s ago'", () => {
    const decision = decide({ heartbeat: { buildId: "b-long", at: ago(40_000) } });
    assert.equal(reason(decision), "build b-long's heartbeat 40 s ago");
  });

  it("counts a heartbeat a little ahead of this clock (another instance's clock) as fresh", () => {
    assert.equal(
      reason(decide({ heartbeat: { buildId: "b-long", at: ago(-20_000) } })),
      "build b-long's heartbeat 20 s ahead of this clock",
    );
  });

  it("ignores a heartbeat older than the window", () => {
    assert.equal(
      decide({ heartbeat: { buildId: "b-long", at: ago(POLICY.heartbeatFreshMs) } }).kind,
      "deallocate",
    );
  });

  it("keeps it when the VM's run commands cannot be read (a fault is not 'nothing runs')", () => {
    const decision = decide({ commands: { kind: "unreadable", reason: "500 InternalServerError" } });
    assert.match(
      reason(decision),
      /^the VM's run commands could not be read \(500 InternalServerError\); the next check decides$/,
    );
  });

  it("keeps it while the expired holder's orchestration still runs (hybrid profile, just restarted)", () => {
    const decision = decide({
      commands: { kind: "unsupported" },
      expiredHolder: { buildId: "b-long", running: true },
    });
    assert.match(reason(decision), /^build b-long's lease expired, but its orchestration still runs/);
  });

  it("lets it go once that orchestration ended and nothing else says busy", () => {
    assert.equal(
      decide({ commands: { kind: "unsupported" }, expiredHolder: { buildId: "b-long", running: false } })
        .kind,
      "deallocate",
    );
  });

  it("keeps a command whose PUT is still being applied (provisioning Creating)", () => {
    const decision = decide({
      commands: {
        kind: "read",
        busy: [{ name: "fb-next", executionState: undefined, provisioningState: "Creating" }],
      },
    });
    assert.equal(reason(decision), "the VM is running build next's command fb-next (provisioning Creating)");
  });

  it("keeps an idle builder during warm hours, and says whose", () => {
    const decision = decide({
      warm: { count: 1, reason: "warm hours of dev (Mon-Fri 08:00-18:00 Europe/Berlin)" },
    });
    assert.equal(reason(decision), "warm hours of dev (Mon-Fri 08:00-18:00 Europe/Berlin)");
  });

  it("reads no signal for a builder already deallocated", () => {
    const decision = decideIdleShutdown(expired, "deallocated", NOW, POLICY, {
      ...QUIET_SIGNALS,
      warm: { count: 1, reason: "warm" },
    });
    assert.equal(reason(decision), "builder is already deallocated");
  });
});
