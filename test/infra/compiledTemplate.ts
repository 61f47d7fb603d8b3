/**
 * `infra/main.bicep` compiled by the real Bicep compiler (NuGet Azure.Bicep.CommandLine.linux-x64,
 * installed by the script CI runs), and the deployment it describes: every resource with its
 * resource id, evaluated in the module that declares it.
 */
import { execFileSync, spawnSync } from "node:child_process";
import {
  evaluate,
  moduleScope,
  resourceIdIn,
  resourcesOf,
  SUBSCRIPTION_ID,
  type Scope,
  type Template,
  type TemplateResource,
} from "./armExpressions.js";

let bicepPath: string | undefined;

/** Runs the Bicep CLI (installed on first use); returns its stdout. */
export function bicep(...args: string[]): string {
  bicepPath ??= installBicep();
  return execFileSync(bicepPath, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/**
 * `bicep lint`'s findings. The CLI prints warnings on stderr and still exits 0, so both streams are
 * read: an empty answer means no error and no warning.
 */
export function bicepLint(file: string): string {
  bicepPath ??= installBicep();
  const run = spawnSync(bicepPath, ["lint", file], { encoding: "utf8" });
  return `${run.stdout}${run.stderr}`.trim();
}

function installBicep(): string {
  try {
    return execFileSync("bash", ["scripts/install-bicep.sh"], { encoding: "utf8" }).trim().split("\n").pop()!;
  } catch (error) {
    throw new Error(
      "The Bicep compiler could not be installed: run `bash scripts/install-bicep.sh` (needs dotnet).",
      { cause: error },
    );
  }
}

export function compileMain(): Template {
  return JSON.parse(bicep("build", "infra/main.bicep", "--stdout")) as Template;
}

/** Parameter values for a test deployment: what azd would pass (main.parameters.json defaults). */
export const TEST_PARAMETERS: Record<string, unknown> = {
  environmentName: "test",
  location: "testlocation",
  builderSshPublicKey: "ssh-ed25519 AAAA test",
};

/** A resource as deployed: its evaluated id, the module scope it was declared in, and its copy index. */
export interface Deployed {
  type: string;
  id: string;
  resource: TemplateResource;
  scope: Scope;
}

/** Every resource of the deployment (modules expanded, copy loops unrolled), in declaration order. */
export function deployedResources(template: Template, parameters = TEST_PARAMETERS): Deployed[] {
  const root: Scope = { template, parameters: {}, scopeId: `/subscriptions/${SUBSCRIPTION_ID}` };
  for (const [name, declared] of Object.entries(template.parameters ?? {})) {
    root.parameters[name] = name in parameters ? parameters[name] : evaluate(declared.defaultValue, root);
  }
  return walk(root);
}

function walk(scope: Scope): Deployed[] {
  return resourcesOf(scope.template).flatMap((resource) => {
    const count = resource.copy ? Number(evaluate(resource.copy.count, scope)) : undefined;
    const scopes =
      count === undefined
        ? [scope]
        : Array.from({ length: count }, (_, copyIndex): Scope => ({ ...scope, copyIndex }));
    return scopes.flatMap((at) => {
      // A conditional resource (`= if (…)` in Bicep) is deployed only when its condition holds.
      if (resource.condition !== undefined && evaluate(resource.condition, at) !== true) return [];
      const deployed: Deployed = { type: resource.type, id: idOf(resource, at), resource, scope: at };
      if (resource.type !== "Microsoft.Resources/deployments") return [deployed];
      return [deployed, ...walk(moduleScope(resource, at))];
    });
  });
}

function idOf(resource: TemplateResource, scope: Scope): string {
  const names = String(evaluate(resource.name, scope)).split("/");
  if (resource.type === "Microsoft.Resources/resourceGroups") {
    return `/subscriptions/${SUBSCRIPTION_ID}/resourceGroups/${names[0]}`;
  }
  // Extension resources (role assignments) live under their `scope`; others under the deployment's.
  const parent = resource.scope === undefined ? scope.scopeId : scopeIdOf(resource, scope);
  return resourceIdIn(parent, resource.type, names);
}

/** The resource id a resource's `scope` property names (its deployment's scope when absent). */
export function scopeIdOf(resource: TemplateResource, scope: Scope): string {
  if (resource.scope === undefined) return scope.scopeId;
  const value = String(evaluate(resource.scope, scope));
  // Bicep writes either a full id or one relative to the deployment's scope.
  return value.startsWith("/") ? value : `${scope.scopeId}/providers/${value}`;
}

/** The only deployed resource of a type (a test about "the" VM should fail if there are two). */
export function only(resources: Deployed[], type: string): Deployed {
  const found = resources.filter((r) => r.type.toLowerCase() === type.toLowerCase());
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
  return found[0]!;
}

/** Its `properties`, evaluated (expressions resolved) in the module that declares it. */
export function propertiesOf(deployed: Deployed): Record<string, unknown> {
  return evaluate(deployed.resource.properties ?? {}, deployed.scope) as Record<string, unknown>;
}
