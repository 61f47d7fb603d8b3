/**
 * A small evaluator for the ARM template expressions `bicep build` emits, enough to tell which
 * principal a role assignment names, at which scope and with which role — read from the compiled
 * JSON, not from what the Bicep source says it means.
 *
 * Values Azure only knows at deployment time stay symbolic but comparable: `reference(id).identity
 * .principalId` becomes `principal(<id>)`, other `reference()` reads become `ref(<id>).<path>`, and
 * `guid()` / `uniqueString()` hash their arguments (not Azure's hashes, but deterministic, so equal
 * inputs give equal outputs). Module outputs are followed into the module's own template.
 */
import { createHash } from "node:crypto";

export const SUBSCRIPTION_ID = "00000000-0000-0000-0000-00000000feed";
export const TENANT_ID = "00000000-0000-0000-0000-0000000000aa";

export interface TemplateResource {
  type: string;
  name: string;
  apiVersion?: string;
  scope?: string;
  resourceGroup?: string;
  copy?: { name: string; count: unknown };
  identity?: { type: string };
  properties?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface Template {
  parameters?: Record<string, { defaultValue?: unknown }>;
  variables?: Record<string, unknown>;
  resources: Record<string, TemplateResource> | TemplateResource[];
  outputs?: Record<string, { value: unknown }>;
}

/** One template being deployed: its parameter values, where it deploys, and its parent. */
export interface Scope {
  template: Template;
  parameters: Record<string, unknown>;
  /** `/subscriptions/…` for a subscription deployment, `/subscriptions/…/resourceGroups/…` below it. */
  scopeId: string;
  copyIndex?: number;
}

/** A deployment-time value: `reference()` of a resource or module, read lazily. */
class Reference {
  constructor(
    readonly resourceId: string,
    readonly owner: Scope,
    readonly path: string[] = [],
  ) {}
}

export function resourcesOf(template: Template): TemplateResource[] {
  return Array.isArray(template.resources) ? template.resources : Object.values(template.resources);
}

/** Evaluates a template value: expressions in strings (`"[...]"`), recursively in arrays and objects. */
export function evaluate(value: unknown, scope: Scope): unknown {
  if (typeof value === "string") {
    if (value.startsWith("[[")) return value.slice(1);
    if (value.startsWith("[") && value.endsWith("]"))
      return finish(new Parser(value.slice(1, -1), scope).run());
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => evaluate(v, scope));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, evaluate(v, scope)]));
  }
  return value;
}

function finish(value: unknown): unknown {
  return value instanceof Reference ? describe(value) : value;
}

function describe(ref: Reference): string {
  const path = ref.path.join(".");
  if (/^(properties\.)?identity\.principalId$/i.test(path)) return `principal(${ref.resourceId})`;
  return `ref(${ref.resourceId}).${path}`;
}

/** The nested deployment (module) a `reference()` names, if the id is one of the scope's own. */
function moduleOutput(ref: Reference): unknown {
  const match = /\/providers\/Microsoft\.Resources\/deployments\/([^/]+)$/i.exec(ref.resourceId);
  if (!match || ref.path[0] !== "outputs" || ref.path.length < 3) return undefined;
  const module = resourcesOf(ref.owner.template).find(
    (r) => r.type === "Microsoft.Resources/deployments" && evaluate(r.name, ref.owner) === match[1],
  );
  if (!module) throw new Error(`no module named ${match[1]} for ${ref.resourceId}`);
  const inner = moduleScope(module, ref.owner);
  const output = inner.template.outputs?.[ref.path[1]!];
  if (!output) throw new Error(`module ${match[1]} has no output ${ref.path[1]}`);
  // outputs.<name>.value
  return evaluate(output.value, inner);
}

