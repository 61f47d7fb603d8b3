/**
 * `fast-build dev` against the real API on the local host (Azurite, the ARM emulator, the durable
 * engine): the manifest, then only the change, only the contents the store lacks; the whole
 * manifest when the store lost the base; one archive for a function app without manifests.
 * Requests pass through a recording forwarder, so the test sees what the CLI sent.
 */
import { cancelRunningBuilds } from "../functions/support.js";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { z } from "zod";
import { main } from "../../src/cli/main.js";
import { ManifestCache } from "../../src/cli/manifestCache.js";
import { Capture, KEY, useCliHost } from "./cliHost.js";
import { startBuildRequestSchema, type StartBuildRequest } from "../../src/core/api.js";
import { InvalidInputError } from "../../src/core/errors.js";
import { contentBlobNames, type SourcePlan } from "../../src/core/sourceManifest.js";
import { cancelBuild } from "../../src/functions/cancelBuild.js";
import { parseWith } from "../../src/functions/http.js";

interface Sent {
  method: string;
  path: string;
  body: Buffer;
}

/** A forwarder to the local host that records each request; `answer` may reply in its place. */
async function recordingForwarder(
  target: string,
  answer: (sent: Sent) => { status: number; body: unknown } | undefined,
): Promise<{ url: string; sent: Sent[]; server: Server }> {
  const sent: Sent[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const one = { method: req.method ?? "", path: req.url ?? "", body: Buffer.concat(chunks) };
      sent.push(one);
      const own = answer(one);
      if (own) {
        res.writeHead(own.status, { "content-type": "application/json" }).end(JSON.stringify(own.body));
        return;
      }
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter(([name]) => !["host", "content-length"].includes(name)),
      ) as Record<string, string>;
      fetch(`${target}${one.path}`, {
        method: one.method,
        headers,
        ...(one.body.length > 0 ? { body: one.body } : {}),
      }).then(
        async (upstream) => {
          res.writeHead(upstream.status, Object.fromEntries(upstream.headers));
          res.end(Buffer.from(await upstream.arrayBuffer()));
        },
        () => res.writeHead(502).end(),
      );
    });
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, sent, server };
}

