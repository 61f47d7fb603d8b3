/**
 * RegistryImportGateway over `@azure/arm-containerregistry`: ACR's `importImage`, a copy that Azure
 * makes between two registries by their resource ids (Azure/azure-rest-api-specs
 * specification/containerregistry, `Registries_ImportImage`, a long-running operation followed to
 * its end here). Promotion imports by digest, so the target has the exact manifest the source
 * environment ran: its digest is the same after the import.
 */
import { ContainerRegistryManagementClient } from "@azure/arm-containerregistry";
import type { ImageImport, RegistryImportGateway, RegistryResourceRef } from "../core/ports.js";
import { callAzure } from "./errors.js";
import {
  audienceCredential,
  commonClientOptions,
  perSubscription,
  pollOptions,
  type ArmGatewayOptions,
} from "./clientOptions.js";

export function createRegistryImportGateway(options: ArmGatewayOptions): RegistryImportGateway {
  const poll = pollOptions(options);
  const client = perSubscription(
    (subscriptionId) =>
      new ContainerRegistryManagementClient(
        audienceCredential(options),
        subscriptionId,
        commonClientOptions(options),
      ),
  );
  return {
    async importImage(target: RegistryResourceRef, image: ImageImport): Promise<void> {
      await callAzure(
        "arm",
        `import ${image.sourceImage} into registry ${target.resourceGroup}/${target.registryName}`,
        () =>
          client(target.subscriptionId).registries.importImage(
            target.resourceGroup,
            target.registryName,
            {
              source: { resourceId: image.sourceResourceId, sourceImage: image.sourceImage },
              targetTags: image.targetTags,
              // The target tags name the digest (`promoted-<hex>`): overwriting one writes the same bytes.
              mode: "Force",
            },
            poll,
          ),
      );
    },
  };
}