/** The scope a module's template deploys in, with its parameter values evaluated in the parent. */
export function moduleScope(module: TemplateResource, parent: Scope): Scope {
  const props = module.properties as {
    template: Template;
    parameters?: Record<string, { value: unknown }>;
  };
  const rg = module.resourceGroup ? evaluate(module.resourceGroup, parent) : undefined;
  const scopeId =
    typeof rg === "string" ? `/subscriptions/${SUBSCRIPTION_ID}/resourceGroups/${rg}` : parent.scopeId;
  const inner: Scope = { template: props.template, parameters: {}, scopeId };
  for (const [name, declared] of Object.entries(props.template.parameters ?? {})) {
    const given = props.parameters?.[name];
    // A parameter's value comes from the parent; its default is evaluated inside the module.
    inner.parameters[name] = given ? evaluate(given.value, parent) : evaluate(declared.defaultValue, inner);
  }
  return inner;
}

/** `/subscriptions/…/resourceGroups/…/providers/A.B/t1/n1/t2/n2` for type `A.B/t1/t2`, names n1, n2. */
export function resourceIdIn(scopeId: string, type: string, names: string[]): string {
  const [namespace, ...types] = type.split("/");
  const segments = types.flatMap((t, i) => [t, names[i] ?? ""]);
  return `${scopeId}/providers/${namespace}/${segments.join("/")}`;
}

function hash(parts: unknown[], length: number): string {
  return createHash("sha1").update(JSON.stringify(parts)).digest("hex").slice(0, length);
}

type Fn = (args: unknown[], scope: Scope) => unknown;

const FUNCTIONS: Record<string, Fn> = {
  parameters: ([name], scope) => {
    if (!(String(name) in scope.parameters)) throw new Error(`no parameter ${String(name)}`);
    return scope.parameters[String(name)];
  },
  variables: ([name], scope) => {
    const raw = scope.template.variables?.[String(name)];
    if (raw === undefined) throw new Error(`no variable ${String(name)}`);
    return evaluate(raw, scope);
  },
  copyIndex: ([offset], scope) => {
    if (scope.copyIndex === undefined) throw new Error("copyIndex() outside a copy loop");
    return scope.copyIndex + Number(offset ?? 0);
  },
  createArray: (args) => args,
  // Both branches are evaluated first (ARM evaluates only the chosen one; none here has effects).
  if: ([condition, whenTrue, whenFalse]) => (condition === true ? whenTrue : whenFalse),
  createObject: (args) => {
    const entries: [string, unknown][] = [];
    for (let i = 0; i < args.length; i += 2) entries.push([String(args[i]), args[i + 1]]);
    return Object.fromEntries(entries);
  },
  length: ([value]) =>
    Array.isArray(value) || typeof value === "string" ? value.length : Object.keys(value ?? {}).length,
  format: ([pattern, ...args]) =>
    String(pattern).replace(/\{(\d+)\}/g, (_, i: string) => String(finish(args[Number(i)]))),
  concat: (args) => (args.every(Array.isArray) ? args.flat() : args.map((a) => String(finish(a))).join("")),
  string: ([value]) => (typeof value === "string" ? value : JSON.stringify(finish(value))),
  toLower: ([value]) => String(value).toLowerCase(),
  json: ([value]) => JSON.parse(String(value)) as unknown,
  union: (args) => Object.assign({}, ...(args as object[])) as unknown,
  base64: ([value]) => Buffer.from(String(value)).toString("base64"),
  uniqueString: (args) => hash(args, 13),
  guid: (args) => {
    const h = hash(args, 32);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  },
  subscription: () => ({
    id: `/subscriptions/${SUBSCRIPTION_ID}`,
    subscriptionId: SUBSCRIPTION_ID,
    tenantId: TENANT_ID,
  }),
  resourceGroup: (_, scope) => ({
    id: scope.scopeId,
    name: scope.scopeId.split("/").pop(),
    location: "testlocation",
  }),
  resourceId: (args, scope) => {
    const values = args.map(String);
    // resourceId([subscriptionId,] [resourceGroup,] type, names…): the type is the first with a '/'.
    const at = values.findIndex((v) => v.includes("/"));
    const [type, ...names] = values.slice(at);
    const prefix = values.slice(0, at);
    const scopeId =
      prefix.length === 2
        ? `/subscriptions/${prefix[0]}/resourceGroups/${prefix[1]}`
        : prefix.length === 1
          ? scope.scopeId.replace(/\/resourceGroups\/[^/]+$/, `/resourceGroups/${prefix[0]}`)
          : scope.scopeId;
    return resourceIdIn(scopeId, type!, names);
  },
  subscriptionResourceId: (args) => {
    const values = args.map(String);
    const at = values.findIndex((v) => v.includes("/"));
    const [type, ...names] = values.slice(at);
    return resourceIdIn(
      `/subscriptions/${values[0] && at === 1 ? values[0] : SUBSCRIPTION_ID}`,
      type!,
      names,
    );
  },
  extensionResourceId: ([scopeId, type, ...names]) =>
    resourceIdIn(String(scopeId), String(type), names.map(String)),
  reference: ([id], scope) => new Reference(String(id), scope),
  listKeys: ([id]) => ({ keys: [], primarySharedKey: `listKeys(${String(id)})` }),
};

