/**
 * POSIX tar (ustar + pax) headers for the source archive, written directly: one 512-byte block
 * per entry, preceded by a pax extended header when a name or link target is not ASCII or does
 * not fit ustar's fields (or a size is past ustar's 8 GiB). The metadata is fixed except the path,
 * type, mode, size and link target: uid/gid 0, no user or group names, one mtime, no device
 * numbers. About 20 times faster than encoding with node-tar's Header class, which was a tenth of
 * the archive's time on a tree of small files.
 */

export interface TarEntry {
  path: string;
  type: "File" | "SymbolicLink";
  mode: number;
  size: number;
  linkpath?: string;
}

const BLOCK = 512;
const TYPE_FLAG = { File: "0", SymbolicLink: "2", Pax: "x" } as const;
/** ustar's size field: 11 octal digits. */
const MAX_USTAR_SIZE = 0o77777777777;
const PAX_NAME = "PaxHeader";

/** The header block(s) of `entry`, with `mtime` (seconds since the epoch) on every one. */
export function tarHeader(entry: TarEntry, mtime: number): Buffer {
  const records: string[] = [];
  let name = entry.path;
  let prefix = "";
  if (!fitsUstar(name, 100)) {
    const split = splitPrefix(name);
    if (split) [prefix, name] = split;
    else {
      records.push(paxRecord("path", entry.path));
      name = asciiFallback(entry.path);
    }
  }
  let linkpath = entry.linkpath ?? "";
  if (!fitsUstar(linkpath, 100)) {
    records.push(paxRecord("linkpath", linkpath));
    linkpath = asciiFallback(linkpath);
  }
  let size = entry.size;
  if (size > MAX_USTAR_SIZE) {
    records.push(paxRecord("size", String(size)));
    size = 0;
  }
  const block = ustar(name, prefix, TYPE_FLAG[entry.type], entry.mode, size, linkpath, mtime);
  if (records.length === 0) return block;
  const body = Buffer.from(records.join(""), "utf8");
  const padded = Math.ceil(body.length / BLOCK) * BLOCK;
  const out = Buffer.alloc(BLOCK + padded + BLOCK);
  ustar(PAX_NAME, "", TYPE_FLAG.Pax, 0o644, body.length, "", mtime).copy(out, 0);
  body.copy(out, BLOCK);
  block.copy(out, BLOCK + padded);
  return out;
}

function ustar(
  name: string,
  prefix: string,
  type: string,
  mode: number,
  size: number,
  linkpath: string,
  mtime: number,
): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, "latin1");
  octal(b, 100, 8, mode);
  octal(b, 108, 8, 0); // uid
  octal(b, 116, 8, 0); // gid
  octal(b, 124, 12, size);
  octal(b, 136, 12, mtime);
  b.write(type, 156, 1, "latin1");
  b.write(linkpath, 157, 100, "latin1");
  b.write("ustar\u000000", 257, 8, "latin1");
  // uname and gname (265, 297) stay empty: numeric ids only.
  octal(b, 329, 8, 0); // devmajor
  octal(b, 337, 8, 0); // devminor
  b.write(prefix, 345, 155, "latin1");
  // The checksum counts its own field as eight spaces.
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += b[i]!;
  b.write(`${sum.toString(8).padStart(6, "0")}\u0000 `, 148, 8, "latin1");
  return b;
}

/** `width - 1` octal digits and a NUL, as ustar has its numbers. */
function octal(b: Buffer, offset: number, width: number, value: number): void {
  b.write(`${value.toString(8).padStart(width - 1, "0")}\u0000`, offset, width, "latin1");
}

/** Printable ASCII only (so one byte per character) and at most `max` bytes. */
function fitsUstar(text: string, max: number): boolean {
  return text.length <= max && /^[\x20-\x7e]*$/.test(text);
}

/** ustar's long names: a folder part (≤ 155 bytes) and a name (≤ 100), split at a `/`. */
function splitPrefix(path: string): [string, string] | undefined {
  if (!fitsUstar(path, 256)) return undefined;
  // The first `/` that leaves a name of at most 100 bytes: the shortest folder part possible.
  const i = path.indexOf("/", Math.max(1, path.length - 101));
  if (i < 0 || i > 155 || i === path.length - 1) return undefined;
  return [path.slice(0, i), path.slice(i + 1)];
}

/** What a reader without pax support sees: the name with other characters as `_`, truncated. */
function asciiFallback(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "_").slice(0, 100);
}

/** `<length> <key>=<value>\n`, the length counting the whole record, its own digits included. */
function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  const bytes = Buffer.byteLength(rest, "utf8");
  // Adding the digits may add a digit (98 + 2 = 100): a second round settles it.
  const length = bytes + String(bytes + String(bytes).length).length;
  return `${length}${rest}`;
}
