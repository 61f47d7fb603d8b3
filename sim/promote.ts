/**
 * The simulation's promotion and rollback (issue 11, items 3 and 4): a second environment,
 * `staging`, with its own registry and container app; after the builds, the image `sim` runs is
 * promoted to `staging` by digest (ACR's import between the two registries, no rebuild), and then
 * `sim` is rolled back to its previous healthy image. Both through the real `fast-build` command,
 * run as its own process, as the developer would.
 */
import { spawn } from "node:child_process";
import { join, resolve } from "node:path";
import type { Writable } from "node:stream";
import type { DeployStatus } from "../src/core/promotion.js";
import type { ArmEmulator } from "@fast-build/local-cloud/arm";
import { startRegistry, type LocalRegistry } from "@fast-build/local-cloud/registry";

const REPO_ROOT = resolve(import.meta.dirname, "..");

export interface Staging {
  /** What the `sim` environment adds to its settings (its registry as ARM names it). */
  simSettings: { registryResource: { resourceGroup: string; name: string } };
  /** The `staging` environment's settings. */
  environments: Record<string, unknown>;
  registry: LocalRegistry;
  appRef: { subscriptionId: string; resourceGroup: string; appName: string };
  stop(): Promise<void>;
}

/** Starts staging's registry, registers both registries with ARM and adds staging's container app. */
export async function prepareStaging(
  scratch: string,
  arm: ArmEmulator,
  sim: {
    registry: LocalRegistry;
    subscriptionId: string;
    resourceGroup: string;
    containerName: string;
    initialImage: string;
  },
): Promise<Staging> {
  const registry = await startRegistry({ storageDir: join(scratch, "registry-staging") });
  const resourceGroup = "rg-fast-build-staging";
  arm.addRegistry(
    { subscriptionId: sim.subscriptionId, resourceGroup: sim.resourceGroup, registryName: "fastbuildsim" },
    { loginServer: sim.registry.host, storeUrl: sim.registry.url },
  );
  arm.addRegistry(
    { subscriptionId: sim.subscriptionId, resourceGroup, registryName: "fastbuildstaging" },
    { loginServer: registry.host, storeUrl: registry.url },
  );
  const appRef = { subscriptionId: sim.subscriptionId, resourceGroup, appName: "hello-staging" };
  arm.addContainerApp(appRef, {
    containers: [{ name: sim.containerName, image: sim.initialImage }],
    revisionSuffix: "initial",
  });
  return {
    simSettings: { registryResource: { resourceGroup: sim.resourceGroup, name: "fastbuildsim" } },
    environments: {
      staging: {
        subscriptionId: sim.subscriptionId,
        resourceGroup,
        builderVm: "builder-staging",
        registry: registry.host,
        imageRepository: "hello/app",
        containerApp: appRef.appName,
        containerName: sim.containerName,
        binaryName: "hello",
        registryResource: { resourceGroup, name: "fastbuildstaging" },
      },
    },
    registry,
    appRef,
    stop: () => registry.stop(),
  };
}

export interface PromoteReport {
  promotion: { exitCode: number; status: DeployStatus | undefined };
  rollback: { exitCode: number; status: DeployStatus | undefined };
}

/** `fast-build promote sim staging`, then `fast-build rollback sim`, narrated. */
export async function promoteAndRollBack(ctx: {
  say: (line?: string) => void;
  cli: { url: string; functionKey: string; output: Writable };
  arm: ArmEmulator;
  staging: Staging;
}): Promise<PromoteReport> {
  const { say, staging } = ctx;
  say();
  say(
    "== promote: sim → staging (the image sim runs, by digest: ACR imports it into staging's registry, no rebuild)",
  );
  const promotion = await runCommand(["promote", "sim", "staging", "--json"], ctx.cli);
  const p = promotion.status;
  say(`   → exit ${promotion.exitCode}, ${p?.phase ?? "no status"}`);
  if (p) {
    const digest = p.deploy.image.digest;
    const head = await fetch(`${staging.registry.url}/v2/hello/app/manifests/${digest}`, {
      method: "HEAD",
      headers: {
        accept:
          "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
      },
    });
    const inStaging = head.headers.get("docker-content-digest");
    say(`   → image: ${p.deploy.image.repository}@${digest} (${p.deploy.image.source})`);
    say(
      `   → import: ${p.deploy.import?.state ?? "?"}; staging's registry has ${inStaging ?? "nothing"} (${inStaging === digest ? "the same digest" : "NOT the same digest"})`,
    );
    say(
      `   → revision ${p.revision?.name ?? "?"}: ${p.revision?.provisioningState ?? "?"}/${p.revision?.healthState ?? "?"}`,
    );
    say(
      `   → container app ${staging.appRef.appName}: ${ctx.arm.getContainerApp(staging.appRef)?.images.app ?? "?"}`,
    );
  }
  say();
  say("== rollback: sim back to its previous healthy image (by digest, the same health wait)");
  const rollback = await runCommand(["rollback", "sim", "--json"], ctx.cli);
  const r = rollback.status;
  say(`   → exit ${rollback.exitCode}, ${r?.phase ?? "no status"}`);
  if (r) {
    say(`   → back to ${r.deploy.image.repository}@${r.deploy.image.digest} (${r.deploy.image.source})`);
    say(`   → ${r.deployment?.message ?? "no deployment"}`);
  }
  return { promotion, rollback };
}

/** Runs `fast-build <argv>` as its own process; its human lines go to `cli.output`. */
async function runCommand(
  argv: string[],
  cli: { url: string; functionKey: string; output: Writable },
): Promise<{ exitCode: number; status: DeployStatus | undefined }> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(REPO_ROOT, "src", "cli", "main.ts"), ...argv],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, FASTBUILD_API_URL: cli.url, FASTBUILD_API_KEY: cli.functionKey },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
  child.stderr.pipe(cli.output, { end: false });
  const exitCode = await new Promise<number>((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => done(code ?? 1));
  });
  try {
    return { exitCode, status: JSON.parse(stdout) as DeployStatus };
  } catch {
    return { exitCode, status: undefined };
  }
}
