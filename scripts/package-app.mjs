#!/usr/bin/env node
// Stages the function app exactly as it is deployed: what `azd package` / `azd deploy` zip (see
// azure.yaml `dist`). The folder holds the compiled app (dist/), host.json, a package.json without
// scripts, dev dependencies or workspaces, the build kit (dockerfiles/) and node_modules with the
// production dependency closure only.
//
// Why a staged folder and not the repository root: azd zips the whole service folder, and the root's
// node_modules is a full dev install (azd's own restore step runs `npm install`), in which the
// workspace @fast-build/local-cloud and its azurite and selfsigned sit hoisted next to the
// production packages; a .funcignore cannot tell those apart. Why not remote build: see .funcignore.
//
// The closure is read from package-lock.json (the production `dependencies`, followed transitively
// with Node's resolution, optional dependencies left out) and copied from the installed
// node_modules, so staging is offline and installs exactly the versions the tests ran against. npm's
// own dev flags cannot be used for this: a workspace is a root of its own, so its dependencies
// (azurite …) are not flagged dev in the lockfile.
//
// Usage: node scripts/package-app.mjs [--dist <compiled app>] [--out <folder>]
//        defaults: dist/ and .deploy/api/ (emptied first)
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";

const ROOT = resolve(import.meta.dirname, "..");

/** What the deployed app needs besides its dependencies. */
const APP_FILES = ["host.json", "dockerfiles", ".funcignore"];

/** The production package.json: what the Functions host reads (`main`, `type`) and what was installed. */
function productionManifest(manifest) {
  const { name, version, description, private: isPrivate, type, main, engines, dependencies } = manifest;
  return { name, version, description, private: isPrivate, type, main, engines, dependencies };
}

/** The lockfile paths (`node_modules/…`) of the production closure of the root's `dependencies`. */
export function productionClosure(lock, manifest) {
  const packages = lock.packages;
  const found = new Set();
  /** Node's resolution over lockfile paths: the nearest node_modules/<name> up from `from`. */
  const locate = (name, from) => {
    for (let base = from; ;) {
      const candidate = `${base ? `${base}/` : ""}node_modules/${name}`;
      if (packages[candidate]) return candidate;
      if (!base) return undefined;
      const cut = base.lastIndexOf("/node_modules/");
      base = cut === -1 ? "" : base.slice(0, cut);
    }
  };
  const visit = (name, from) => {
    const path = locate(name, from);
    if (!path) throw new Error(`package-lock.json has no ${name} reachable from ${from || "the root"}`);
    if (found.has(path)) return;
    const entry = packages[path];
    if (entry.link) throw new Error(`${name} is a workspace link; production code must not depend on it`);
    found.add(path);
    for (const dep of Object.keys({ ...entry.dependencies, ...entry.peerDependencies })) {
      const optionalPeer = entry.peerDependenciesMeta?.[dep]?.optional;
      if (optionalPeer && !locate(dep, path)) continue;
      visit(dep, path);
    }
  };
  for (const name of Object.keys(manifest.dependencies ?? {})) visit(name, "");
  return [...found].sort();
}

export function stageApp({ dist = join(ROOT, "dist"), out = join(ROOT, ".deploy", "api") } = {}) {
  if (!existsSync(join(dist, "functions", "index.js"))) {
    throw new Error(`${dist} has no functions/index.js: run \`npm run build\` first`);
  }
  const manifest = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8"));
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  cpSync(dist, join(out, "dist"), { recursive: true });
  for (const file of APP_FILES) cpSync(join(ROOT, file), join(out, file), { recursive: true });
  writeFileSync(join(out, "package.json"), `${JSON.stringify(productionManifest(manifest), null, 2)}\n`);
  const closure = productionClosure(lock, manifest);
  for (const path of closure) {
    const target = join(out, path);
    mkdirSync(dirname(target), { recursive: true });
    // Nested node_modules are their own closure entries: copy each package without them.
    cpSync(join(ROOT, path), target, {
      recursive: true,
      filter: (source) => !/(^|\/)node_modules(\/|$)/.test(source.slice(join(ROOT, path).length)),
    });
  }
  return { out, packages: closure };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { dist: { type: "string" }, out: { type: "string" } } });
  const { out, packages } = stageApp({
    ...(values.dist ? { dist: resolve(values.dist) } : {}),
    ...(values.out ? { out: resolve(values.out) } : {}),
  });
  console.log(`staged the function app in ${out} (${packages.length} production packages)`);
}
