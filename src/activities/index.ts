/**
 * The build orchestration's activities: each a small function over the ports (compute, container
 * apps, source and log stores) and the lease store. Built from a dependency object so Azure, the
 * local simulation and tests hand in the same gateways pointed at different endpoints.
 *
 * Activities throw typed errors; the wrapper encodes them (see core/retry.ts) so the orchestrator
 * can tell a transient failure (retry) from a permanent one (fail the build with the hint).
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ACTIVITIES,
  type AcquireLeaseResult,
  type ActivityHandlers,
  type BuildProgress,
  type ImageLookup,
  type LookUpImagesInput,
  type RenewLeaseInput,
  type ResolvedEnvironment,
  TERMINAL_EXECUTION_STATES,
} from "../core/activityContract.js";
import {
  builderKey,
  builderVm,
  callbackPath,
  errorLogBlobName,
  logBlobName,
  RUN_COMMAND_PREFIX,
  runCommandName,
  sourceBlobName,
} from "../core/buildInput.js";
import { contentBlobNames } from "../core/sourceManifest.js";
import { ConfigError, NotFoundError, PermanentError, TransientError } from "../core/errors.js";
import { EXTRACT_LIMITS } from "../core/extractLimits.js";
import { effectiveBinary } from "../core/projectSettings.js";
import { decideAcquire, decideRelease, decideRenew, mutateRecord, type LeaseStore } from "../core/lease.js";
import type {
  ComputeGateway,
  ContainerAppsGateway,
  ContentStore,
  LogStore,
  RegistryGateway,
  RegistryImportGateway,
  RemovedCommands,
  SourceStore,
  VmRef,
} from "../core/ports.js";
import { quoted } from "../core/logText.js";
import { fitTail, LOG_TAIL_BUDGET_BYTES, POLL_LOG_TAIL_BUDGET_BYTES } from "../core/status.js";
import { parseBuildResult, RESULT_LIMITS, truncateText } from "../core/buildResult.js";
import { encodeActivityError } from "../core/retry.js";
import { redact, type Config } from "../config/index.js";
import { estimateDuration } from "../core/expectedDuration.js";
import type { HistoryStore } from "../azure/history.js";
import { recordPower } from "../builders/power.js";
import { supersedeEnabled } from "../core/supersede.js";

export interface ActivityDeps {
  config: Pick<Config, "environments" | "builds" | "publicBaseUrl">;
  compute: ComputeGateway;
  apps: ContainerAppsGateway;
  /** The environments' registries: confirms the digest of a reported image before a deploy. */
  registry: RegistryGateway;
  /** ACR's import (promotions); optional for the build's own tests, refused at call when absent. */
  registryImport?: RegistryImportGateway;
  sources: SourceStore;
  /** Content-addressed source: the plan a manifest build's builder fetches. */
  contents: ContentStore;
  logs: LogStore;
  leases: LeaseStore;
  /** Build history and the builders' power transitions. */
  history: HistoryStore;
  /** Wall clock for leases (shared with other processes, so never the orchestration's clock). */
  now?: () => Date;
  /**
   * The builder script; default `dockerfiles/build.sh` of this package. Its extractor,
   * `safe_extract.py`, is read from the same folder: the kit is deployed as one.
   */
  buildScriptPath?: string;
  /** How long a VM may take to run with its agent ready (default 10 minutes). */
  vmReadyTimeoutMs?: number;
}

/** A queued build that stopped asking (cancelled, crashed) leaves the queue after this long. */
const QUEUE_STALE_MS = 3 * 60_000;

export type ActivityFunction = (input: unknown) => Promise<unknown>;

/**
 * Name → handler, exactly what `src/functions/orchestration.ts` registers. Each handler wraps one
 * of {@link createActivityHandlers}, so it throws only errors the orchestrator can decode.
 */
export function makeActivities(deps: ActivityDeps): ReadonlyMap<string, ActivityFunction> {
  const handlers = createActivityHandlers(deps);
  return new Map(
    Object.entries(handlers).map(([name, handler]) => [
      name,
      async (input: unknown) => {
        try {
          // The host hands in what the orchestrator sent, which the contract typed on its side.
          return await (handler as (input: unknown) => Promise<unknown>)(input);
        } catch (error) {
          throw redactError(encodeActivityError(error));
        }
      },
    ]),
  );
}

