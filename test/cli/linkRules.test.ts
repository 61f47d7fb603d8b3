/**
 * The link rules on the developer's machine: every case of test/fixtures/link-rules.json that a
 * tree on disk can hold goes through `createArchive`, which must refuse exactly what
 * safe_extract.py refuses (the same code) before anything is uploaded, and whose accepted
 * archives the builder's extractor must accept too.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createArchive } from "../../src/cli/archive.js";
import { InvalidInputError } from "../../src/core/errors.js";
import { defaultExtractLimits } from "../../src/core/extractLimits.js";
import { LinkRuleError } from "../../src/core/linkRules.js";
import { run, SAFE_EXTRACT } from "../dockerfiles/helpers.js";
import { limitEnv } from "../dockerfiles/hostileArchives.js";
import { LINK_CASES, type LinkCase } from "../fixtures/linkRules.js";

let scratch: string;
let counter = 0;

async function tree(c: LinkCase): Promise<string> {
  const root = join(scratch, `tree${counter++}`);
  await mkdir(root);
  for (const entry of c.entries) {
    const path = join(root, entry.name);
    await mkdir(entry.type === "dir" ? path : dirname(path), { recursive: true });
    if (entry.type === "file") await writeFile(path, "x");
    if (entry.type === "symlink") await symlink(entry.linkname ?? "", path);
  }
  return root;
}

describe("the CLI applies the builder's link rules before uploading", () => {
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "fb-link-rules-"));
  });
  after(() => rm(scratch, { recursive: true, force: true }));

  for (const c of LINK_CASES.filter((c) => c.cli)) {
    if (c.refusal === undefined) {
      it(`archives ${c.name}, and the builder extracts it`, async () => {
        const root = await tree(c);
        const archive = await createArchive(root, { linkLimits: { ...defaultExtractLimits(), ...c.limits } });
        try {
          const result = await run(
            "python3",
            [SAFE_EXTRACT, archive.path, join(scratch, `out${counter++}`)],
            {
              ...limitEnv(c.limits),
            },
          );
          assert.equal(result.code, 0, result.output);
        } finally {
          await archive.dispose();
        }
      });
      continue;
    }
    it(`refuses ${c.name} (${c.refusal}) before any upload`, async () => {
      const root = await tree(c);
      const out = join(scratch, `upload${counter++}`);
      await mkdir(out);
      await assert.rejects(
        createArchive(root, { outputDir: out, linkLimits: { ...defaultExtractLimits(), ...c.limits } }),
        (error: unknown) => {
          assert.ok(error instanceof InvalidInputError, String(error));
          assert.ok(error.cause instanceof LinkRuleError);
          assert.equal(error.cause.refusal, c.refusal);
          assert.ok(error.hint);
          return true;
        },
      );
      assert.equal(existsSync(join(out, "source.tar.gz")), false);
    });
  }
});
