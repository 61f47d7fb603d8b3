import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import {
  compileMain,
  deployedResources,
  only,
  propertiesOf,
  scopeIdOf,
  type Deployed,
} from "./compiledTemplate.js";
import { BUILT_IN_ROLES, permissionMatches, roleGrants, scopeCovers, type RoleDefinition } from "./rbac.js";
import { IDENTITIES, REQUIRED, type Identity } from "./requiredActions.js";

interface Assignment {
  principal: string;
  scope: string;
  role: RoleDefinition;
}

let resources: Deployed[];
let assignments: Assignment[];

/** Built-in roles by GUID, plus custom roles the template itself defines. */
function roleById(id: string): RoleDefinition {
  const guid = id.split("/").pop()!.toLowerCase();
  const known = BUILT_IN_ROLES.find((r) => r.id === guid);
  if (known) return known;
  const custom = resources.find(
    (r) =>
      r.type === "Microsoft.Authorization/roleDefinitions" && r.id.split("/").pop()!.toLowerCase() === guid,
  );
  if (!custom)
    throw new Error(`role ${guid} is neither in test/infra/builtInRoles.json nor defined by the template`);
  const props = propertiesOf(custom) as { roleName: string; permissions: Partial<RoleDefinition>[] };
  const [permissions, ...more] = props.permissions;
  assert.equal(more.length, 0, "one permission block per custom role");
  return {
    id: guid,
    roleName: props.roleName,
    actions: permissions?.actions ?? [],
    notActions: permissions?.notActions ?? [],
    dataActions: permissions?.dataActions ?? [],
    notDataActions: permissions?.notDataActions ?? [],
  };
}

function principalOf(identity: Identity): string {
  return `principal(${only(resources, IDENTITIES[identity]).id})`;
}

before(() => {
  resources = deployedResources(compileMain());
  assignments = resources
    .filter((r) => r.type === "Microsoft.Authorization/roleAssignments")
    .map((r) => {
      const props = propertiesOf(r) as { principalId: string; roleDefinitionId: string };
      return {
        principal: props.principalId,
        scope: scopeIdOf(r.resource, r.scope),
        role: roleById(props.roleDefinitionId),
      };
    });
});

describe("RBAC matching (test/infra/rbac.ts)", () => {
  it("treats * as any run of characters and ignores case", () => {
    assert.ok(
      permissionMatches(
        "Microsoft.Compute/virtualMachines/*",
        "Microsoft.Compute/virtualMachines/start/action",
      ),
    );
    assert.ok(
      permissionMatches("microsoft.storage/*/read", "Microsoft.Storage/storageAccounts/blobServices/read"),
    );
    assert.ok(permissionMatches("*", "Microsoft.Anything/x/write"));
    assert.ok(!permissionMatches("Microsoft.App/containerApps/*/read", "Microsoft.App/containerApps/read"));
    assert.ok(
      !permissionMatches("Microsoft.Compute/virtualMachines/read", "Microsoft.Compute/virtualMachines/readX"),
    );
  });

  it("subtracts a role's notActions and notDataActions from its own grants", () => {
    const role: RoleDefinition = {
      id: "x",
      roleName: "x",
      actions: ["Microsoft.Compute/*"],
      notActions: ["Microsoft.Compute/virtualMachines/delete"],
      dataActions: ["Microsoft.Storage/*"],
      notDataActions: ["Microsoft.Storage/*/delete"],
    };
    assert.ok(roleGrants(role, "action", "Microsoft.Compute/virtualMachines/write"));
    assert.ok(!roleGrants(role, "action", "Microsoft.Compute/virtualMachines/delete"));
    assert.ok(
      roleGrants(role, "dataAction", "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"),
    );
    assert.ok(
      !roleGrants(
        role,
        "dataAction",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
      ),
    );
    assert.ok(
      !roleGrants(role, "action", "Microsoft.Storage/storageAccounts/read"),
      "actions do not grant data actions",
    );
  });

  it("applies an assignment to its scope and everything below it, nothing beside it", () => {
    const rg = "/subscriptions/s/resourceGroups/rg";
    assert.ok(scopeCovers(rg, `${rg}/providers/Microsoft.Compute/virtualMachines/vm`));
    assert.ok(
      !scopeCovers(
        `${rg}/providers/Microsoft.Compute/virtualMachines/vm`,
        `${rg}/providers/Microsoft.Compute/virtualMachines/vm2`,
      ),
    );
    assert.ok(!scopeCovers(rg, "/subscriptions/s/resourceGroups/rg2"));
  });
});

describe("role assignments in the compiled infra/main.bicep", () => {
  for (const need of REQUIRED) {
    it(`${need.identity} may ${need.operation} on the ${need.on.split("/").pop()} (${need.by})`, () => {
      const principal = principalOf(need.identity);
      const target = need.named
        ? resources.filter(
            (r) => r.type.toLowerCase() === need.on.toLowerCase() && r.id.endsWith(`/${need.named}`),
          )
        : [only(resources, need.on)];
      assert.equal(target.length, 1, `one ${need.on} named ${need.named ?? "(any)"}`);
      const targetId = target[0]!.id;
      const mine = assignments.filter((a) => a.principal === principal && scopeCovers(a.scope, targetId));
      const granting = mine.filter((a) => roleGrants(a.role, need.plane, need.operation));
      assert.ok(
        granting.length > 0,
        `${need.identity} has ${mine.map((a) => a.role.roleName).join(", ") || "no role"} at ${targetId}: none grants ${need.plane} ${need.operation}`,
      );
    });
  }

  it("gives the function app Flex Consumption's storage roles on the AzureWebJobsStorage account", () => {
    // Identity-based AzureWebJobsStorage on Flex Consumption with Durable Functions needs these three
    // (MicrosoftDocs/azure-docs articles/azure-functions/flex-consumption-plan.md; AZURE-NOTES).
    const site = only(resources, "Microsoft.Web/sites");
    const settings = (propertiesOf(site).siteConfig as { appSettings: { name: string; value: string }[] })
      .appSettings;
    const accountName = settings.find((s) => s.name === "AzureWebJobsStorage__accountName")?.value;
    const account = resources.find(
      (r) => r.type === "Microsoft.Storage/storageAccounts" && r.id.endsWith(`/${accountName}`),
    );
    assert.ok(account, `AzureWebJobsStorage__accountName ${accountName} is the deployed account`);
    const roles = assignments
      .filter((a) => a.principal === principalOf("functionApp") && scopeCovers(a.scope, account.id))
      .map((a) => a.role.roleName);
    for (const role of [
      "Storage Blob Data Owner",
      "Storage Queue Data Contributor",
      "Storage Table Data Contributor",
    ]) {
      assert.ok(roles.includes(role), `${role} (has: ${roles.join(", ")})`);
    }
  });

  it("assigns only roles whose definitions the test knows, each to a deployed identity", () => {
    const principals = Object.keys(IDENTITIES).map((i) => principalOf(i as Identity));
    assert.ok(assignments.length > 0);
    for (const a of assignments)
      assert.ok(principals.includes(a.principal), `unexpected principal ${a.principal}`);
  });

  it("keeps the built-in role data tied to its published source", () => {
    for (const role of BUILT_IN_ROLES) {
      assert.match(role.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.match(
        role.source ?? "",
        /^https:\/\/learn\.microsoft\.com\/azure\/role-based-access-control\/built-in-roles\//,
      );
    }
  });
});