/**
 * The activities as one object typed by the contract (`ActivityHandlers`): a handler whose input
 * or output drifts from what the orchestrator calls it with does not compile.
 */
export function createActivityHandlers(deps: ActivityDeps): ActivityHandlers {
  const now = deps.now ?? (() => new Date());
  const powerDeps = { history: deps.history, compute: deps.compute, now };
  const loadScript = kitFileLoader("build.sh", deps.buildScriptPath);
  const loadExtractor = kitFileLoader(
    "safe_extract.py",
    deps.buildScriptPath && join(dirname(deps.buildScriptPath), "safe_extract.py"),
  );
  // The action Run Command (hybrid profile) runs build.sh through this POSIX sh launcher.
  const loadLauncher = kitFileLoader("launcher.sh", undefined);

  /** Extends the lease of exactly this holder and generation; anyone else gets `LeaseLost` with its cause. */
  const renewLease = (lease: RenewLeaseInput) =>
    mutateRecord(deps.leases, lease.builderKey, (record) => {
      const decision = decideRenew(record, lease.buildId, lease.generation, now(), lease.leaseMs);
      if (decision.kind === "lost") {
        throw new PermanentError(`the builder lease was lost: ${decision.cause}`, {
          code: "LeaseLost",
          hint: "Start the build again. If builds lose their lease while the function app is down or busy, raise FASTBUILD_LEASE_MINUTES.",
        });
      }
      return { record: decision.record, result: { expiresAt: decision.expiresAt } };
    });

  return {
    [ACTIVITIES.resolveEnvironment]: ({ environment }) => {
      const env = deps.config.environments[environment];
      if (!env) {
        throw new NotFoundError(`unknown environment ${quoted(environment, 80)}`, {
          code: "UnknownEnvironment",
          hint: `Use one of: ${Object.keys(deps.config.environments).join(", ") || "(none configured)"}.`,
        });
      }
      const vm = builderVm(env);
      const b = deps.config.builds;
      const resolved: ResolvedEnvironment = {
        vm,
        builderKey: builderKey(vm),
        app: {
          subscriptionId: env.subscriptionId,
          resourceGroup: env.containerAppResourceGroup ?? env.resourceGroup,
          appName: env.containerApp,
        },
        containerName: env.containerName,
        registry: env.registry,
        imageRepository: env.imageRepository,
        ...(env.binaryName !== undefined ? { binaryName: env.binaryName } : {}),
        limits: {
          sourceTimeoutMs: b.sourceTimeoutMinutes * 60_000,
          buildTimeoutMs: b.buildTimeoutMinutes * 60_000,
          deployTimeoutMs: b.deployTimeoutMinutes * 60_000,
          leaseMs: b.leaseMinutes * 60_000,
          vmReadyTimeoutMs: deps.vmReadyTimeoutMs ?? 10 * 60_000,
        },
        sourceMaxBytes: b.maxUploadBytes,
        extractLimits: b.extractLimits,
        supersede: supersedeEnabled(env.name, env.supersede),
        callbackBaseUrl: deps.config.publicBaseUrl,
        ...(env.registryResource
          ? {
              registryResource: {
                subscriptionId: env.registryResource.subscriptionId ?? env.subscriptionId,
                resourceGroup: env.registryResource.resourceGroup,
                registryName: env.registryResource.name,
              },
            }
          : {}),
        ...(env.registryCache === false ? { registryCache: false as const } : {}),
      };
      return Promise.resolve(resolved);
    },

    [ACTIVITIES.acquireLease]: (input) =>
      mutateRecord<AcquireLeaseResult>(deps.leases, input.builderKey, (record) => {
        const decision = decideAcquire(
          record,
          input.buildId,
          now(),
          { leaseMs: input.leaseMs, queueStaleMs: QUEUE_STALE_MS },
          input.scope,
        );
        return {
          record: decision.record,
          result:
            decision.kind === "acquired"
              ? { acquired: true, generation: decision.generation, expiresAt: decision.expiresAt }
              : decision.kind === "superseded"
                ? { acquired: false, supersededBy: decision.by }
                : { acquired: false, position: decision.position, holder: decision.holder },
        };
      }),

    [ACTIVITIES.renewLease]: (input) => renewLease(input),

    [ACTIVITIES.releaseLease]: (input) =>
      mutateRecord(deps.leases, input.builderKey, (record) => {
        const { record: next, vmMinutes } = decideRelease(record, input.buildId, input.generation, now());
        return { record: next, result: { vmMinutes } };
      }),

    [ACTIVITIES.recordBuild]: async ({ history, ...activity }) => {
      await deps.leases.recordBuild(activity);
      // Builds of orchestrator versions before the history (in flight across the deploy) send none.
      if (history) await deps.history.recordBuild(history);
    },

    [ACTIVITIES.startVm]: async ({ vm }) => {
      let status = await deps.compute.getVmStatus(vm);
      // Start only what is off; a VM that is starting or stopping is left to finish (the
      // orchestrator polls and starts it again if it ends up stopped).
      if (status.powerState === "deallocated" || status.powerState === "stopped") {
        await deps.compute.start(vm);
        status = await deps.compute.getVmStatus(vm);
      }
      // Also when someone else started it (warm, another build): recorded once, and a retry of
      // this activity after a failed write records it then.
      if (status.powerState === "running" || status.powerState === "starting") {
        await recordPower(powerDeps, vm, "started");
      }
      return status;
    },

    [ACTIVITIES.getVmStatus]: ({ vm }) => deps.compute.getVmStatus(vm),

    [ACTIVITIES.startBuild]: async (input) => {
      const env = input.environment;
      const name = runCommandName(input.buildId);
      // At least once: a start retried after a lost reply, re-delivered after a host stop, or run
      // again after the host timed the last one out finds its command and never starts it twice.
      // The lease is confirmed first: a build that lost the builder must not look at it at all.
      if (input.lease) await renewLease(input.lease);
      const existing = await deps.compute.findBuildCommand(env.vm, name);
      if (existing) return existing;
      const minutes = Math.ceil(input.timeoutSeconds / 60) + 30;
      const [text, extractor, launcher, output, error, source] = await Promise.all([
        loadScript(),
        loadExtractor(),
        loadLauncher(),
        deps.logs.runCommandLog(logBlobName(input.buildId), minutes),
        deps.logs.runCommandLog(errorLogBlobName(input.buildId), minutes),
        // The script downloads first thing, so the read grant can be short. A manifest build's
        // script fetches its plan (written before SourceUploaded), which carries the packs' own grants.
        input.sourceFormat === "manifest"
          ? deps.contents.createReadUrl(contentBlobNames.plan(input.buildId), 60)
          : deps.sources.createReadUrl(sourceBlobName(input.buildId), 60),
      ]);
      // Values go in as run-command parameters (environment variables of the script), never into its text.
      const parameters: Record<string, string> = {
        FASTBUILD_BUILD_ID: input.buildId,
        FASTBUILD_SOURCE_DIGEST: input.sourceDigest,
        FASTBUILD_REGISTRY: env.registry,
        FASTBUILD_IMAGE_REPOSITORY: env.imageRepository,
        FASTBUILD_SOURCE_MAX_BYTES: String(env.sourceMaxBytes),
        FASTBUILD_REBUILD_BASE: String(input.rebuildBase),
      };
      parameters.FASTBUILD_BASE_KEY = input.baseKey;
      if (input.commit) parameters.FASTBUILD_COMMIT = input.commit;
      // The shared registry cache (src/core/rules.ts registryCacheRefs): the branch picks the app
      // stage's cache tag; build.sh sanitizes it with the same rule.
      parameters.FASTBUILD_REGISTRY_CACHE = String(env.registryCache !== false);
      if (input.branch) parameters.FASTBUILD_BRANCH = input.branch;
      // The project's settings (fast-build.toml, checked by POST /builds against src/core/rules.ts;
      // build.sh checks them again), else the environment's binary: parameters, never script text.
      const project = input.project;
      const { binary, missing } = effectiveBinary(project, env.binaryName);
      if (missing) {
        throw new PermanentError(
          "no binary to build: the build names none and its environment has no binaryName",
          {
            code: "BinaryNameMissing",
            hint: 'Set [build] binary = "NAME" in fast-build.toml, or binaryName in the environment\'s FASTBUILD_ENVIRONMENTS entry, and start the build again.',
          },
        );
      }
      if (binary !== undefined) parameters.FASTBUILD_BINARY_NAME = binary;
      if (project?.profile !== undefined) parameters.FASTBUILD_CARGO_PROFILE = project.profile;
      if (project?.features?.length) parameters.FASTBUILD_CARGO_FEATURES = project.features.join(",");
      if (project?.target !== undefined) parameters.FASTBUILD_CARGO_TARGET = project.target;
      if (project?.port !== undefined) parameters.FASTBUILD_PORT = String(project.port);
      if (project?.dockerfiles) {
        parameters.FASTBUILD_DOCKERFILE_BASE = project.dockerfiles.base;
        parameters.FASTBUILD_DOCKERFILE_APP = project.dockerfiles.app;
      }
      // Every limit, on every build: the extractor's own defaults are for runs by hand only.
      const limits = env.extractLimits ?? deps.config.builds.extractLimits;
      for (const limit of EXTRACT_LIMITS) parameters[limit.variable] = String(limits[limit.key]);
      // The extractor runs before the archive is opened, so it cannot come in it (nor may an
      // archive bring its own), and the VM keeps no kit: it travels with the script. Base64 has
      // no character a shell would read (the action Run Command exports parameters unquoted);
      // script + parameters stay near 105 KB (the extractor's plan mode doubled it), under half of
      // Run Command's 256 KB for an inline script (test/activities/index.test.ts keeps it < 128 KB).
      parameters.FASTBUILD_EXTRACTOR_B64 = Buffer.from(extractor, "utf8").toString("base64");
      // SAS URLs and the callback token are hidden from run-command GETs.
      const protectedParameters: Record<string, string> =
        input.sourceFormat === "manifest"
          ? { FASTBUILD_SOURCE_PLAN_URL: source.url }
          : { FASTBUILD_SOURCE_URL: source.url };
      if (env.callbackBaseUrl) {
        protectedParameters.FASTBUILD_CALLBACK_URL = `${env.callbackBaseUrl}${callbackPath(input.buildId)}`;
        protectedParameters.FASTBUILD_CALLBACK_TOKEN = input.callbackToken;
      }
      const stale = await removeStaleCommands(deps.compute, env.vm, name);
      if (stale.failed.length > 0) await refuseBesideBusyCommand(deps.compute, env.vm, name);
      // Confirmed again right before the PUT: removing stale commands may have taken a while.
      if (input.lease) await renewLease(input.lease);
      const handle = await deps.compute.startBuildCommand(env.vm, {
        name,
        script: text,
        launcher,
        parameters,
        protectedParameters,
        timeoutInSeconds: input.timeoutSeconds,
        outputBlobUri: output.url,
        errorBlobUri: error.url,
        ...(output.managedIdentity ? { blobManagedIdentity: {} } : {}),
      });
      return stale.removed.length + stale.failed.length > 0 ? { ...handle, staleCommands: stale } : handle;
    },

    [ACTIVITIES.readBuild]: async (input) => {
      const view = await deps.compute.readBuildCommand(input.vm, input.handle);
      // The result line is short (core/buildResult.ts), so it survives the view's 4 KB tail whole.
      const result = parseBuildResult(view.output);
      const lines = [...viewLines(view.output), ...viewLines(view.error)]
        .map((line) => redact(line.trimEnd()))
        .filter((line) => line.length > 0 && !line.startsWith('{"fastbuild"'));
      // Every poll's result stays in history: the tail only when it changed, small while running,
      // and the execution message (the same "in progress" at every poll) only once it ended.
      const exited = TERMINAL_EXECUTION_STATES.has(view.executionState);
      const budget = exited ? LOG_TAIL_BUDGET_BYTES : POLL_LOG_TAIL_BUDGET_BYTES;
      const logTail = fitTail(lines, budget);
      const logTailDigest = createHash("sha256")
        .update(JSON.stringify(logTail))
        .digest("base64url")
        .slice(0, 16);
      const progress: BuildProgress = {
        executionState: view.executionState,
        exitCode: view.exitCode,
        result: result && result.buildId === input.buildId ? result : undefined,
        ...(logTailDigest === input.logTailDigest ? {} : { logTail }),
        logTailDigest,
        message:
          exited && view.executionMessage
            ? truncateText(redact(view.executionMessage), RESULT_LIMITS.messageChars)
            : undefined,
      };
      return progress;
    },

    [ACTIVITIES.cancelBuild]: async (input) => {
      await deps.compute.cancelBuildCommand(
        input.vm,
        input.handle,
        input.untilGone === false ? { untilGone: false } : {},
      );
    },

    [ACTIVITIES.stopBuilder]: async ({ vm, lease }) => {
      // Deallocation stops whatever runs on the VM (the action Run Command has no cancel); the
      // next build starts the VM again, with its disks (and build caches) as they were. Never
      // under another build: a stop run again after the lease went back must not touch the VM.
      if (lease) await renewLease(lease);
      const before = await deps.compute.getVmStatus(vm);
      // A stop run again (re-delivered, or retried after a lost reply) finds the VM deallocated.
      if (before.powerState === "deallocated") {
        await recordPower(powerDeps, vm, "deallocated");
        return before;
      }
      await deps.compute.deallocate(vm);
      await recordPower(powerDeps, vm, "deallocated");
      return deps.compute.getVmStatus(vm);
    },

    [ACTIVITIES.readApp]: (input) => deps.apps.getApp(input.app),

    [ACTIVITIES.deployImage]: (input) =>
      deps.apps.updateImage(input.app, {
        containerName: input.containerName,
        image: input.image,
        revisionSuffix: input.revisionSuffix,
      }),

    [ACTIVITIES.getRevision]: (input) => deps.apps.getRevision(input.app, input.revisionName),

    [ACTIVITIES.readDeployment]: async ({ app, revisionName, appRead }) => {
      // Azure may answer the PATCH before the revision exists: not there yet is not an error here.
      const revision = () =>
        deps.apps.getRevision(app, revisionName).catch((error: unknown) => {
          if (error instanceof NotFoundError) return undefined;
          throw error;
        });
      if (appRead !== "when-needed") {
        const [found, status] = await Promise.all([revision(), deps.apps.getApp(app)]);
        return { revision: found, app: status };
      }
      // One read per poll while the revision starts; the app only when its state decides something.
      const found = await revision();
      const ready = found?.provisioningState === "Provisioned" && found.healthState === "Healthy";
      return { revision: found, app: !found || ready ? await deps.apps.getApp(app) : undefined };
    },

    [ACTIVITIES.routeTraffic]: ({ app, revisionName }) => deps.apps.sendAllTraffic(app, revisionName),

    [ACTIVITIES.importImage]: async (input) => {
      if (!deps.registryImport) {
        throw new ConfigError(["the registry import gateway is missing from the app's dependencies"]);
      }
      await deps.registryImport.importImage(input.target, {
        sourceResourceId: input.sourceResourceId,
        sourceImage: input.sourceImage,
        targetTags: input.targetTags,
      });
    },

    [ACTIVITIES.readImageDigest]: async ({ registry, repository, tag }) => ({
      digest: await deps.registry.manifestDigest({ registry, repository }, tag),
    }),

    [ACTIVITIES.lookUpImages]: (input) => lookUpImages(deps, input),
  };
}

