/**
 * `npm run sim`: installs what the local cloud needs (system packages, as root on Debian), then
 * runs the whole product on it: see sim/simulation.ts.
 */
import { execFileSync } from "node:child_process";
import { runSimulation } from "./simulation.js";

try {
  execFileSync("bash", [new URL("../scripts/setup-system.sh", import.meta.url).pathname], {
    stdio: "inherit",
  });
} catch {
  process.exit(1);
}
const report = await runSimulation();
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
