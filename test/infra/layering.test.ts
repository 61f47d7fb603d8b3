/**
 * Production code cannot import the local cloud: the project's own ESLint configuration, run
 * through ESLint's Node API on code placed at a production path (src/functions/index.ts, the app's
 * entry) and, for contrast, at a test path. The type-aware parser only accepts files its tsconfig
 * knows, so the code is linted under an existing file's name; the file itself is not read.
 */
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { before, describe, it } from "node:test";
import { ESLint } from "eslint";

const ROOT = resolve(import.meta.dirname, "..", "..");
const PRODUCTION_FILE = "src/functions/index.ts";
const TEST_FILE = "test/functions/support.ts";

let eslint: ESLint;
before(() => {
  eslint = new ESLint({ cwd: ROOT });
});

/** The rules that fire on `code` when it sits at `filePath`. */
async function rulesFiredOn(code: string, filePath: string): Promise<(string | null)[]> {
  const [result] = await eslint.lintText(code, { filePath: resolve(ROOT, filePath) });
  const messages = result?.messages ?? [];
  assert.ok(
    messages.every((message) => message.ruleId !== null),
    `the file parsed: ${messages.map((m) => m.message).join("; ")}`,
  );
  return messages.map((message) => message.ruleId);
}

const importOf = (specifier: string) =>
  `import * as cloud from "${specifier}";\nexport const used = cloud;\n`;

describe("layering: production code cannot import the local cloud", () => {
  for (const specifier of [
    "@fast-build/local-cloud",
    "@fast-build/local-cloud/arm",
    "../../packages/local-cloud/src/azurite.js",
    "../../sim/simulation.js",
  ]) {
    it(`refuses ${specifier} in src/`, async () => {
      assert.ok((await rulesFiredOn(importOf(specifier), PRODUCTION_FILE)).includes("no-restricted-imports"));
    });
  }

  it("lets src/ import its own modules", async () => {
    assert.deepEqual(await rulesFiredOn(importOf("../core/errors.js"), PRODUCTION_FILE), []);
  });

  it("lets tests import the local cloud", async () => {
    assert.deepEqual(await rulesFiredOn(importOf("@fast-build/local-cloud/arm"), TEST_FILE), []);
  });
});