/**
 * Asks the registry for the source's image and the base image, and the environment's recent
 * builds for what either outcome takes: the orchestrator's registry-first step (fb_LookUpImages)
 * and the read-only `GET /api/environments/{env}/images` (`fast-build plan --api`) both call this.
 */
export async function lookUpImages(
  deps: Pick<ActivityDeps, "registry" | "leases">,
  { registry, repository, sourceTag, baseRepository, baseTag, environment }: LookUpImagesInput,
): Promise<ImageLookup> {
  const [source, base, recent] = await Promise.all([
    deps.registry.manifestDigest({ registry, repository }, sourceTag),
    deps.registry.manifestDigest({ registry, repository: baseRepository }, baseTag),
    environment === undefined ? undefined : deps.leases.recentBuilds(environment),
  ]);
  if (!recent) return { source, base };
  return {
    source,
    base,
    expected: { hit: estimateDuration(recent, "hit"), miss: estimateDuration(recent, "miss") },
  };
}

/** Run Command's instance view keeps the last 4 KB of each stream. */
const INSTANCE_VIEW_BYTES = 4096;

/** A stream's lines; a stream that filled the view begins inside a line, which is left out. */
function viewLines(text: string): string[] {
  const lines = text.split("\n");
  // A cut inside a multi-byte character drops its remains, so "full" is within 3 bytes.
  if (Buffer.byteLength(text, "utf8") >= INSTANCE_VIEW_BYTES - 3) lines.shift();
  return lines;
}

