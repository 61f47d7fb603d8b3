/**
 * Azure RBAC evaluation as documented: a role grants an operation when one of its `actions`
 * (`dataActions`) matches it and none of the same role's `notActions` (`notDataActions`) does;
 * a principal may do what any of its role assignments at the target or an ancestor scope grants.
 *
 * Matching follows https://learn.microsoft.com/azure/role-based-access-control/role-definitions
 * ("Permission strings are case-insensitive"; "a wildcard (*) extends a permission to everything
 * that matches the action string you provide"): `*` stands for any run of characters, so
 * `Microsoft.App/containerApps/*` covers `Microsoft.App/containerApps/read`, while
 * `Microsoft.App/containerApps/*\/read` needs something between the two slashes and does not.
 */
import builtIn from "./builtInRoles.json" with { type: "json" };

export interface RoleDefinition {
  id: string;
  roleName: string;
  source?: string;
  actions: string[];
  notActions: string[];
  dataActions: string[];
  notDataActions: string[];
}

export type Plane = "action" | "dataAction";

export const BUILT_IN_ROLES: readonly RoleDefinition[] = builtIn.roles;

function pattern(permission: string): RegExp {
  const escaped = permission
    .split("*")
    .map((part) => part.replace(/[.+?^${}()|[\]\\/]/g, "\\$&"))
    .join(".*");
  return new RegExp(`^${escaped}$`, "i");
}

export function permissionMatches(permission: string, operation: string): boolean {
  return pattern(permission).test(operation);
}

/** Whether one role grants the operation: allowed by its list and not taken away by its own "not" list. */
export function roleGrants(role: RoleDefinition, plane: Plane, operation: string): boolean {
  const [allow, deny] =
    plane === "action" ? [role.actions, role.notActions] : [role.dataActions, role.notDataActions];
  return (
    allow.some((p) => permissionMatches(p, operation)) && !deny.some((p) => permissionMatches(p, operation))
  );
}

/** Whether an assignment at `assignedAt` applies to `target` (the same resource or one of its ancestors). */
export function scopeCovers(assignedAt: string, target: string): boolean {
  const a = assignedAt.toLowerCase().replace(/\/$/, "");
  const t = target.toLowerCase();
  return t === a || t.startsWith(`${a}/`);
}
