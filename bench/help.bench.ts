/**
 * `fast-build --help` as installed: src/ transpiled to plain JS as `npm run build` emits it (no
 * tsx in the measured process), `node dist/cli/main.js --help` in a fresh process, against a bare
 * `node -e 0` (the floor: no CLI can start faster) and, when the git history is at hand, the entry
 * before the commands were loaded lazily (commit `7b9b454`, run against today's modules), all
 * alternating. Prints the medians and spread, the ratio to the floor and the absolute median beside
 * the goal (≤ 0.15 s).
 *
 * `npm run bench -- help`; `BENCH_ROUNDS=N` changes the number of rounds (default 21).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import ts from "typescript";
import { alternate, printGoal, printRatio } from "./alternate.js";

const GOAL_MS = 150;
/** The entry that loaded every command (and the storage SDK) before printing the help. */
const ENTRY_BEFORE = "7b9b454";

const root = join(import.meta.dirname, "..");
// Inside the project so `node_modules` resolves from the transpiled files; ignored by git and lint.
const out = join(root, "node_modules", ".cache", "fast-build-help");

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

function transpile(source: string, target: string): void {
  const js = ts.transpileModule(source, {
    compilerOptions: {
      module: ts.ModuleKind.ES2022,
      target: ts.ScriptTarget.ES2022,
      verbatimModuleSyntax: true,
    },
  }).outputText;
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, js);
}

rmSync(out, { recursive: true, force: true });
for (const file of walk(join(root, "src")).filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))) {
  transpile(readFileSync(file, "utf8"), join(out, relative(join(root, "src"), file)).replace(/\.ts$/, ".js"));
}
// The folder sits under node_modules, where Node does not look for the project's "type": "module".
writeFileSync(join(out, "package.json"), JSON.stringify({ type: "module" }));
const entry = join(out, "cli", "main.js");

let before: string | undefined;
try {
  const source = execFileSync("git", ["show", `${ENTRY_BEFORE}:src/cli/main.ts`], {
    cwd: root,
    encoding: "utf8",
  });
  before = join(out, "cli", "main-before.js");
  transpile(source, before);
} catch {
  console.log(`(commit ${ENTRY_BEFORE} is not in this checkout's history: no "before" baseline)`);
}

function run(args: string[]): void {
  const result = spawnSync(process.execPath, args, { encoding: "utf8", cwd: root });
  if (result.status !== 0)
    throw new Error(`node ${args.join(" ")} failed (${result.status}):\n${result.stderr}`);
}

const usage = spawnSync(process.execPath, [entry, "--help"], { encoding: "utf8" }).stdout;
if (!usage.startsWith("usage: fast-build")) throw new Error(`--help printed no usage:\n${usage}`);

console.log("fast-build --help, fresh process each (spawn → exit):");
const contestants = [
  { label: "baseline: node -e 0 (the floor)", run: () => run(["-e", "0"]) },
  { label: "candidate: fast-build --help", run: () => run([entry, "--help"]) },
];
if (before) {
  const path = before;
  contestants.push({ label: `before: the entry at ${ENTRY_BEFORE}`, run: () => run([path, "--help"]) });
}
const [floor, help, old] = await alternate(contestants, { rounds: 21 });
printRatio("--help / node -e 0", help!, floor!);
if (old) printRatio("--help / the entry at " + ENTRY_BEFORE, help!, old);
printGoal("fast-build --help", help!, { atMost: GOAL_MS, unit: "s" });
rmSync(out, { recursive: true, force: true });