/**
 * Azure refuses a VM's 26th managed run command, and a build's own command is deleted only best
 * effort when it ends, so failed deletes would pile up until no build can start. The lease gives
 * one build at a time the VM, so every other command of ours on it is stale: remove them first.
 * Best effort too (the build's log says what failed); the start itself reports a full VM.
 */
function removeStaleCommands(compute: ComputeGateway, vm: VmRef, keep: string): Promise<RemovedCommands> {
  return compute.removeBuildCommands(vm, { prefix: RUN_COMMAND_PREFIX, keep });
}

/**
 * A stale command that could not be removed may still be running: a build whose lease expired
 * while the function app was down, its script still at work. Starting beside it would put two
 * builds on one builder, so the start waits (a transient error: the activity's retries try again,
 * by when the removal or the old script's own end has freed the VM). A command that has ended
 * does not count; a VM whose commands cannot be listed at all is not started on either.
 */
async function refuseBesideBusyCommand(compute: ComputeGateway, vm: VmRef, keep: string): Promise<void> {
  const busy = (await compute.listBusyBuildCommands(vm, RUN_COMMAND_PREFIX))?.filter(
    (command) => command.name.toLowerCase() !== keep.toLowerCase(),
  );
  if (busy && busy.length > 0) {
    throw new TransientError(
      `the builder still runs command ${busy[0]!.name} (${busy[0]!.executionState ?? busy[0]!.provisioningState ?? "?"}), which could not be removed`,
      { code: "BuilderStillBusy" },
    );
  }
}

