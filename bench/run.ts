/**
 * `npm run bench`: runs every bench/*.bench.ts in its own process, one after another, so a bench's
 * warm caches do not flatter the next. Each bench alternates its candidate with a baseline doing the
 * same job, round after round, and prints medians, spread and the ratio beside its goal: all through
 * bench/alternate.ts, the one definition of that. (That file and soak.ts are not benches.)
 * `npm run bench -- <substring>` runs only matching files; `BENCH_ROUNDS=N` sets every bench's rounds.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const filters = process.argv.slice(2);
const dir = import.meta.dirname;
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".bench.ts") && (filters.length === 0 || filters.some((s) => f.includes(s))))
  .sort();
let failed = 0;
for (const file of files) {
  console.log(`\n== ${file}`);
  const result = spawnSync(process.execPath, ["--import", "tsx", join(dir, file)], { stdio: "inherit" });
  if (result.status !== 0) {
    failed++;
    console.log(`${file} failed (exit ${result.status ?? result.signal})`);
  }
}
if (files.length === 0) console.log("no benchmarks match");
process.exit(failed === 0 ? 0 : 1);
