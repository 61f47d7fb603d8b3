import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { deployReference, isDigestReference } from "../../src/core/imageReference.js";

describe("deploy reference", () => {
  const digest = `sha256:${"d".repeat(64)}`;

  it("pins the repository to the reported digest, dropping the tag", () => {
    assert.equal(deployReference("reg.azurecr.io/team/app:b-1", digest), `reg.azurecr.io/team/app@${digest}`);
  });

  it("keeps a registry's port, and replaces a digest already in the reference", () => {
    assert.equal(
      deployReference("127.0.0.1:5000/hello/app:src-1", digest),
      `127.0.0.1:5000/hello/app@${digest}`,
    );
    assert.equal(deployReference("127.0.0.1:5000/hello/app", digest), `127.0.0.1:5000/hello/app@${digest}`);
    assert.equal(
      deployReference(`reg.azurecr.io/app:b-1@sha256:${"e".repeat(64)}`, digest),
      `reg.azurecr.io/app@${digest}`,
    );
  });

  it("falls back to the reference as given without a well-formed digest", () => {
    assert.equal(deployReference("reg.azurecr.io/app:b-1", undefined), "reg.azurecr.io/app:b-1");
    assert.equal(deployReference("reg.azurecr.io/app:b-1", "sha256:abc"), "reg.azurecr.io/app:b-1");
    assert.equal(deployReference("reg.azurecr.io/app:b-1", "latest"), "reg.azurecr.io/app:b-1");
  });

  it("tells a digest-pinned reference (fixed bytes) from a tag (which can move)", () => {
    assert.equal(isDigestReference(`reg.azurecr.io/app@${digest}`), true);
    assert.equal(isDigestReference("reg.azurecr.io/app:b-1"), false);
    assert.equal(isDigestReference("reg.azurecr.io/app@sha256:abc"), false);
    assert.equal(isDigestReference(`@${digest}`), false);
  });
});
