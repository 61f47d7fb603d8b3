import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { revisionSuffix } from "../../src/core/buildInput.js";

describe("build input", () => {
  it("derives a valid Container Apps revision suffix from the build id", () => {
    assert.match(revisionSuffix("build-0123456789abcdef0123"), /^[a-z][a-z0-9-]{0,24}$/);
  });
});
