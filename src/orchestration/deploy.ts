/** Step 7: the Container App runs the built image on a healthy revision. */
import type { Task } from "durable-functions";
import { ACTIVITIES, type ResolvedEnvironment } from "../core/activityContract.js";
import { revisionSuffix } from "../core/buildInput.js";
import { checkReportedImage } from "../core/imageReference.js";
import { RETRY } from "../core/retry.js";
import type { LeaseKeeper, RunContext, RunInput } from "./context.js";
import { BuildEnded } from "./failures.js";
import { POLLS, pollUntil } from "./poll.js";

/**
 * Points the app's container at the built image and waits for the revision that creates (and, in
 * multiple revision mode, then sends all traffic to it); or,
 * when the app already runs exactly that image on a healthy revision, leaves it alone (a new
 * revision would run the same bytes). Returns whether the app was changed.
 *
 * Version 6 on, `handBack` (the build's hand-back of its builder, once) runs as soon as the app is
 * patched, and the first read of the revision comes a poll wait after the PATCH, not at once: a
 * revision is never ready the moment Azure accepts the update (the PATCH answers 202 and its
 * operation stays in progress over several polls while the revision provisions:
 * ../shared/azure-recordings/containerapp-update-revisions.json, containerapp-2022-put-patch-409.json),
 * so that wait is where other work costs the developer nothing. A PATCH that must wait its turn
 * (another build's update of the app answers 409 for minutes, `RETRY.deploy`) hands back before
 * its first retry wait instead of holding the builder through them.
 */
export function* deploy(
  run: RunContext,
  env: ResolvedEnvironment,
  image: string,
  digest: string | undefined,
  handBack?: () => Generator<Task, void, unknown>,
): Generator<Task, boolean, unknown> {
  // A cancel that came with the build's result (or while its command was retired) wins while
  // nothing is deployed: stopping the deploy is what a cancel is for. Older builds deployed.
  if (run.version >= 4) run.throwIfCancelled();
  const reference = yield* confirmedReference(run, env, image, digest);
  return yield* deployReference(run, env, reference, handBack);
}

/**
 * The deploy of a confirmed, digest-pinned reference: what a build does once its image is
 * confirmed, and what a promotion or rollback does (the deploy orchestration, promote.ts) with the
 * same waits. `run.version` picks the build orchestrator version whose deploy steps run: a
 * promotion's input fixes it when it starts. The revision suffix comes from `run.input.buildId`
 * (a promotion's or rollback's id there). Returns whether the app was changed.
 */
