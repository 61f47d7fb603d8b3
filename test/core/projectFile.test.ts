/**
 * fast-build.toml's one schema (src/core/projectFile.ts): good files read as their settings, and
 * every bad file is refused with a message that names its line and the fix.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidInputError } from "../../src/core/errors.js";
import {
  formatProjectFile,
  lineOf,
  parseProjectFile,
  projectSettingsOf,
  type ProjectFile,
} from "../../src/core/projectFile.js";
import { projectSettingsSchema } from "../../src/core/projectSettings.js";

const GOOD: Array<{ name: string; text: string; file: ProjectFile }> = [
  {
    name: "an empty file: every default",
    text: "",
    file: { build: { features: [], profile: "release" }, container: {}, docker: { baseKeyFiles: [] } },
  },
  {
    name: "a Rust project",
    text: '[build]\nbinary = "hello"\nfeatures = ["metrics", "serde/derive"]\nprofile = "dist"\ntarget = "x86_64-unknown-linux-musl"\n\n[container]\nport = 8080\n',
    file: {
      build: {
        binary: "hello",
        features: ["metrics", "serde/derive"],
        profile: "dist",
        target: "x86_64-unknown-linux-musl",
      },
      container: { port: 8080 },
      docker: { baseKeyFiles: [] },
    },
  },
  {
    name: "a Node project with its own Dockerfiles",
    text: '[container]\nport = 3000\n[docker]\nbase = "docker/Dockerfile.base"\napp = "docker/Dockerfile.app"\nbase-key-files = ["package.json", "package-lock.json"]\n',
    file: {
      build: { features: [], profile: "release" },
      container: { port: 3000 },
      docker: {
        base: "docker/Dockerfile.base",
        app: "docker/Dockerfile.app",
        baseKeyFiles: ["package.json", "package-lock.json"],
      },
    },
  },
  {
    name: "dotted keys and comments",
    text: '# a comment\nbuild.binary = "x" # the binary\ncontainer.port = 1\n',
    file: {
      build: { binary: "x", features: [], profile: "release" },
      container: { port: 1 },
      docker: { baseKeyFiles: [] },
    },
  },
];

/** Each bad file: the line the message names and words of the fix it gives. */
const BAD: Array<{ name: string; text: string; line: number | undefined; key: string; fix: RegExp }> = [
  {
    name: "a syntax error",
    text: '[build]\nbinary = "x"\nfeatures = [\n',
    line: 4,
    key: "(syntax)",
    fix: /key = value/,
  },
  { name: "an unclosed header", text: "[build\n", line: 1, key: "(syntax)", fix: /key = value/ },
  {
    name: "a misspelt key",
    text: '[build]\nprofile = "release"\nbinray = "x"\n',
    line: 3,
    key: "build.binray",
    fix: /did you mean binary\?/,
  },
  {
    name: "snake case for kebab",
    text: '[docker]\nbase_key_files = ["a"]\n',
    line: 2,
    key: "docker.base_key_files",
    fix: /did you mean base-key-files\?/,
  },
  {
    name: "a misspelt table",
    text: "[dockr]\nbase = 1\n",
    line: 1,
    key: "dockr",
    fix: /did you mean docker\?/,
  },
  {
    name: "an unknown key, nothing like it",
    text: "[container]\nreplicas = 3\n",
    line: 2,
    key: "container.replicas",
    fix: /remove it \(keys of \[container\]: port\)/,
  },
  {
    name: "a key outside its table",
    text: 'binary = "x"\n',
    line: 1,
    key: "binary",
    fix: /put binary under \[build\]/,
  },
  {
    name: "a bad binary name",
    text: '[build]\nbinary = "my app"\n',
    line: 2,
    key: "build.binary",
    fix: /binary = "hello"/,
  },
  {
    name: "a binary that is not a string",
    text: "[build]\nbinary = 3\n",
    line: 2,
    key: "build.binary",
    fix: /binary = "hello"/,
  },
  {
    name: "a bad feature",
    text: '[build]\nfeatures = ["ok", "not ok"]\n',
    line: 2,
    key: "build.features.1",
    fix: /features = \["metrics"\]/,
  },
  {
    name: "features not a list",
    text: '[build]\nfeatures = "a,b"\n',
    line: 2,
    key: "build.features",
    fix: /features = \["metrics"\]/,
  },
  {
    name: "a feature twice",
    text: '[build]\nfeatures = ["a", "a"]\n',
    line: 2,
    key: "build.features",
    fix: /features = /,
  },
  {
    name: "a bad profile",
    text: '[build]\nprofile = "re lease"\n',
    line: 2,
    key: "build.profile",
    fix: /profile = "release"/,
  },
  {
    name: "a bad target",
    text: '[build]\ntarget = "x86 64"\n',
    line: 2,
    key: "build.target",
    fix: /target triple/,
  },
  { name: "port zero", text: "[container]\nport = 0\n", line: 2, key: "container.port", fix: /1-65535/ },
  {
    name: "port too high",
    text: "[container]\n\nport = 65536\n",
    line: 3,
    key: "container.port",
    fix: /1-65535/,
  },
  {
    name: "port as a string",
    text: '[container]\nport = "8080"\n',
    line: 2,
    key: "container.port",
    fix: /port = 8080/,
  },
  {
    name: "port not whole",
    text: "[container]\nport = 80.5\n",
    line: 2,
    key: "container.port",
    fix: /1-65535/,
  },
  {
    name: "base without app",
    text: '[docker]\nbase = "Dockerfile.base"\n',
    line: 1,
    key: "docker",
    fix: /add the missing one/,
  },
  {
    name: "a path leaving the tree",
    text: '[docker]\nbase = "../Dockerfile.base"\napp = "Dockerfile.app"\n',
    line: 2,
    key: "docker.base",
    fix: /path from the project root/,
  },
  {
    name: "an absolute path",
    text: '[docker]\nbase = "Dockerfile.base"\napp = "/etc/Dockerfile.app"\n',
    line: 3,
    key: "docker.app",
    fix: /path from the project root/,
  },
  {
    name: "a key file under .fastbuild",
    text: '[docker]\nbase-key-files = [".fastbuild/recipe/x"]\n',
    line: 2,
    key: "docker.base-key-files.0",
    fix: /list paths/,
  },
  {
    name: "a key file twice",
    text: '[docker]\nbase-key-files = ["a", "a"]\n',
    line: 2,
    key: "docker.base-key-files",
    fix: /list paths/,
  },
  {
    name: "a table that is a value",
    text: "build = 3\n",
    line: 1,
    key: "build",
    fix: /write \[build\] as a table/,
  },
];

