/**
 * ContainerAppsGateway over `@azure/arm-appcontainers`: read the app, set one container's image
 * with a revision suffix (so the deploy can follow exactly the revision it created), read a revision.
 */
import { ContainerAppsAPIClient, type Container } from "@azure/arm-appcontainers";
import { PermanentError } from "../core/errors.js";
import type {
  ContainerAppRef,
  ContainerAppStatus,
  ContainerAppsGateway,
  ImageUpdate,
  RevisionStatus,
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

  return {
    async getApp(app: ContainerAppRef): Promise<ContainerAppStatus> {
      const found = await read(app);
      return {
        latestRevisionName: found.latestRevisionName,
        latestReadyRevisionName: found.latestReadyRevisionName,
        provisioningState: found.provisioningState,
        images: Object.fromEntries(
          (found.template?.containers ?? []).map((c) => [c.name ?? "", c.image ?? ""]),
        ),
      };
    },

    async updateImage(app: ContainerAppRef, update: ImageUpdate): Promise<{ revisionName: string }> {
      const found = await read(app);
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
      // Merge-patch replaces arrays: send every container, with only the named one's image changed.
      const patched = containers.map((c) =>
        c.name === update.containerName ? { ...c, image: update.image } : c,
      );
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
          .pollUntilDone(),
      );
      return { revisionName: `${app.appName}--${update.revisionSuffix}` };
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
  };
}