/** Recursive descent over `f(a, 'b')[0].c` — the subset of the expression grammar Bicep emits. */
class Parser {
  private at = 0;
  constructor(
    private readonly text: string,
    private readonly scope: Scope,
  ) {}

  run(): unknown {
    const value = this.expression();
    this.space();
    if (this.at !== this.text.length) throw new Error(`unparsed: ${this.text.slice(this.at)}`);
    return value;
  }

  private space(): void {
    while (this.text[this.at] === " ") this.at++;
  }

  private expression(): unknown {
    this.space();
    let value = this.primary();
    for (;;) {
      this.space();
      const c = this.text[this.at];
      if (c === ".") {
        this.at++;
        value = this.property(value, this.identifier());
      } else if (c === "[") {
        this.at++;
        const key = this.expression();
        this.space();
        this.expect("]");
        value = this.property(value, key);
      } else return value;
    }
  }

  private property(value: unknown, key: unknown): unknown {
    if (value instanceof Reference) {
      const next = new Reference(value.resourceId, value.owner, [...value.path, String(key)]);
      // `reference(module).outputs.x.value` is the module's output, evaluated in the module.
      if (next.path[0] === "outputs" && next.path.length === 3) return moduleOutput(next);
      return next;
    }
    if (value === null || typeof value !== "object") {
      throw new Error(`cannot read ${String(key)} of ${JSON.stringify(value)}`);
    }
    return (value as Record<string, unknown>)[String(key)];
  }

  private primary(): unknown {
    const c = this.text[this.at];
    if (c === "'") return this.string();
    if (c !== undefined && /[0-9-]/.test(c)) {
      const match = /^-?\d+/.exec(this.text.slice(this.at))!;
      this.at += match[0].length;
      return Number(match[0]);
    }
    const name = this.identifier();
    if (name === "true" || name === "false") return name === "true";
    if (name === "null") return null;
    this.space();
    this.expect("(");
    const args: unknown[] = [];
    this.space();
    if (this.text[this.at] !== ")") {
      for (;;) {
        args.push(this.expression());
        this.space();
        if (this.text[this.at] === ",") this.at++;
        else break;
      }
    }
    this.expect(")");
    const fn = FUNCTIONS[name];
    if (!fn) throw new Error(`ARM function ${name}() is not supported by this evaluator`);
    return fn(args, this.scope);
  }

  private identifier(): string {
    const match = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.text.slice(this.at));
    if (!match) throw new Error(`identifier expected at: ${this.text.slice(this.at)}`);
    this.at += match[0].length;
    return match[0];
  }

  private string(): string {
    let out = "";
    this.at++;
    for (;;) {
      const c = this.text[this.at++];
      if (c === undefined) throw new Error("unterminated string");
      if (c === "'") {
        if (this.text[this.at] === "'") {
          out += "'";
          this.at++;
        } else return out;
      } else out += c;
    }
  }

  private expect(c: string): void {
    if (this.text[this.at] !== c) throw new Error(`'${c}' expected at: ${this.text.slice(this.at)}`);
    this.at++;
  }
}
