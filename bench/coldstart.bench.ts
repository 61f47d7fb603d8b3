/**
 * Cold load of the function app: a fresh `node` process importing the entry that registers every
 * function (src/functions/index.ts, transpiled to plain JS as deployed, no tsx in the measured
 * process), with our `@azure/functions-core` preloaded so registration really happens, as in the
 * Azure worker. Reports the median and spread of the wall time (spawn → exit) and peak RSS over
 * fresh processes, alternating with a bare `node` process (bench/alternate.ts), the ratio to it,
 * and the goal (≤ 300 ms, ≤ 120 MB).
 *
 * `npm run bench -- coldstart`; `COLDSTART_RUNS=N` changes the number of processes (default 15).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import ts from "typescript";
import { alternate, rounds, printGoal, printRatio, printSpread, spread } from "./alternate.js";

const GOAL_MS = 300;
const GOAL_MB = 120;
const RUNS = rounds(Math.max(10, Number(process.env.COLDSTART_RUNS ?? 15)));

const root = join(import.meta.dirname, "..");
// Inside the project so `node_modules` resolves from the transpiled files; ignored by git and lint.
const out = join(root, "node_modules", ".cache", "fast-build-coldstart");

/** The local host's core shim, which captures the registrations (the one local-cloud file used here). */
const CORE_SHIM = join(root, "packages", "local-cloud", "src", "host", "coreShim.ts");

/** Transpiles src/ and the core shim, as the build would emit them. */
function transpile(): { entry: string; preload: string } {
  rmSync(out, { recursive: true, force: true });
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.ES2022,
    target: ts.ScriptTarget.ES2022,
    verbatimModuleSyntax: true,
  };
  const files = [
    ...walk(join(root, "src")).filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts")),
    CORE_SHIM,
  ];
  for (const file of files) {
    const js = ts.transpileModule(readFileSync(file, "utf8"), {
      compilerOptions: options,
      fileName: file,
    }).outputText;
    const target = join(out, relative(root, file)).replace(/\.ts$/, ".js");
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, js);
  }
  // The folder sits under node_modules, where Node does not look for the project's "type": "module".
  writeFileSync(join(out, "package.json"), JSON.stringify({ type: "module" }));
  const preload = join(out, "preload.js");
  writeFileSync(
    preload,
    `import { installCoreShim } from "./packages/local-cloud/src/host/coreShim.js";\ninstallCoreShim();\n`,
  );
  return { entry: join(out, "src", "functions", "index.js"), preload };
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

interface Sample {
  wallMs: number;
  rssKb: number;
  importMs?: number;
  functions?: number;
}

/**
 * Peak RSS of the measured process itself: VmHWM belongs to the memory map made by exec. (Linux's
 * getrusage maxrss would also count the forked parent's pages, i.e. this bench.)
 */
const PEAK_RSS_KB = `(() => { try { return Number(/VmHWM:\\s+(\\d+)/.exec(require("node:fs").readFileSync("/proc/self/status", "utf8"))[1]); } catch { return process.resourceUsage().maxRSS; } })()`;

/** One fresh process; it prints its own peak RSS (and import time) as its last line. */
function run(args: string[]): Sample {
  const started = process.hrtime.bigint();
  // Settings the app would read are irrelevant to loading it: none are needed until a first call.
  const result = spawnSync(process.execPath, args, { encoding: "utf8", cwd: root });
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`measured process failed (${result.status}):\n${result.stderr}`);
  const last = result.stdout.trim().split("\n").pop() ?? "{}";
  const reported = JSON.parse(last) as Omit<Sample, "wallMs">;
  return { wallMs, ...reported };
}

const { entry, preload } = transpile();
const measure = [
  "--import",
  pathToFileURL(preload).href,
  "--input-type=module",
  "-e",
  [
    "const t0 = performance.now();",
    `await import(${JSON.stringify(pathToFileURL(entry).href)});`,
    "const importMs = performance.now() - t0;",
    `const { capturedFunctions } = await import(${JSON.stringify(pathToFileURL(join(out, "packages/local-cloud/src/host/coreShim.js")).href)});`,
    'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);',
    `console.log(JSON.stringify({ importMs, rssKb: ${PEAK_RSS_KB}, functions: capturedFunctions().length }));`,
  ].join("\n"),
];
const bare = ["-e", `console.log(JSON.stringify({ rssKb: ${PEAK_RSS_KB} }))`];

// Warm the OS file cache once for both, so the first sample does not measure the disk.
run(bare);
const first = run(measure);
if (!first.functions) throw new Error("the entry registered no functions: the core shim was not used");

const app: Sample[] = [];
const baseline: Sample[] = [];
console.log(
  `cold load of src/functions/index (${first.functions} functions registered), ${RUNS} fresh processes each`,
);
console.log("wall time (spawn → exit):");
// The warm-up above already ran both once.
const [wallBase, wall] = await alternate(
  [
    { label: "baseline: bare node", run: () => baseline.push(run(bare)) },
    { label: "candidate: node importing the function app", run: () => app.push(run(measure)) },
  ],
  { rounds: RUNS, warmUp: false },
);
printRatio("function app / bare node", wall!, wallBase!);
printGoal("wall time", wall!, { atMost: GOAL_MS, unit: "ms" });
printSpread("  of which importing the entry", spread(app.map((s) => s.importMs ?? 0)));
console.log("peak RSS:");
const rssBase = spread(baseline.map((s) => s.rssKb / 1024));
const rss = spread(app.map((s) => s.rssKb / 1024));
printSpread("baseline: bare node", rssBase, "MB");
printSpread("candidate: node importing the function app", rss, "MB");
printRatio("function app / bare node", rss, rssBase);
printGoal("peak RSS", rss, { atMost: GOAL_MB, unit: "MB" });
rmSync(out, { recursive: true, force: true });
