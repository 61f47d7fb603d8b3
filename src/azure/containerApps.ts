/**
 * ContainerAppsGateway over `@azure/arm-appcontainers`: read the app, start setting one container's
 * image with a revision suffix (so the deploy can follow exactly the revision it created), read a
 * revision, send all traffic to one revision (multiple revision mode).
 */
import {
  ContainerAppsAPIClient,
  type ContainerApp,
  type Container,
  type Revision,
} from "@azure/arm-appcontainers";
import { isFastBuildError, NotFoundError, PermanentError } from "../core/errors.js";
import type {
  ContainerAppRef,
  ContainerAppStatus,
  ContainerAppsGateway,
  ImageUpdate,
  ImageUpdateStarted,
  RevisionHistoryGateway,
  RevisionStatus,
  RevisionSummary,
} from "../core/ports.js";
import { callAzure } from "./errors.js";
import {
  audienceCredential,
  commonClientOptions,
  perSubscription,
  pollOptions,
  type ArmGatewayOptions,
} from "./clientOptions.js";

/** Creates the Container Apps gateway; one SDK client per subscription, made on first use. */
export function createContainerAppsGateway(options: ArmGatewayOptions): ContainerAppsGateway {
  const poll = pollOptions(options);
  const client = perSubscription(
    (subscriptionId) =>
      new ContainerAppsAPIClient(audienceCredential(options), subscriptionId, commonClientOptions(options)),
  );
  const label = (app: ContainerAppRef) => `${app.resourceGroup}/${app.appName}`;
  const read = (app: ContainerAppRef) =>
    callAzure("arm", `read container app ${label(app)}`, () =>
      client(app.subscriptionId).containerApps.get(app.resourceGroup, app.appName),
    );

  /**
   * True when revision `revisionName` exists and runs `update.image` in its container: this
   * build's deploy made it. A revision of that name with another image is not ours to report on.
   */
  const ownRevision = async (app: ContainerAppRef, revisionName: string, update: ImageUpdate) => {
    let revision: Revision;
    try {
      revision = await callAzure("arm", `read revision ${revisionName} of container app ${label(app)}`, () =>
        client(app.subscriptionId).containerAppsRevisions.getRevision(
          app.resourceGroup,
          app.appName,
          revisionName,
        ),
      );
    } catch (error) {
      if (error instanceof NotFoundError) return false;
      throw error;
    }
    const image = revision.template?.containers?.find((c) => c.name === update.containerName)?.image;
    if (image === update.image) return true;
    throw new PermanentError(
      `container app ${label(app)} already has a revision ${revisionName}, running ${image ?? "no image"} in container '${update.containerName}', not ${update.image}`,
      {
        code: SUFFIX_CONFLICT,
        hint: "Something other than this build made a revision with this build's suffix: start the build again (a new build has a new suffix).",
      },
    );
  };

  return {
    async getApp(app: ContainerAppRef): Promise<ContainerAppStatus> {
      return statusOf(await read(app));
    },

    async updateImage(app: ContainerAppRef, update: ImageUpdate): Promise<ImageUpdateStarted> {
      const found = await read(app);
      const { activeRevisionsMode, ingress } = statusOf(found);
      if (!DEPLOYABLE_MODES.includes(activeRevisionsMode)) {
        // Labels mode routes by label: which label a build should take is not ours to guess.
        throw new PermanentError(
          `container app ${label(app)} is in '${activeRevisionsMode}' revision mode; fast-build deploys only in Single or Multiple mode`,
          {
            code: "UnsupportedRevisionMode",
            hint: "Set the app's activeRevisionsMode to Single (traffic follows the new revision) or Multiple (fast-build moves all traffic to it).",
          },
        );
      }
      const containers: Container[] = found.template?.containers ?? [];
      if (!containers.some((c) => c.name === update.containerName)) {
        throw new PermanentError(
          `container app ${label(app)} has no container named '${update.containerName}'`,
          {
            code: "ContainerNotFound",
            hint: `Set containerName to one of: ${containers.map((c) => c.name).join(", ") || "(none)"}.`,
          },
        );
      }
      const revisionName = `${app.appName}--${update.revisionSuffix}`;
      const started = { revisionName, activeRevisionsMode, ingress };
      // At least once: a retry (or a re-delivered or timed-out deploy) whose earlier PATCH was
      // accepted finds its own revision, and Azure refuses a suffix that exists ("revision with
      // suffix already exists": microsoft/azure-container-apps issue 1278) even when another
      // build's deploy has changed the template since. Its revision is the deploy's outcome.
      if (await ownRevision(app, revisionName, update)) return started;
      // Merge-patch replaces arrays: send every container, with only the named one's image changed.
      const patched = containers.map((c) =>
        c.name === update.containerName ? { ...c, image: update.image } : c,
      );
      // Only until Azure accepted the PATCH: its operation lasts until the new revision is
      // provisioned (minutes, or never) and fails with it. The orchestrator's health poll, bounded
      // by the deploy timeout, follows the revision instead, so no activity outlives that timeout.
      try {
        await callAzure("arm", `update image of container app ${label(app)}`, () =>
          client(app.subscriptionId)
            .containerApps.update(
              app.resourceGroup,
              app.appName,
              {
                location: found.location,
                template: { revisionSuffix: update.revisionSuffix, containers: patched },
              },
              poll,
            )
            .submitted(),
        );
      } catch (error) {
        // An earlier attempt's PATCH landed between the read above and this one.
        if (
          isFastBuildError(error) &&
          error.code === SUFFIX_CONFLICT &&
          (await ownRevision(app, revisionName, update))
        )
          return started;
        throw error;
      }
      // Azure names a revision made with a suffix `<app>--<suffix>`.
      return started;
    },

    async getRevision(app: ContainerAppRef, revisionName: string): Promise<RevisionStatus> {
      const revision = await callAzure(
        "arm",
        `read revision ${revisionName} of container app ${label(app)}`,
        () =>
          client(app.subscriptionId).containerAppsRevisions.getRevision(
            app.resourceGroup,
            app.appName,
            revisionName,
          ),
      );
      return {
        name: revision.name ?? revisionName,
        healthState: revision.healthState ?? "None",
        provisioningState: revision.provisioningState ?? "Provisioning",
        runningState: revision.runningState,
        active: revision.active ?? false,
      };
    },

    async sendAllTraffic(app: ContainerAppRef, revisionName: string): Promise<void> {
      const found = await read(app);
      // An ingress change makes no revision: its operation ends in seconds, so waiting here is
      // bounded. Merge-patch replaces the traffic array and keeps the rest of the ingress.
      const envelope: ContainerApp = {
        location: found.location,
        configuration: { ingress: { traffic: [{ revisionName, weight: 100 }] } },
      };
      await callAzure("arm", `send all traffic of container app ${label(app)} to ${revisionName}`, () =>
        client(app.subscriptionId)
          .containerApps.update(app.resourceGroup, app.appName, envelope, poll)
          .pollUntilDone(),
      );
    },
  };
}

