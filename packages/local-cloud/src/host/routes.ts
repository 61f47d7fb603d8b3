/**
 * Route templates as the Functions host understands them (`builds/{id}`, `files/{*path}`,
 * `items/{id?}`, `items/{id:int}`): literal segments match case-insensitively, and a template with
 * more literal segments wins over one with parameters, as in ASP.NET routing.
 */

type Segment =
  | { kind: "literal"; text: string }
  | { kind: "param"; name: string; optional: boolean; constraint: string | undefined }
  | { kind: "catchAll"; name: string };

export interface CompiledRoute {
  template: string;
  segments: Segment[];
  /** Lower sorts first: literals before parameters before catch-alls, segment by segment. */
  precedence: string;
}

const PARAM = /^\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?\}$/;

/** Parses a route template; throws on a segment it cannot read, so a bad route fails at start. */
export function compileRoute(template: string): CompiledRoute {
  const parts = template
    .replace(/^\/+|\/+$/g, "")
    .split("/")
    .filter((part) => part.length > 0);
  const segments = parts.map((part, index): Segment => {
    if (!part.includes("{")) return { kind: "literal", text: part.toLowerCase() };
    const match = PARAM.exec(part);
    if (!match?.[2]) throw new Error(`route "${template}": cannot read segment "${part}"`);
    if (match[1]) {
      if (index !== parts.length - 1)
        throw new Error(`route "${template}": a catch-all must be the last segment`);
      return { kind: "catchAll", name: match[2] };
    }
    return { kind: "param", name: match[2], optional: match[4] === "?", constraint: match[3]?.toLowerCase() };
  });
  const precedence = segments
    .map((s) => (s.kind === "literal" ? "0" : s.kind === "param" ? "1" : "2"))
    .join("");
  return { template, segments, precedence };
}

/** Sorts routes so the most specific template is tried first. */
export function byPrecedence(a: CompiledRoute, b: CompiledRoute): number {
  return a.precedence < b.precedence ? -1 : a.precedence > b.precedence ? 1 : 0;
}

/** The route parameters when `path` (without the `/api/` prefix, still URL-encoded) matches. */
export function matchRoute(route: CompiledRoute, path: string): Record<string, string> | undefined {
  const parts = path
    .replace(/^\/+|\/+$/g, "")
    .split("/")
    .filter((part) => part.length > 0);
  const params: Record<string, string> = {};
  let i = 0;
  for (const segment of route.segments) {
    const part = parts[i];
    if (segment.kind === "catchAll") {
      params[segment.name] = parts.slice(i).map(decode).join("/");
      return params;
    }
    if (part === undefined) {
      if (segment.kind === "param" && segment.optional) continue;
      return undefined;
    }
    if (segment.kind === "literal") {
      if (decode(part).toLowerCase() !== segment.text) return undefined;
    } else {
      const value = decode(part);
      if (!satisfies(segment.constraint, value)) return undefined;
      params[segment.name] = value;
    }
    i++;
  }
  return i === parts.length ? params : undefined;
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function satisfies(constraint: string | undefined, value: string): boolean {
  switch (constraint) {
    case undefined:
      return true;
    case "int":
    case "long":
      return /^-?\d+$/.test(value);
    case "alpha":
      return /^[A-Za-z]+$/.test(value);
    case "guid":
      return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
    case "bool":
      return /^(true|false)$/i.test(value);
    default:
      // Constraints we do not model match anything rather than hide a route.
      return true;
  }
}
