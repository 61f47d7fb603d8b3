/**
 * Hostile archives as data: one line per case (name, the archive's members, the limits it runs
 * with, the refusal code safe_extract.py must print and, where useful, a message it must carry).
 * The link cases come from test/fixtures/link-rules.json, which the CLI's checks run too.
 */
import { EXTRACT_LIMITS, type ExtractLimits } from "../../src/core/extractLimits.js";
import { LINK_CASES } from "../fixtures/linkRules.js";
import { paxRecords, type TarEntry } from "./helpers.js";

export interface HostileCase {
  name: string;
  entries: () => TarEntry[];
  limits?: Partial<ExtractLimits>;
  /** The code of `refused: <code>: …`; undefined: the archive is accepted. */
  refusal: string | undefined;
  message?: RegExp;
}

const GiB = 1024 ** 3;
const file = (name: string, content: string | Buffer = "x"): TarEntry => ({ name, content });
const pax = (type: "pax" | "globalpax", records: Record<string, string>): TarEntry => ({
  name: "././@PaxHeader",
  type,
  content: paxRecords(records),
});
/** A header claiming `size` bytes of data with only a little of it there (1 MiB of "a"). */
const claims = (type: TarEntry["type"], size: number): TarEntry => ({
  name: "././@LongLink",
  type,
  size,
  content: Buffer.alloc(1 << 20, 0x61),
});

export const HOSTILE_ARCHIVES: readonly HostileCase[] = [
  { name: "path traversal", entries: () => [file("../evil.txt")], refusal: "path-traversal" },
  { name: "nested traversal", entries: () => [file("a/../../evil.txt")], refusal: "path-traversal" },
  { name: "absolute path", entries: () => [file("/tmp/evil.txt")], refusal: "absolute-path" },
  { name: "drive-letter path", entries: () => [file("C:/evil.txt")], refusal: "absolute-path" },
  {
    name: "NUL in a pax path",
    entries: () => [pax("pax", { path: "a\0b" }), file("x")],
    refusal: "nul-byte",
  },
  { name: "a file naming the root", entries: () => [file("./")], refusal: "archive-root" },
  { name: "device file", entries: () => [{ name: "dev", type: "chardev" }], refusal: "device" },
  { name: "block device", entries: () => [{ name: "disk", type: "blockdev" }], refusal: "device" },
  { name: "fifo", entries: () => [{ name: "pipe", type: "fifo" }], refusal: "fifo" },
  { name: "GNU volume header", entries: () => [{ name: "vol", type: "volume" }], refusal: "type" },
  { name: "old GNU sparse file", entries: () => [{ name: "s", type: "sparse", size: 0 }], refusal: "sparse" },
  {
    name: "pax sparse file (format 1.0)",
    entries: () => [
      pax("pax", { "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s" }),
      file("s", `${"1".repeat(12)}\n`),
    ],
    refusal: "sparse",
  },
  {
    name: "pax sparse file (format 0.1)",
    entries: () => [pax("pax", { "GNU.sparse.map": "0,1", "GNU.sparse.size": "1" }), file("s")],
    refusal: "sparse",
  },
  {
    name: "folder replacing a file",
    entries: () => [file("f"), { name: "f/", type: "dir" }],
    refusal: "through-link",
  },
  {
    name: "gzip bomb (declared size)",
    entries: () => [file("zeros", Buffer.alloc(8 << 20))],
    limits: { maxBytes: 1 << 20 },
    refusal: "too-many-bytes",
    message: /more than 1048576 bytes/,
  },
  {
    name: "too many bytes over several files",
    entries: () => Array.from({ length: 5 }, (_, i) => file(`f${i}`, Buffer.alloc(300 << 10))),
    limits: { maxBytes: 1 << 20 },
    refusal: "too-many-bytes",
  },
  {
    name: "GNU long-name header bomb (claims 1 GiB)",
    entries: () => [claims("longname", GiB)],
    refusal: "header-too-large",
    message: /GNU long name header of 1073741824 bytes/,
  },
  {
    name: "GNU long-link header bomb",
    entries: () => [claims("longlink", GiB)],
    refusal: "header-too-large",
  },
  { name: "pax header bomb", entries: () => [claims("pax", GiB)], refusal: "header-too-large" },
  { name: "global pax header bomb", entries: () => [claims("globalpax", GiB)], refusal: "header-too-large" },
  {
    name: "long-name header of 8 MiB",
    entries: () => [{ name: "././@LongLink", type: "longname", content: Buffer.alloc(8 << 20, 0x61) }],
    refusal: "header-too-large",
  },
  {
    name: "a run of extension headers",
    entries: () => [...Array.from({ length: 2000 }, () => pax("pax", { comment: "x" })), file("f")],
    refusal: "too-many-headers",
  },
  {
    name: "too many files",
    entries: () => Array.from({ length: 30 }, (_, i) => file(`f${i}`, "")),
    limits: { maxFiles: 20 },
    refusal: "too-many-files",
    message: /more than 20 members/,
  },
  {
    name: "a single file too large (declared)",
    entries: () => [file("big", Buffer.alloc(5000))],
    limits: { maxFileBytes: 4096 },
    refusal: "file-too-large",
  },
  {
    name: "a path too long (long-name header)",
    entries: () => [
      { name: "././@LongLink", type: "longname", content: `${"d/".repeat(600)}f\0` },
      file("x"),
    ],
    refusal: "path-too-long",
  },
  {
    name: "a path longer than a lowered limit",
    entries: () => [file(`${"a".repeat(70)}.rs`)],
    limits: { maxPathBytes: 64 },
    refusal: "path-too-long",
  },
  {
    name: "the disk has less free space than the limit",
    entries: () => [file("f")],
    limits: { maxBytes: 9_000_000_000_000 },
    refusal: "disk-space",
    message: /bytes free, less than the extraction limit of 9000000000000/,
  },
  ...LINK_CASES.map((c): HostileCase => ({
    name: c.name,
    entries: () => c.entries.map((e) => (e.type === "file" ? file(e.name) : { ...e })),
    limits: c.limits,
    refusal: c.refusal,
  })),
];

/** The limits as safe_extract.py's environment. */
export function limitEnv(limits: Partial<ExtractLimits> = {}): Record<string, string> {
  return Object.fromEntries(
    EXTRACT_LIMITS.filter((limit) => limits[limit.key] !== undefined).map((limit) => [
      limit.variable,
      String(limits[limit.key]),
    ]),
  );
}
