/**
 * Client values in log lines and messages (issue 9, item 5). A build id, an environment name or a
 * reported image comes from a request; written raw, its newline would start a log line the
 * request wrote. Two tools, used together: every value a client chose goes in {@link quoted}, and
 * every log sink passes its whole line through {@link oneLine}, so a value that slipped past the
 * first still cannot forge a line.
 */

/** Line breaks and control characters (C0, DEL, C1, the Unicode line and paragraph separators). */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/** `text` on one line: each control character as a JSON-style escape (`\n`, `\u001b`). */
export function oneLine(text: string): string {
  return text.replace(CONTROL, (c) => {
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
}

/** A client's value inside a message: JSON-quoted (control characters escaped) and cut at `max`. */
export function quoted(value: unknown, max = 200): string {
  const text = typeof value === "string" ? value : String(value);
  return oneLine(JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text));
}