export function* deployReference(
  run: RunContext<RunInput>,
  env: ResolvedEnvironment,
  reference: string,
  handBack?: () => Generator<Task, void, unknown>,
): Generator<Task, boolean, unknown> {
  if (yield* keepsRunning(run, env, reference)) return false;
  // Version 6 on, nothing waited between the build's result and here (the builder's hand-back
  // comes after the PATCH), so a cancel delivered meanwhile sits unread: look once, before the
  // app is touched (a zero-length timer), as the hand-back's waits used to.
  if (run.version >= 6 && (yield* run.cancelPending())) throw run.cancelledError();
  const retryWaits: LeaseKeeper | undefined = handBack && {
    *wait(ms: number, interruptible: boolean) {
      const until = run.now() + ms;
      yield* handBack();
      if (run.now() < until) yield* run.sleep(until - run.now(), interruptible);
    },
  };
  const started = yield* run.call(
    ACTIVITIES.deployImage,
    {
      app: env.app,
      containerName: env.containerName,
      image: reference,
      revisionSuffix: revisionSuffix(run.input.buildId),
    },
    // Version 2 on: a deploy behind another build's waits long enough for that one to finish.
    run.version >= 2 ? RETRY.deploy : RETRY.arm,
    true,
    run.version >= 6 ? retryWaits : undefined,
  );
  const { revisionName } = started;
  // Single revision mode moves all traffic to a new revision once it is ready; Multiple mode
  // leaves traffic where it was, so there we move it ourselves once the revision is healthy.
  const moveTraffic = started.activeRevisionsMode === "Multiple" && started.ingress;
  const app = env.app.appName;
  run.status = {
    ...run.status,
    revision: { name: revisionName },
    deployment: {
      reference,
      unchanged: false,
      message:
        `updating container app ${app} to ${reference}: revision ${revisionName}` +
        (moveTraffic ? " (multiple revision mode: traffic moves to it once it is healthy)" : ""),
    },
  };
  run.publish();
  run.log(
    `deploying ${reference} as revision ${revisionName} (${started.activeRevisionsMode} revision mode)`,
  );
  const failed = (state: string) =>
    new BuildEnded("failed", {
      code: "DeployFailed",
      message: `revision ${revisionName} is ${state}; the previous revision keeps serving`,
      hint: "Check the revision's logs in the Container App (startup probe, port, crash on start), fix, and build again.",
    });
  // No lease to renew while waiting: the builder went back before the deploy (it never touches the VM).
  // Azure's update operation lasts until the revision is provisioned and fails with it; this poll
  // follows the revision (and the app's operation state) under the deploy timeout instead.
  let latestRevision: string | undefined;
  if (run.version >= 6) {
    const patchedAt = run.now();
    if (handBack) yield* handBack();
    const firstReadAt = patchedAt + POLLS.deploy.firstMs;
    // Not interruptible, as the poll below (version 4 on): the app is patched already.
    if (run.now() < firstReadAt) yield* run.sleep(firstReadAt - run.now(), false);
  }
  yield* pollUntil(run, {
    policy: POLLS.deploy,
    // Once the app is patched its new revision comes up whatever the build does, so from version 4
    // a cancel no longer ends this wait: the build ends as its revision does, never "cancelled"
    // over a revision it created.
    interruptible: run.version < 4,
    probe: function* () {
      // Report on the revision this build created, never on whichever one happens to be active.
      // Version 6 on: one ARM read per poll while the revision starts (the app only when it decides).
      const view = yield* run.call(
        ACTIVITIES.readDeployment,
        { app: env.app, revisionName, ...(run.version >= 6 ? { appRead: "when-needed" as const } : {}) },
        RETRY.arm,
      );
      const healthState = view.revision?.healthState ?? "None";
      const provisioningState = view.revision?.provisioningState ?? "Provisioning";
      latestRevision = view.app?.latestRevisionName ?? latestRevision;
      run.status = { ...run.status, revision: { name: revisionName, healthState, provisioningState } };
      if (provisioningState === "Provisioned" && healthState === "Healthy") return true;
      run.publish();
      if (provisioningState === "Failed" || healthState === "Unhealthy") {
        throw failed(`${provisioningState}/${healthState}`);
      }
      // The update failed without failing a revision of ours (e.g. before Azure made it).
      if (view.app?.provisioningState === "Failed") {
        throw failed(`${provisioningState}/${healthState} and the app's update failed`);
      }
      return undefined;
    },
    deadline: {
      at: run.now() + env.limits.deployTimeoutMs,
      expired: () => {
        // The build itself succeeded; its deploy did not: a failed build (not a build timeout).
        throw new BuildEnded("failed", {
          code: "DeployTimeout",
          message: `revision ${revisionName} was not healthy within ${Math.round(env.limits.deployTimeoutMs / 60_000)} minutes; the previous revision keeps serving`,
          hint: "Check the revision in the Container App; raise FASTBUILD_DEPLOY_TIMEOUT_MINUTES if it needs longer to start.",
        });
      },
    },
  });
  let traffic: string;
  if (moveTraffic) {
    yield* run.call(ACTIVITIES.routeTraffic, { app: env.app, revisionName }, RETRY.arm);
    traffic = "multiple revision mode: fast-build moved 100% of traffic to it; earlier revisions stay active";
  } else if (started.activeRevisionsMode === "Multiple") {
    traffic = "multiple revision mode without ingress: no traffic to move";
  } else {
    traffic = "single revision mode: Azure moved all traffic to it";
  }
  // Deploys to one app are ordered by Azure: in single revision mode the one made last serves.
  const superseded =
    started.activeRevisionsMode === "Single" &&
    latestRevision !== undefined &&
    latestRevision !== revisionName;
  const message = superseded
    ? `container app ${app} ran ${reference} in revision ${revisionName}, healthy; a later deploy's revision ${latestRevision} has replaced it since (single revision mode: the newest revision serves)`
    : `container app ${app} now runs ${reference} in revision ${revisionName} (${traffic})`;
  run.status = { ...run.status, deployment: { reference, unchanged: false, message } };
  run.publish();
  run.log(message);
  return true;
}

