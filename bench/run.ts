/**
 * `npm run bench`: runs every bench/*.bench.ts in its own process, one after another, so a bench's
 * warm caches do not flatter the next. Each bench prints its own baseline and ratios.
 * `npm run bench -- <substring>` runs only matching files.
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
  if (result.status !== 0) failed++;
}
if (files.length === 0) console.log("no benchmarks match");
process.exit(failed === 0 ? 0 : 1);