describe("fast-build dev against the real API", () => {
  const local = useCliHost();

  async function dev(root: string, cache: string, apiUrl: string, ...flags: string[]) {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await main(["dev", "--env", "dev", "--dir", root, "--no-follow", "--json", ...flags], {
      stdout,
      stderr,
      env: { FASTBUILD_API_URL: apiUrl, FASTBUILD_API_KEY: KEY, FASTBUILD_CACHE_DIR: cache },
    });
    assert.equal(code, 0, stderr.text);
    const buildId = /^build (\S+) started/m.exec(stderr.text)?.[1] ?? "";
    return { stderr: stderr.text, buildId };
  }

  const starts = (sent: Sent[]) =>
    sent
      .filter((s) => s.method === "POST" && s.path === "/api/builds")
      .map((s) => JSON.parse(s.body.toString()) as StartBuildRequest);
  const planOf = async (buildId: string) =>
    (await local.cloud.deps.contents.readJson(contentBlobNames.plan(buildId)))?.value as
      SourcePlan | undefined;

  it("sends the manifest, then only its change and the changed content; nothing for an unchanged tree", async () => {
    const { root, cache } = await local.project();
    const api = await recordingForwarder(local.host.url, () => undefined);
    try {
      const first = await dev(root, cache, api.url);
      const [request] = starts(api.sent);
      assert.ok(request?.manifest, "the first build sends the whole manifest");
      assert.equal(request.manifestDelta, undefined);
      const files = request.manifest.entries.length;
      assert.match(first.stderr, new RegExp(`^hashed ${files} files`, "m"));
      assert.match(first.stderr, /^uploaded \d+ of \d+ contents \(.+ in 1 pack\)$/m);
      assert.ok(await planOf(first.buildId), "the API wrote the builder's plan");
      await cancelRunningBuilds(local.cloud, cancelBuild);

      const main = join(root, "src", "main.rs");
      await writeFile(main, (await readFile(main, "utf8")).replace("hello from fast-build", "hello again"));
      const second = await dev(root, cache, api.url);
      const delta = starts(api.sent)[1]?.manifestDelta;
      assert.ok(delta, "the second build sends only the change");
      assert.equal(delta.base, request.sourceDigest);
      assert.deepEqual(
        delta.changed.map((e) => e.path),
        ["src/main.rs"],
      );
      assert.deepEqual(delta.removed, []);
      assert.match(second.stderr, /^uploaded 1 of \d+ contents/m);
      const plan = await planOf(second.buildId);
      assert.match(plan?.manifest ?? "", /"src\/main.rs"/);
      await cancelRunningBuilds(local.cloud, cancelBuild);

      const third = await dev(root, cache, api.url);
      assert.deepEqual(starts(api.sent)[2]?.manifestDelta?.changed, []);
      assert.match(third.stderr, /^nothing to upload: the store has all \d+ contents$/m);
      assert.equal(
        api.sent.filter((s) => s.method === "PUT").length,
        0,
        "packs go to storage directly, never through the API",
      );
    } finally {
      api.server.close();
    }
  });

  it("sends the whole manifest when the API does not have the base (an emptied store), and says so", async () => {
    const { root, cache } = await local.project();
    const api = await recordingForwarder(local.host.url, () => undefined);
    try {
      await dev(root, cache, api.url);
      await cancelRunningBuilds(local.cloud, cancelBuild);
      // The CLI's last manifest is one the API never kept (its store emptied, say): the function
      // app holds recent manifests in memory too, so removing the blob alone would not show it.
      const sent = starts(api.sent)[0]!.manifest!;
      const [first, ...rest] = sent.entries;
      assert.ok(first?.type === "file");
      const unknown = { ...sent, entries: [{ ...first, sha256: "0".repeat(64) }, ...rest] };
      await new ManifestCache(cache, api.url, "dev").remember(unknown);

      await writeFile(join(root, "src", "salt.rs"), `// again ${root}\n`);
      const again = await dev(root, cache, api.url);
      const [, delta, whole] = starts(api.sent);
      assert.ok(delta?.manifestDelta && !delta.manifest);
      assert.ok(whole?.manifest && !whole.manifestDelta);
      assert.match(again.stderr, /the store no longer has this tree's last manifest; sending it whole/);
      assert.match(again.stderr, /^uploaded 1 of \d+ contents/m);
    } finally {
      api.server.close();
    }
  });

  it("says to deploy the current function app when an older one refuses the project file's settings", async () => {
    // The API before the project file: its strict request schema names the unknown field.
    const olderSchema = z.object(startBuildRequestSchema.shape).omit({ project: true }).strict();
    const older = (sent: Sent) => {
      if (sent.method !== "POST" || sent.path !== "/api/builds") return undefined;
      try {
        parseWith(olderSchema, JSON.parse(sent.body.toString()), "build request");
        return undefined;
      } catch (error) {
        assert.ok(error instanceof InvalidInputError);
        return {
          status: 400,
          body: { error: { code: error.code, message: error.message, hint: error.hint } },
        };
      }
    };
    const { root, cache } = await local.project();
    const api = await recordingForwarder(local.host.url, older);
    try {
      const stdout = new Capture();
      const stderr = new Capture();
      const code = await main(["dev", "--env", "dev", "--dir", root, "--no-follow"], {
        stdout,
        stderr,
        env: { FASTBUILD_API_URL: api.url, FASTBUILD_API_KEY: KEY, FASTBUILD_CACHE_DIR: cache },
      });
      assert.equal(code, 2, stderr.text);
      assert.match(
        stderr.text,
        /error: the function app does not know fast-build\.toml's settings \(an older version\)/,
      );
      assert.match(
        stderr.text,
        /hint: Deploy the current fast-build function app.*or remove fast-build\.toml/,
      );
      assert.equal(starts(api.sent).length, 1, "nothing else was started");
    } finally {
      api.server.close();
    }
  });

  it("sends one archive to a function app that takes no manifest (an older version), and with --archive", async () => {
    // What the API before manifests answered: its strict request schema names the unknown field.
    const olderSchema = z
      .object(startBuildRequestSchema.shape)
      .omit({ manifest: true, manifestDelta: true })
      .strict();
    const older = (sent: Sent) => {
      if (sent.method !== "POST" || sent.path !== "/api/builds") return undefined;
      try {
        parseWith(olderSchema, JSON.parse(sent.body.toString()), "build request");
        return undefined;
      } catch (error) {
        assert.ok(error instanceof InvalidInputError);
        return {
          status: 400,
          body: { error: { code: error.code, message: error.message, hint: error.hint } },
        };
      }
    };
    const { root, cache } = await local.project();
    const api = await recordingForwarder(local.host.url, older);
    try {
      const run = await dev(root, cache, api.url);
      assert.match(
        run.stderr,
        /the function app takes no manifest \(an older version\); sending an archive instead/,
      );
      assert.match(run.stderr, /^archived \d+ files/m);
      const [refused, archived] = starts(api.sent);
      assert.ok(refused?.manifest);
      assert.ok(archived && !archived.manifest && archived.sourceBytes);
    } finally {
      api.server.close();
    }

    const plain = await recordingForwarder(local.host.url, () => undefined);
    try {
      const run = await dev(root, cache, plain.url, "--archive");
      assert.match(run.stderr, /^archived \d+ files/m);
      assert.doesNotMatch(run.stderr, /hashed/);
      assert.equal(starts(plain.sent)[0]?.manifest, undefined);
    } finally {
      plain.server.close();
    }
  });
});
