import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  chooseRollback,
  createDeployId,
  deployIdSchema,
  mayDecide,
  promoteRequestSchema,
  type RevisionCandidate,
} from "../../src/core/promotion.js";

const d = (c: string) => `sha256:${c.repeat(64)}`;
const rev = (
  name: string,
  digest: string | undefined,
  health = "Healthy",
  created = name,
): RevisionCandidate => ({
  name,
  createdTime: created,
  healthState: health,
  provisioningState: health === "Healthy" ? "Provisioned" : "Failed",
  image: digest ? `reg.example/app@${digest}` : "reg.example/app:latest",
});

describe("the rollback rule", () => {
  // Newest first, as the API passes them.
  const revisions = [
    rev("app--c", d("c")),
    rev("app--b", d("b"), "Unhealthy"),
    rev("app--a", d("a")),
    rev("app--0", undefined),
  ];

  it("picks the newest healthy revision with another digest than the current one", () => {
    const choice = chooseRollback(revisions, `reg.example/app@${d("c")}`);
    assert.deepEqual(choice, {
      ok: true,
      revision: "app--a",
      image: `reg.example/app@${d("a")}`,
      digest: d("a"),
      repository: "app",
    });
  });

  it("refuses when no other healthy digest-pinned revision exists", () => {
    const choice = chooseRollback(
      [rev("app--c", d("c")), rev("app--0", undefined)],
      `reg.example/app@${d("c")}`,
    );
    assert.equal(choice.ok, false);
    assert.equal(!choice.ok && choice.error.code, "NothingToRollBackTo");
  });

  it("refuses an unhealthy, unknown, tag-only or current revision named with --to", () => {
    const current = `reg.example/app@${d("c")}`;
    const code = (revision: string) => {
      const choice = chooseRollback(revisions, current, { revision });
      return choice.ok ? "ok" : choice.error.code;
    };
    assert.equal(code("app--b"), "TargetUnhealthy");
    assert.equal(code("app--z"), "RevisionNotFound");
    assert.equal(code("app--0"), "NotDigestPinned");
    assert.equal(code("app--c"), "AlreadyRunning");
    assert.equal(code("APP--A"), "ok");
  });

  it("finds a build's digest among the revisions, healthy only", () => {
    const current = `reg.example/app@${d("c")}`;
    assert.equal(chooseRollback(revisions, current, { digest: d("a") }).ok, true);
    const unhealthy = chooseRollback(revisions, current, { digest: d("b") });
    assert.equal(!unhealthy.ok && unhealthy.error.code, "TargetUnhealthy");
    const never = chooseRollback(revisions, current, { digest: d("f") });
    assert.equal(!never.ok && never.error.code, "NotDeployedHere");
  });
});

describe("the approval rule", () => {
  it("lets a listed user decide by name or object id, case-insensitively", () => {
    assert.equal(mayDecide(["Alice@Example.com"], { name: "alice@example.com" }).ok, true);
    assert.equal(mayDecide(["oid-bob"], { name: "bob", id: "OID-BOB" }).ok, true);
  });

  it("refuses anyone else and names who may", () => {
    const answer = mayDecide(["alice@example.com"], { name: "mallory" });
    assert.equal(answer.ok, false);
    assert.match(!answer.ok ? (answer.error.hint ?? "") : "", /Approvers: alice@example\.com/);
  });
});

describe("promotion ids and requests", () => {
  it("makes ids the id schema accepts, p- for promotions and r- for rollbacks", () => {
    const now = new Date(Date.UTC(2026, 2, 14, 9, 26, 53));
    const id = createDeployId("promote", now, Buffer.from([1, 2, 3, 4]));
    assert.equal(id, "p-20260314092653-01020304");
    assert.equal(deployIdSchema.safeParse(id).success, true);
    assert.match(createDeployId("rollback", now), /^r-20260314092653-[0-9a-f]{8}$/);
    assert.equal(deployIdSchema.safeParse("20260314092653-3f9a0c1d2e").success, false);
  });

  it("refuses a promotion to the same environment and unknown fields", () => {
    assert.equal(promoteRequestSchema.safeParse({ from: "a", to: "a" }).success, false);
    assert.equal(promoteRequestSchema.safeParse({ from: "a", to: "b", force: true }).success, false);
    assert.equal(promoteRequestSchema.safeParse({ from: "a", to: "b" }).success, true);
  });
});
