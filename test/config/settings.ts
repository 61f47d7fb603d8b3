/** The smallest valid app settings, for tests that vary one setting at a time. */
export const ENVIRONMENT = {
  subscriptionId: "00000000-0000-0000-0000-000000000000",
  resourceGroup: "rg-dev",
  builderVm: "builder",
  registry: "example.azurecr.io",
  imageRepository: "team/app",
  containerApp: "app",
  containerName: "app",
  binaryName: "app",
};

export const MINIMAL_SETTINGS = {
  FASTBUILD_ENVIRONMENTS: JSON.stringify({ dev: ENVIRONMENT }),
  AzureWebJobsStorage: "UseDevelopmentStorage=true",
};
