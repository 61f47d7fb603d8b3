/**
 * The local stand-in for the builder VM's machine: Debian's buildah (vfs storage, chroot isolation)
 * in the role of Docker, a tiny busybox image in the role of both the Rust toolchain image and the
 * runtime image (nothing can be pulled from the internet here), and stand-in Dockerfiles with the
 * real two-layer shape that run shell instead of cargo (`./dockerfiles/`).
 *
 * Used by the layered-build tests and by `npm run sim`. The real dockerfiles/build.sh runs
 * unchanged; only the machine-level knobs differ (FASTBUILD_CONTAINER_CLI and friends).
 */
import { execFile } from "node:child_process";
import { mkdir, symlink } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { LocalRegistry } from "../registry.js";

const exec = promisify(execFile);

/** The stand-in Dockerfiles (Dockerfile.base / Dockerfile.app). */
export const LOCAL_DOCKERFILES = join(import.meta.dirname, "dockerfiles");

/**
 * The local builder's `docker`: docker's command line on buildah (`docker-on-buildah.sh`), which
 * maps docker's registry cache flags (`--cache-from/--cache-to type=registry,ref=…`) to buildah's
 * `--layers --cache-from/--cache-to REPOSITORY`, so build.sh runs with the flags it gives docker on Azure.
 */
export const DOCKER_ON_BUILDAH = join(import.meta.dirname, "docker-on-buildah.sh");

export interface LocalBuilder {
  /** Image references (in the local registry) of the busybox toolchain/runtime stand-ins. */
  images: { toolchain: string; runtime: string };
  /** Runs buildah with this builder's storage. */
  buildah(...args: string[]): Promise<string>;
  /**
   * The machine-level environment build.sh sees on this "VM" (what cloud-init sets up on Azure),
   * given on top of the per-build run-command parameters.
   */
  env: Record<string, string>;
}

/**
 * Prepares buildah storage under `scratch` and pushes the busybox stand-in image to `registry` under
 * the given tags (the first is also `images.toolchain`, the last `images.runtime`).
 */
export async function prepareLocalBuilder(
  scratch: string,
  registry: LocalRegistry,
  tags: { toolchain: string[]; runtime: string } = {
    toolchain: ["fixtures/toolchain:1"],
    runtime: "fixtures/runtime:1",
  },
): Promise<LocalBuilder> {
  const storage = [
    "--storage-driver",
    "vfs",
    "--root",
    join(scratch, "storage"),
    "--runroot",
    join(scratch, "run"),
  ];
  const tmp = join(scratch, "tmp");
  await mkdir(tmp, { recursive: true });
  // buildah keeps RUN cache mounts under TMPDIR: one per builder, so parallel test files do not share.
  const buildah = async (...args: string[]) =>
    (await exec("buildah", [...storage, ...args], { env: { ...process.env, TMPDIR: tmp } })).stdout;

  const rootfs = join(scratch, "rootfs");
  await mkdir(join(rootfs, "bin"), { recursive: true });
  await exec("cp", ["/bin/busybox", join(rootfs, "bin", "busybox")]);
  const { stdout } = await exec("/bin/busybox", ["--list"]);
  for (const applet of stdout.split("\n").filter((a) => a && a !== "busybox")) {
    await symlink("busybox", join(rootfs, "bin", applet));
  }
  const container = (await buildah("from", "scratch")).trim();
  await buildah("copy", container, `${rootfs}/`, "/");
  await buildah("config", "--env", "PATH=/bin", container);
  const refs = [...tags.toolchain, tags.runtime].map((tag) => `${registry.host}/${tag}`);
  const [first, ...rest] = refs;
  if (first === undefined) throw new Error("prepareLocalBuilder needs at least one tag");
  await buildah("commit", "-q", container, first);
  for (const ref of rest) await buildah("tag", first, ref);
  for (const ref of refs) await buildah("push", "--tls-verify=false", ref);
  await buildah("rm", container);

  // What build.sh runs for `docker`: buildah on this builder's own storage, through the shim
  // that reads docker's registry cache flags.
  const cli = `${DOCKER_ON_BUILDAH} ${storage.join(" ")}`;
  const images = { toolchain: first, runtime: refs.at(-1) ?? first };
  return {
    images,
    buildah,
    env: {
      FASTBUILD_CONTAINER_CLI: cli,
      FASTBUILD_BUILD_EXTRA_ARGS: "--isolation chroot --tls-verify=false",
      FASTBUILD_PUSH_EXTRA_ARGS: "--tls-verify=false",
      FASTBUILD_REGISTRY_LOGIN: "none",
      FASTBUILD_REGISTRY_SCHEME: "http",
      FASTBUILD_DOCKERFILES_DIR: LOCAL_DOCKERFILES,
      FASTBUILD_READY_MARKER: join(rootfs, "bin", "busybox"), // exists once set up, like cloud-init's marker
      FASTBUILD_TOOLCHAIN_IMAGE: images.toolchain,
      FASTBUILD_RUNTIME_IMAGE: images.runtime,
      FASTBUILD_WORK_ROOT: join(scratch, "work"),
      TMPDIR: tmp,
    },
  };
}