function refusal(text: string): InvalidInputError {
  try {
    parseProjectFile(text);
  } catch (error) {
    assert.ok(error instanceof InvalidInputError, String(error));
    return error;
  }
  assert.fail("the file was accepted");
}

describe("fast-build.toml", () => {
  for (const good of GOOD) {
    it(`reads ${good.name}`, () => {
      assert.deepEqual(parseProjectFile(good.text), good.file);
    });
  }

  for (const bad of BAD) {
    it(`refuses ${bad.name}, naming the line and the fix`, () => {
      const error = refusal(bad.text);
      assert.equal(error.code, "InvalidProjectFile");
      const where = `fast-build.toml${bad.line !== undefined ? `:${bad.line}` : ""}: ${bad.key}: `;
      const line = error.message.split("\n").find((l) => l.trim().startsWith(where));
      assert.ok(line, `no line starting ${JSON.stringify(where)} in:\n${error.message}`);
      assert.match(line, /; fix: /);
      assert.match(line.slice(line.indexOf("; fix: ")), bad.fix);
      assert.match(error.hint ?? "", /fast-build init --force/);
    });
  }

  it("lists every problem of a file at once", () => {
    const error = refusal('[build]\nbinary = "a b"\n[container]\nport = 0\n[docker]\nbase = "x"\n');
    assert.deepEqual(
      error.message
        .split("\n")
        .slice(1)
        .map((l) => /^ {2}fast-build\.toml:(\d+):/.exec(l)?.[1]),
      ["2", "4", "5"],
    );
  });

  it("finds a key's line under its table, not a same-named key of another table", () => {
    const text = '[docker]\nbase = "a"\napp = "b"\n[build]\nbinary = "x"\n';
    assert.equal(lineOf(text, ["docker", "app"]), 3);
    assert.equal(lineOf(text, ["build", "binary"]), 5);
    assert.equal(lineOf(text, ["build", "target"]), 4);
    assert.equal(lineOf(text, ["container", "port"]), undefined);
  });

  it("writes files that read back as the same settings (what fast-build init writes)", () => {
    for (const good of GOOD) {
      assert.deepEqual(parseProjectFile(formatProjectFile(good.file, { detected: ["x"] })), good.file);
    }
  });

  it("sends what the file sets, in the shape the API checks", () => {
    for (const good of GOOD) {
      const settings = projectSettingsOf(good.file);
      assert.deepEqual(projectSettingsSchema.parse(settings), settings);
    }
    assert.deepEqual(projectSettingsOf(GOOD[2]!.file), {
      profile: "release",
      port: 3000,
      dockerfiles: { base: "docker/Dockerfile.base", app: "docker/Dockerfile.app" },
    });
  });
});
