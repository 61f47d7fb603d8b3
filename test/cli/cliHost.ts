/**
 * The real API on the local host (test cloud: Azurite, the ARM emulator, the durable engine, a
 * registry), for tests that run the `fast-build` command in-process against it: the hooks of one
 * `describe`, a writable for the command's output, and a project of the test's own.
 */
import {
  cancelRunningBuilds,
  runsUntilStopped,
  startTestCloud,
  type TestCloud,
} from "../functions/support.js";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, afterEach, before, beforeEach } from "node:test";
import { cancelBuild } from "../../src/functions/cancelBuild.js";
import { setDeps } from "../../src/functions/deps.js";
import { startLocalHost, type LocalHost } from "@fast-build/local-cloud/host";

export const KEY = "cli-host-test-function-key";
const MiB = 1024 * 1024;

export class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

export interface CliHost {
  readonly cloud: TestCloud;
  readonly host: LocalHost;
  /** A copy of examples/hello with a file of its own (no other test has its contents or image). */
  project(): Promise<{ root: string; cache: string }>;
}

/** Registers the hooks that start and stop the host; call it inside a `describe`. */
export function useCliHost(): CliHost {
  let cloud: TestCloud | undefined;
  let host: LocalHost | undefined;
  const dirs: string[] = [];
  before(async () => {
    cloud = await startTestCloud();
    // The project's tree with the kit's Dockerfiles is bigger than the test cloud's 2 KiB limit.
    const builds = {
      ...cloud.config.builds,
      maxUploadBytes: 64 * MiB,
      extractLimits: { ...cloud.config.builds.extractLimits, maxBytes: 64 * MiB, maxFileBytes: 8 * MiB },
    };
    cloud.deps = { ...cloud.deps, config: { ...cloud.config, builds } };
    setDeps(cloud.deps);
    host = await startLocalHost({
      entry: new URL("../../src/functions/index.ts", import.meta.url).href,
      engine: cloud.engine,
      functionKey: KEY,
      log: () => undefined,
    });
  });
  after(async () => {
    await host?.stop();
    setDeps(undefined);
    await cloud?.stop();
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });
  beforeEach(() => {
    setDeps(cloud!.deps);
    cloud!.arm.setRunCommandExecutor(runsUntilStopped());
  });
  afterEach(() => cancelRunningBuilds(cloud!, cancelBuild));
  return {
    get cloud() {
      return cloud!;
    },
    get host() {
      return host!;
    },
    async project() {
      const dir = await mkdtemp(join(tmpdir(), "fb-cli-host-"));
      dirs.push(dir);
      await cp(new URL("../../examples/hello", import.meta.url), join(dir, "tree"), { recursive: true });
      await writeFile(join(dir, "tree", "src", "salt.rs"), `// ${dir}\n`);
      return { root: join(dir, "tree"), cache: join(dir, "cache") };
    },
  };
}
