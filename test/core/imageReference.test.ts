import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkReportedImage, parseImageReference } from "../../src/core/imageReference.js";

const digest = `sha256:${"d".repeat(64)}`;
const expected = {
  registry: "reg.azurecr.io",
  repository: "team/app",
  tags: ["b-1", `src-${"e".repeat(64)}`],
};

describe("image references", () => {
  it("splits registry, repository, tag and digest (a registry port is not a tag)", () => {
    assert.deepEqual(parseImageReference(`127.0.0.1:5000/hello/app:src-1@${digest}`), {
      registry: "127.0.0.1:5000",
      repository: "hello/app",
      tag: "src-1",
      digest,
    });
    assert.deepEqual(parseImageReference("127.0.0.1:5000/hello/app"), {
      registry: "127.0.0.1:5000",
      repository: "hello/app",
      tag: undefined,
      digest: undefined,
    });
  });

  it("is not a reference without a registry, with upper case or a control character", () => {
    for (const image of [
      "app:1",
      "Reg.io/app:1",
      "reg.io/App:1",
      "reg.io/app:1\nx",
      "reg.io/app@sha256:abc",
      "",
    ]) {
      assert.equal(parseImageReference(image), undefined, image);
    }
  });

  it("accepts the environment's repository with a tag this build pushes", () => {
    assert.deepEqual(checkReportedImage(expected, "reg.azurecr.io/team/app:b-1", digest), {
      ok: true,
      tag: "b-1",
      digest,
    });
    assert.deepEqual(checkReportedImage(expected, "reg.azurecr.io/team/app:b-1", undefined), {
      ok: true,
      tag: "b-1",
      digest: undefined,
    });
  });

  const refused: [string, string, string | undefined, RegExp][] = [
    [
      "another registry",
      `docker.io/attacker/pwn@${digest}`,
      digest,
      /registry "docker\.io", not the environment's/,
    ],
    ["another repository", "reg.azurecr.io/team/other:b-1", digest, /repository "team\/other"/],
    ["a tag this build does not push", "reg.azurecr.io/team/app:latest", digest, /tag "latest" is not one/],
    ["no tag", `reg.azurecr.io/team/app@${digest}`, digest, /tag \(none\)/],
    [
      "a malformed digest",
      "reg.azurecr.io/team/app:b-1",
      "sha256:abc",
      /digest "sha256:abc" is not a digest/,
    ],
    ["two digests", `reg.azurecr.io/team/app:b-1@sha256:${"f".repeat(64)}`, digest, /different digests/],
    ["a newline", "reg.azurecr.io/team/app:b-1\nbuild=x ok", digest, /not an image reference/],
  ];
  for (const [what, image, reported, reason] of refused) {
    it(`refuses ${what}`, () => {
      const check = checkReportedImage(expected, image, reported);
      assert.equal(check.ok, false);
      assert.match(check.ok ? "" : check.reason, reason);
      assert.doesNotMatch(check.ok ? "" : check.reason, /\n/);
    });
  }
});
