#!/usr/bin/env node
// Runs every *.test.ts under test/ and packages/*/test/ with Node's own test runner (TypeScript
// through tsx), then prints the time per area (test/<area>/, or <package>/<area>/) so a slow area
// is visible. Node 20's runner has no glob support, so the files are listed here.
// Usage: node scripts/run-tests.mjs [substring …]  — only files whose path contains a substring.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === "fixtures" ? [] : walk(path);
    return entry.name.endsWith(".test.ts") ? [path] : [];
  });
}

const roots = [
  "test",
  ...readdirSync("packages", { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => join("packages", entry.name, "test"))
    .filter((dir) => existsSync(dir)),
];
const filters = process.argv.slice(2);
const files = roots
  .flatMap(walk)
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error(
    `no test files match ${filters.join(", ") || "test/**/*.test.ts, packages/*/test/**/*.test.ts"}`,
  );
  process.exit(1);
}
const reporter = new URL("./test-areas-reporter.mjs", import.meta.url).href;
const result = spawnSync(
  process.execPath,
  [
    "--import",
    "tsx",
    "--test",
    "--test-concurrency=2",
    "--test-timeout=600000",
    "--test-reporter=spec",
    "--test-reporter-destination=stdout",
    `--test-reporter=${reporter}`,
    "--test-reporter-destination=stderr",
    ...files,
  ],
  { stdio: "inherit" },
);
process.exit(result.status ?? 1);