/** The app's revisions, newest first (rollback's choice of the image to go back to). */
export function createRevisionHistoryGateway(options: ArmGatewayOptions): RevisionHistoryGateway {
  const client = perSubscription(
    (subscriptionId) =>
      new ContainerAppsAPIClient(audienceCredential(options), subscriptionId, commonClientOptions(options)),
  );
  return {
    async listRevisions(app: ContainerAppRef): Promise<RevisionSummary[]> {
      return callAzure(
        "arm",
        `list revisions of container app ${app.resourceGroup}/${app.appName}`,
        async () => {
          const found: RevisionSummary[] = [];
          for await (const revision of client(app.subscriptionId).containerAppsRevisions.listRevisions(
            app.resourceGroup,
            app.appName,
          )) {
            found.push({
              name: revision.name ?? "",
              healthState: revision.healthState ?? "None",
              provisioningState: revision.provisioningState ?? "Provisioning",
              runningState: revision.runningState,
              active: revision.active ?? false,
              createdTime: revision.createdTime?.toISOString(),
              images: Object.fromEntries(
                (revision.template?.containers ?? []).map((c) => [c.name ?? "", c.image ?? ""]),
              ),
            });
          }
          // createdTime has whole seconds; two revisions of one second keep the list's order, which
          // is the order they were made in (the emulator's; assumed of Azure's): reversed, newest first.
          return found.reverse().sort((a, b) => (b.createdTime ?? "").localeCompare(a.createdTime ?? ""));
        },
      );
    },
  };
}

const DEPLOYABLE_MODES = ["Single", "Multiple"];
/** Azure's code for a revision suffix that is taken. */
const SUFFIX_CONFLICT = "ContainerAppRevisionSuffixConflict";

function statusOf(found: ContainerApp): ContainerAppStatus {
  return {
    latestRevisionName: found.latestRevisionName,
    latestReadyRevisionName: found.latestReadyRevisionName,
    provisioningState: found.provisioningState,
    images: Object.fromEntries((found.template?.containers ?? []).map((c) => [c.name ?? "", c.image ?? ""])),
    // Azure's default when the app does not say.
    activeRevisionsMode: found.configuration?.activeRevisionsMode ?? "Single",
    ingress: found.configuration?.ingress !== undefined,
    targetPort: found.configuration?.ingress?.targetPort ?? undefined,
  };
}