/** SAS signatures or keys inside an SDK message must not reach history or logs. */
function redactError(error: Error): Error {
  error.message = redact(error.message);
  return error;
}

type KitFile = "build.sh" | "safe_extract.py" | "launcher.sh";

/**
 * A file of the build kit the activity sends with every build (`dockerfiles/<name>` of this
 * package, or `path`), read once. A failed read is not kept: the next build tries again (the
 * deployment may have been fixed).
 */
function kitFileLoader(name: KitFile, path: string | undefined): () => Promise<string> {
  let text: Promise<string> | undefined;
  return () =>
    (text ??= readKitFile(name, path).catch((error: unknown) => {
      text = undefined;
      throw error;
    }));
}

const KIT_FILE_MISSING: Record<KitFile, string> = {
  "build.sh": "BuildScriptMissing",
  "safe_extract.py": "ExtractorMissing",
  "launcher.sh": "LauncherMissing",
};

async function readKitFile(name: KitFile, path: string | undefined): Promise<string> {
  const here = dirname(fileURLToPath(import.meta.url));
  // src/activities → ../../dockerfiles; dist/src/activities → ../../../dockerfiles.
  const candidates = path
    ? [path]
    : [join(here, "../../dockerfiles", name), join(here, "../../../dockerfiles", name)];
  for (const candidate of candidates) {
    try {
      return await readFile(candidate, "utf8");
    } catch {
      // Try the next layout.
    }
  }
  throw new PermanentError(`the build kit's dockerfiles/${name} is missing from the deployment`, {
    code: KIT_FILE_MISSING[name],
    hint: "Deploy the function app with its dockerfiles/ folder (build.sh, safe_extract.py, launcher.sh).",
  });
}
