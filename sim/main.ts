/**
 * `npm run sim`: installs what the local cloud needs (system packages, as root on Debian), then
 * runs the whole product on it: see sim/simulation.ts.
 */
import { execFileSync } from "node:child_process";
import { runSimulation } from "./simulation.js";

// `--warm-rounds N`: rounds of the first-build-after-warm comparison (sim/warm.ts; 0 skips it).
const at = process.argv.indexOf("--warm-rounds");
const warmRounds = at < 0 ? undefined : Number(process.argv[at + 1]);
if (warmRounds !== undefined && !(Number.isInteger(warmRounds) && warmRounds >= 0 && warmRounds <= 20)) {
  console.error(
    "error: --warm-rounds needs a whole number from 0 to 20, e.g. `npm run sim -- --warm-rounds 3`",
  );
  process.exit(2);
}
try {
  execFileSync("bash", [new URL("../scripts/setup-system.sh", import.meta.url).pathname], {
    stdio: "inherit",
  });
} catch {
  process.exit(1);
}
const report = await runSimulation({ warmRounds });
const failed = report.builds.filter((b) => b.exitCode !== 0);
if (failed.length > 0) {
  console.error(
    `\n${failed.length} build(s) failed; the function app's log is in ${report.scratch}/functions.log`,
  );
  process.exit(1);
}
if (report.promote && (report.promote.promotion.exitCode !== 0 || report.promote.rollback.exitCode !== 0)) {
  console.error(
    `\nthe promotion or the rollback failed; the function app's log is in ${report.scratch}/functions.log`,
  );
  process.exit(1);
}
