/**
 * `fast-build --help` answers from the usage text alone: it must not load the storage SDK, the
 * schemas (zod) or the archiver, which cost several times a bare `node` to load. The CLI runs in a
 * child process with a module loader hook that records every module it loads; a control run of
 * the `dev` command's module shows that the recorder sees those packages when they do load.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { Writable } from "node:stream";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, it } from "node:test";
import { parseCommand } from "../../src/cli/args.js";
import { main } from "../../src/cli/main.js";
import { isHelpRequest, USAGE } from "../../src/cli/usage.js";

const REPO = join(import.meta.dirname, "..", "..");

/** Loaded for `--help`, any of these is a regression. */
const HEAVY = [
  /\/node_modules\/@azure\//,
  /\/node_modules\/zod\//,
  /\/node_modules\/tar\//,
  /\/node_modules\/ignore\//,
  /\/src\/cli\/(archive|dev|builds|apiClient|follow|run)\.ts$/,
];

let scratch: string;
let register: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "fb-help-"));
  const hooks = join(scratch, "hooks.mjs");
  // Runs on the loader's thread: every module's URL, as it loads, to the file it was given.
  await writeFile(
    hooks,
    `import { appendFileSync } from "node:fs";
let file;
export function initialize(data) { file = data.file; }
export async function load(url, context, next) { appendFileSync(file, url + "\\n"); return next(url, context); }
`,
  );
  register = join(scratch, "register.mjs");
  await writeFile(
    register,
    `import { register } from "node:module";
register(${JSON.stringify(pathToFileURL(hooks).href)}, { data: { file: process.env.FB_LOADED_FILE } });
`,
  );
});
after(() => rm(scratch, { recursive: true, force: true }));

let runs = 0;

/** Runs node (under tsx, with the recorder) and returns its output and the modules it loaded. */
async function loadedBy(
  args: string[],
): Promise<{ status: number | null; stdout: string; loaded: string[] }> {
  const file = join(scratch, `loaded${runs++}.txt`);
  await writeFile(file, "");
  const child = spawnSync(process.execPath, ["--import", "tsx", "--import", register, ...args], {
    cwd: REPO,
    encoding: "utf8",
    env: { ...process.env, FB_LOADED_FILE: file },
  });
  assert.equal(child.stderr.replace(/.*ExperimentalWarning.*\n|.*--trace-warnings.*\n/g, ""), "");
  return { status: child.status, stdout: child.stdout, loaded: (await readFile(file, "utf8")).split("\n") };
}

describe("fast-build --help", () => {
  it("prints the usage without loading the storage SDK, the schemas or the archiver", async () => {
    for (const flag of ["--help", "-h", "help"]) {
      const { status, stdout, loaded } = await loadedBy(["src/cli/main.ts", flag]);
      assert.equal(status, 0);
      assert.equal(stdout, `${USAGE}\n`);
      // The recorder saw the entry: an empty list would prove nothing.
      assert.ok(
        loaded.some((url) => url.endsWith("/src/cli/main.ts")),
        loaded.join("\n"),
      );
      assert.ok(
        loaded.some((url) => url.endsWith("/src/cli/usage.ts")),
        loaded.join("\n"),
      );
      const heavy = loaded.filter((url) => HEAVY.some((pattern) => pattern.test(url)));
      assert.deepEqual(heavy, [], `${flag} loaded what only the commands need`);
    }
  });

  it("control: the recorder sees the storage SDK, zod and the archiver when the dev command loads", async () => {
    const { status, loaded } = await loadedBy([
      "--input-type=module",
      "-e",
      'await import("./src/cli/dev.ts");',
    ]);
    assert.equal(status, 0);
    for (const pattern of [
      /\/node_modules\/@azure\/storage-blob\//,
      /\/node_modules\/zod\//,
      /\/src\/cli\/archive\.ts$/,
    ]) {
      assert.ok(
        loaded.some((url) => pattern.test(url)),
        `${pattern} not seen`,
      );
    }
  });

  it("is asked for exactly when the full parse says help, so `--bogus --help` is still refused", async () => {
    const cases = [
      ["--help"],
      ["-h"],
      ["help"],
      ["status", "--help"],
      ["dev", "--no-deploy", "-h"],
      ["logs", "x", "--help"],
      ["--bogus", "--help"],
      ["--help=1"],
      ["dev"],
      ["status", "20260314092653-3f9a0c1d2e"],
      ["helpme"],
      [],
      ["--", "--help"],
    ];
    for (const argv of cases) {
      let help: boolean;
      try {
        help = parseCommand(argv).command === "help";
      } catch {
        help = false;
      }
      assert.equal(isHelpRequest(argv), help, argv.join(" "));
    }
    let stderr = "";
    const io = {
      stdout: new Writable({ write: (_chunk, _encoding, done) => done() }),
      stderr: new Writable({
        write: (chunk: Buffer, _encoding, done) => {
          stderr += chunk.toString();
          done();
        },
      }),
      env: {},
    };
    assert.equal(await main(["--bogus", "--help"], io), 2);
    assert.match(stderr, /Unknown option '--bogus'/);
  });
});
