/**
 * Static checks of dockerfiles/: shellcheck on the scripts, a Dockerfile linter (hadolint is not
 * packaged for Debian; dockerfile-utils is the validator behind the VS Code Docker extension),
 * and the structure the layered build depends on.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { LOCAL_DOCKERFILES } from "@fast-build/local-cloud/builder";
import { validate } from "dockerfile-utils";
import { REPO_ROOT } from "./helpers.js";

const exec = promisify(execFile);
const DIRS = [join(REPO_ROOT, "dockerfiles"), LOCAL_DOCKERFILES];

async function filesIn(dir: string, match: (name: string) => boolean): Promise<string[]> {
  return (await readdir(dir)).filter(match).map((name) => join(dir, name));
}

const dockerfiles = async () =>
  (await Promise.all(DIRS.map((d) => filesIn(d, (n) => n.startsWith("Dockerfile"))))).flat();

function lint(text: string): string[] {
  return validate(text).map(
    (d) => `line ${d.range.start.line + 1}: ${typeof d.message === "string" ? d.message : d.message.value}`,
  );
}

describe("dockerfiles lint", () => {
  it("shellcheck finds nothing in the scripts (the builder's, the setup scripts and CI)", async () => {
    const scripts = [
      ...(await filesIn(join(REPO_ROOT, "dockerfiles"), (n) => n.endsWith(".sh"))),
      ...(await filesIn(join(REPO_ROOT, "scripts"), (n) => n.endsWith(".sh"))),
      join(REPO_ROOT, ".ci", "run"),
      // The local builder's docker (docker's command line on buildah).
      join(REPO_ROOT, "packages", "local-cloud", "src", "builder", "docker-on-buildah.sh"),
    ];
    assert.ok(scripts.length > 3);
    const { stdout } = await exec("shellcheck", ["--severity=style", ...scripts]).catch(
      (error: { stdout?: string; message?: string }) => ({
        stdout: error.stdout ?? error.message ?? "failed",
      }),
    );
    assert.equal(stdout, "");
  });

  it("the Python helper compiles", async () => {
    await exec("python3", ["-m", "py_compile", join(REPO_ROOT, "dockerfiles", "safe_extract.py")], {
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1", PYTHONPYCACHEPREFIX: "/tmp/fb-pycache" },
    });
  });

  it("the linter flags a broken Dockerfile (so a clean result means something)", () => {
    assert.ok(lint("FROM\nRUNN echo\nEXPOSE abc\n").length >= 2);
  });

  it("every Dockerfile lints clean", async () => {
    const files = await dockerfiles();
    assert.ok(files.length >= 6);
    for (const file of files) assert.deepEqual(lint(await readFile(file, "utf8")), [], file);
  });

  it("the real Dockerfiles are parameterised by build args and keep the layered shape", async () => {
    const read = (name: string) => readFile(join(REPO_ROOT, "dockerfiles", name), "utf8");
    const [base, app, acr, fast] = await Promise.all(
      ["Dockerfile.base", "Dockerfile.app", "Dockerfile.acr", "Dockerfile.fast"].map(read),
    );
    assert.match(base!, /^ARG RUST_IMAGE=docker\.io\/library\/rust:1\.91\.1/m);
    assert.match(base!, /clang lld/);
    assert.match(app!, /^FROM \$\{BASE_IMAGE\} AS build$/m);
    for (const cache of ["cargo-registry", "cargo-git", "target"]) {
      assert.match(app!, new RegExp(`--mount=type=cache,id=fastbuild-${cache},`));
    }
    // The binary leaves the cache mount in the same RUN that builds it.
    const run = /RUN --mount[\s\S]*?\n\n/.exec(app!)?.[0] ?? "";
    assert.match(run, /cargo build[\s\S]*cp "\$dir\/.*\/out\/app/);
    for (const text of [app!, acr!, fast!]) {
      assert.match(text, /^ARG RUNTIME_IMAGE=/m);
      assert.match(text, /^ENTRYPOINT \["\/usr\/local\/bin\/app"\]$/m);
    }
    for (const text of [app!, acr!]) assert.match(text, /^ARG BINARY_NAME$/m);
  });

  it("the build script never evaluates its inputs as code", async () => {
    const script = await readFile(join(REPO_ROOT, "dockerfiles", "build.sh"), "utf8");
    assert.doesNotMatch(script, /^\s*(eval|source|\.)\s|\beval\s|\bbash -c|\bsh -c/m);
    assert.match(script, /^set -euo pipefail$/m);
  });
});
