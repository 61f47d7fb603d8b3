// A node:test reporter that prints, after the run, how long each area's test files took (summed
// over files; files run two at a time, so the sum can exceed the wall time) and how many tests it has.
import { relative, sep } from "node:path";

function areaOf(file) {
  const parts = relative(process.cwd(), file).split(sep);
  // test/<area>/… or packages/<name>/test/<area>/… (a file directly in a test folder is its own area)
  if (parts[0] === "packages") return `${parts[1]}/${parts.length > 4 ? parts[3] : "(top)"}`;
  return parts.length > 2 ? parts[1] : "(top)";
}

export default async function* areas(source) {
  const byArea = new Map();
  for await (const event of source) {
    const { file, name, details } = event.data ?? {};
    if (!file) continue;
    const area = byArea.get(areaOf(file)) ?? { ms: 0, tests: 0, failed: 0 };
    byArea.set(areaOf(file), area);
    // The runner reports each file as a test named by its path: its duration is the file's wall time.
    if (name === file) {
      if (event.type === "test:complete") area.ms += details?.duration_ms ?? 0;
    } else if ((event.type === "test:pass" || event.type === "test:fail") && details?.type !== "suite") {
      area.tests += 1;
      if (event.type === "test:fail") area.failed += 1;
    }
  }
  const rows = [...byArea].sort((a, b) => b[1].ms - a[1].ms);
  const width = Math.max(4, ...rows.map(([name]) => name.length));
  yield `\ntime per area (summed over its files)\n`;
  for (const [name, { ms, tests, failed }] of rows) {
    const fails = failed > 0 ? `, ${failed} failed` : "";
    yield `  ${name.padEnd(width)}  ${(ms / 1000).toFixed(1).padStart(6)} s  ${tests} tests${fails}\n`;
  }
}