/**
 * The reference to deploy: `<registry>/<repository>@<digest>`, with the digest the environment's
 * registry has for the tag this build pushed. The build's result comes from the builder, and its
 * callback from anyone who holds the build's token: a result naming another registry, another
 * repository, a tag this build does not push, or a digest the registry does not have for that tag
 * ends the build here, before the app is touched. With no digest reported (an older build.sh),
 * the registry's digest for the tag is deployed: never a movable tag.
 */
function* confirmedReference(
  run: RunContext,
  env: ResolvedEnvironment,
  image: string,
  digest: string | undefined,
): Generator<Task, string, unknown> {
  const { buildId, sourceDigest, commit } = run.input;
  const forged = (reason: string) =>
    new BuildEnded("failed", {
      code: "ForgedResult",
      message: `the build's result was refused, nothing was deployed: ${reason}`,
      hint: `Only an image the builder pushed to ${env.registry}/${env.imageRepository} for this build is deployed. Build again; if this repeats, the build's callback token may have leaked or the builder VM is not running fast-build's build.sh.`,
    });
  const check = checkReportedImage(
    {
      registry: env.registry,
      repository: env.imageRepository,
      tags: [buildId, `src-${sourceDigest.replace(/^sha256:/, "")}`, ...(commit ? [`commit-${commit}`] : [])],
    },
    image,
    digest,
  );
  if (!check.ok) throw forged(check.reason);
  const confirmed = yield* run.call(
    ACTIVITIES.readImageDigest,
    { registry: env.registry, repository: env.imageRepository, tag: check.tag },
    RETRY.arm,
  );
  const tagged = `${env.registry}/${env.imageRepository}:${check.tag}`;
  if (confirmed.digest === undefined) throw forged(`the registry has no image tagged ${tagged}`);
  if (check.digest !== undefined && check.digest !== confirmed.digest) {
    throw forged(`the registry's ${tagged} is ${confirmed.digest}, not the reported ${check.digest}`);
  }
  if (check.digest === undefined)
    run.log(`no image digest reported; the registry's ${tagged} is ${confirmed.digest}`);
  return `${env.registry}/${env.imageRepository}@${confirmed.digest}`;
}

/**
 * True when the app's container already runs `reference` (a digest: the same bytes) on its latest
 * revision, and that revision is ready and healthy: then the deploy has nothing to change, and
 * the status reports that revision. A revision with this image that is not the ready one (still
 * provisioning, or failed) or not healthy does not count: the deploy goes ahead with a new one.
 */
function* keepsRunning(
  run: RunContext<RunInput>,
  env: ResolvedEnvironment,
  reference: string,
): Generator<Task, boolean, unknown> {
  const app = yield* run.call(ACTIVITIES.readApp, { app: env.app }, RETRY.arm);
  const ready = app.latestReadyRevisionName;
  if (app.images[env.containerName] !== reference || !ready || ready !== app.latestRevisionName) {
    return false;
  }
  const revision = yield* run.call(ACTIVITIES.getRevision, { app: env.app, revisionName: ready }, RETRY.arm);
  if (revision.provisioningState !== "Provisioned" || revision.healthState !== "Healthy") {
    run.log(
      `container app ${env.app.appName} has ${reference} in revision ${ready}, which is ${revision.provisioningState}/${revision.healthState}: deploying a new revision`,
    );
    return false;
  }
  const message = `container app ${env.app.appName} already runs ${reference}: nothing to deploy, revision ${ready} keeps serving`;
  run.status = {
    ...run.status,
    revision: {
      name: ready,
      healthState: revision.healthState,
      provisioningState: revision.provisioningState,
    },
    deployment: { reference, unchanged: true, message },
  };
  run.publish();
  run.log(message);
  return true;
}
