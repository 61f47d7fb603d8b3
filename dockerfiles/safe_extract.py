#!/usr/bin/env python3
"""Safely extract a gzip'd tar archive from an untrusted client, or materialize a tree from a
content-addressed source plan.

Usage: safe_extract.py ARCHIVE DEST_DIR   (DEST_DIR must not exist yet)
       safe_extract.py --plan PLAN --cache CACHE_DIR --digest sha256:<hex> DEST_DIR
       safe_extract.py --limits            (prints the limits in force, as JSON)
       safe_extract.py --cache-limit       (prints the content cache's bound in bytes)
Plan mode (src/core/sourceManifest.ts SourcePlan): the plan's manifest must hash to --digest and
meet the same rules as an archive's members (and src/core/sourceManifest.ts checkManifest's);
contents missing from CACHE_DIR are fetched from the packs the plan names (only those packs, each
read no further than needed, every content's sha256 checked), and the tree is copied from the
cache into DEST_DIR through the same checks as extraction. Also read in plan mode:
  FASTBUILD_SOURCE_MAX_BYTES         compressed bytes the packs may bring (required; build.sh sends it)
  FASTBUILD_CONTENT_CACHE_MAX_BYTES  the cache's bound after the build (default 8 GiB; least
                                     recently used entries go first, never this build's)
Limits (environment; the orchestration sets every one on every build from the app's settings,
src/core/extractLimits.ts, whose defaults these are):
  FASTBUILD_EXTRACT_MAX_BYTES       file bytes in all (default 2 GiB; the disk must have them free)
  FASTBUILD_EXTRACT_MAX_FILES       members (default 200000)
  FASTBUILD_EXTRACT_MAX_FILE_BYTES  bytes of one file (default 512 MiB)
  FASTBUILD_EXTRACT_MAX_PATH_BYTES  bytes of a member's path or a link's target (default 1024)
  FASTBUILD_EXTRACT_MAX_LINKS       symlinks + hardlinks (default 10000; 0 = none allowed)
  FASTBUILD_EXTRACT_MAX_LINK_DEPTH  symlinks followed to resolve one (default 40, Linux's own bound)
Exit codes: 0 extracted; 3 refused (the archive or plan is unsafe or too big, or the disk too small:
`refused: <code>: <reason>` on stderr); 4 (plan mode) a pack could not be fetched (`failed:
<reason>`); 2 usage; 1 unexpected error (`failed: <reason>`). On every
exit but 0, DEST_DIR is removed (SIGTERM included), so nothing half-extracted is ever built.

Why our own checks rather than tarfile's filter="data": that filter exists only on Python >= 3.12
(and late patch releases), while the builder VM's python3 may be older; and it checks neither
limits (member count, total bytes, decompressed stream size, header sizes) nor links created
through earlier symlinks. Here every member is checked while streaming, before any byte of it is
written:
  * names: relative, no `..`, no NUL, no backslash tricks, not the archive root itself, bounded;
  * types: regular files, directories, symlinks and hardlinks only (no devices, fifos, sockets,
    sparse files: a sparse map is read whole into memory, its size set by the archive);
  * headers: GNU long names/links and pax records are read whole into memory by tarfile, so each
    one's size is checked before it is read (BoundedTarInfo), and so is their number per member;
  * symlinks: the target must stay inside, checked lexically now and, at the end, resolved through
    the tree's own links (iteratively, at most MAX_LINK_DEPTH links per resolution), so chains of
    in-tree links such as `a -> .` + `b -> a/..` are caught, in time linear in the links;
  * hardlinks: must name a regular file extracted earlier from this archive;
  * nothing is ever written through a symlink: every parent folder is checked with lstat;
  * bytes are counted as they are written (per file and in all), and the gzip stream itself is
    counted, so a bomb stops at the limit, not at the disk's end; the disk must have the whole
    limit free before anything is written;
  * modes are reduced to rwx for the owner and r-x for others; no owners, no setuid; mtimes are
    NOT restored: the builder keeps cargo's target folder between builds and cargo decides
    freshness by mtime, so restored (e.g. zeroed, deterministic) mtimes could make cargo keep a
    stale binary.
The link rules are the CLI's too (src/cli/archive.ts refuses such a tree before uploading it);
test/fixtures/link-rules.json is the one table of cases both are tested with.
"""

import concurrent.futures
import errno
import gzip
import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import signal
import stat
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import zlib

REFUSED = 3
CHUNK = 1 << 20
# Our own archives' extension headers hold a path, a link target and an mtime: a few KB at most.
MAX_HEADER_BYTES = 64 << 10
# Extension headers before one member (pax, global pax, long name, long link): tarfile handles each
# by recursing into the next header, so an unbounded run of them is a RecursionError.
MAX_EXTENSION_HEADERS = 8

WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:/")

# (variable, key, default, smallest value)
LIMITS = (
    ("FASTBUILD_EXTRACT_MAX_BYTES", "maxBytes", 2 << 30, 1),
    ("FASTBUILD_EXTRACT_MAX_FILES", "maxFiles", 200000, 1),
    ("FASTBUILD_EXTRACT_MAX_FILE_BYTES", "maxFileBytes", 512 << 20, 1),
    ("FASTBUILD_EXTRACT_MAX_PATH_BYTES", "maxPathBytes", 1024, 1),
    ("FASTBUILD_EXTRACT_MAX_LINKS", "maxLinks", 10000, 0),
    ("FASTBUILD_EXTRACT_MAX_LINK_DEPTH", "maxLinkDepth", 40, 1),
)


class Refused(Exception):
    """The archive is refused; `code` is the stable name tests and the result line use."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def show(text):
    """A member name for a message: quoted, control characters escaped, long ones shortened
    (the reason ends up in build.sh's result line, which is bounded)."""
    quoted = repr(text)
    return quoted if len(quoted) <= 80 else quoted[:60] + "..." + quoted[-12:]


class CountingReader:
    """Wraps the decompressed stream and refuses to read past `limit` bytes."""

    def __init__(self, raw, limit):
        self.raw = raw
        self.limit = limit
        self.count = 0

    def read(self, size=-1):
        data = self.raw.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise Refused(
                "decompression-bomb",
                "archive expands beyond %d bytes (decompression bomb?)" % self.limit,
            )
        return data


EXTENSION_HEADERS = {
    tarfile.GNUTYPE_LONGNAME: "GNU long name",
    tarfile.GNUTYPE_LONGLINK: "GNU long link name",
    tarfile.XHDTYPE: "pax",
    tarfile.XGLTYPE: "global pax",
    tarfile.SOLARIS_XHDTYPE: "Solaris pax",
}


class BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a long name, long link name or pax header whole (`fileobj.read(size)`), with
    the size the archive declares: bound it before that read. The hooks are tarfile's per-type
    handlers (the same names on 3.8-3.13); the hostile-archive tests catch any rename."""

    def _proc_member(self, tar):
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise Refused("sparse", "sparse file %s is not allowed" % show(self.name))
        kind = EXTENSION_HEADERS.get(self.type)
        if kind is None:
            return super()._proc_member(tar)
        if self.size > MAX_HEADER_BYTES:
            raise Refused(
                "header-too-large",
                "a %s header of %d bytes (at most %d)" % (kind, self.size, MAX_HEADER_BYTES),
            )
        depth = getattr(tar, "fastbuild_headers", 0) + 1
        if depth > MAX_EXTENSION_HEADERS:
            raise Refused(
                "too-many-headers",
                "more than %d extension headers before one member" % MAX_EXTENSION_HEADERS,
            )
        tar.fastbuild_headers = depth
        try:
            return super()._proc_member(tar)
        finally:
            tar.fastbuild_headers = depth - 1

    def _refuse_sparse(self, *_args):
        raise Refused("sparse", "sparse files are not allowed (pax GNU.sparse header)")

    # pax sparse formats 0.0, 0.1 and 1.0: maps whose size the archive sets, read into memory.
    _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _refuse_sparse


def read_limits():
    limits = {}
    for name, key, default, smallest in LIMITS:
        value = os.environ.get(name, "")
        if value == "":
            limits[key] = default
        elif value.isdigit() and int(value) >= smallest:
            limits[key] = int(value)
        else:
            print("safe_extract: %s must be a whole number >= %d" % (name, smallest), file=sys.stderr)
            sys.exit(2)
    return limits


def clean_name(name, limits):
    """The member name as a normalised relative POSIX path, or raise Refused."""
    if "\x00" in name:
        raise Refused("nul-byte", "member name contains a NUL byte")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise Refused("absolute-path", "absolute path %s" % show(name))
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise Refused("path-traversal", "path traversal in %s" % show(name))
    rel = "/".join(parts)
    check_length(rel, "path", limits)
    return rel


def check_length(text, what, limits):
    size = len(text.encode("utf-8", "surrogateescape"))
    if size > limits["maxPathBytes"]:
        raise Refused(
            "path-too-long",
            "%s %s is %d bytes long (at most %d)" % (what, show(text), size, limits["maxPathBytes"]),
        )


def resolve_link(symlinks, rel, max_depth):
    """Follows symlink `rel` through the tree's own links, one component at a time, without
    recursion: refuses a step above the root or more than `max_depth` links. A component the tree
    does not have is taken as it reads (stricter than the kernel, which would stop there)."""
    resolved = rel.split("/")[:-1]
    pending = list(reversed(symlinks[rel].split("/")))
    hops = 1
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise Refused("symlink-escape", "symlink %s resolves outside the archive" % show(rel))
            resolved.pop()
            continue
        resolved.append(part)
        target = symlinks.get("/".join(resolved))
        if target is not None:
            hops += 1
            if hops > max_depth:
                raise Refused(
                    "link-chain",
                    "symlink %s goes through more than %d links" % (show(rel), max_depth),
                )
            resolved.pop()
            pending.extend(reversed(target.split("/")))


def check_symlink(rel, link, limits):
    """One symlink's own target, read lexically from the link's folder (src/core/linkRules.ts
    checkSymlink): relative, bounded, inside the tree. Backslashes read as `/` and a drive letter
    as absolute, as the CLI reads them (stricter than Linux, which takes both as plain characters)."""
    normalised = link.replace("\\", "/")
    if "\x00" in link or normalised.startswith("/") or WINDOWS_ABSOLUTE.match(normalised):
        raise Refused("absolute-symlink", "symlink %s points to an absolute path %s" % (show(rel), show(link)))
    check_length(link, "symlink target", limits)
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), normalised))
    if resolved == ".." or resolved.startswith("../"):
        raise Refused("symlink-escape", "symlink %s points outside the archive (%s)" % (show(rel), show(link)))


def check_free_space(folder, needed, what=None):
    info = os.statvfs(folder)
    free = info.f_bavail * info.f_frsize
    if free < needed:
        raise Refused(
            "disk-space",
            "the builder's work folder has %d bytes free, less than %s: free space on the builder%s"
            % (
                free,
                what or "the extraction limit of %d" % needed,
                "" if what else " or lower FASTBUILD_EXTRACT_MAX_BYTES_FACTOR",
            ),
        )


class Extraction:
    def __init__(self, dest, limits):
        self.dest = dest
        self.limits = limits
        self.members = 0
        self.bytes = 0
        self.links = 0
        # The tree's symlinks as they stand (a later member of the same name replaces one).
        self.symlinks = {}
        self.regular = set()
        # Folders already verified to be real folders. Safe to remember: a folder is never replaced
        # (remove_existing refuses), so one checked once stays a folder. Saves an lstat per level.
        self.known_dirs = set()

    def check_parents(self, rel):
        """Creates missing parent folders; refuses when any existing parent is not a real folder."""
        current = self.dest
        for part in rel.split("/")[:-1]:
            current = os.path.join(current, part)
            if current in self.known_dirs:
                continue
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current, 0o755)
                self.known_dirs.add(current)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise Refused(
                    "through-link", "%s goes through a symlink or file (%s)" % (show(rel), show(part))
                )
            self.known_dirs.add(current)

    def replace(self, rel, target):
        """A later member replaces an earlier one of the same name, as tar does; never follows links."""
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise Refused("replaces-folder", "%s replaces a folder" % show(rel))
        os.unlink(target)
        self.symlinks.pop(rel, None)
        self.regular.discard(rel)

    def count_link(self):
        self.links += 1
        if self.links > self.limits["maxLinks"]:
            raise Refused("too-many-links", "archive has more than %d links" % self.limits["maxLinks"])

    def add(self, tar, member):
        self.members += 1
        if self.members > self.limits["maxFiles"]:
            raise Refused("too-many-files", "archive has more than %d members" % self.limits["maxFiles"])
        rel = clean_name(member.name, self.limits)
        if rel == "":
            if member.isdir():
                return
            raise Refused("archive-root", "member %s names the archive root" % show(member.name))
        target = os.path.join(self.dest, rel)
        if member.issparse():
            raise Refused("sparse", "sparse file %s is not allowed" % show(rel))
        if member.isdir():
            self.check_parents(rel + "/x")
            if not os.path.lexists(target):
                os.mkdir(target, 0o755)
            elif not os.path.isdir(target) or os.path.islink(target):
                raise Refused("folder-replaces", "folder %s replaces a file or link" % show(rel))
        elif member.isreg():
            self.add_file(tar, member, rel, target)
        elif member.issym():
            self.add_symlink(member.linkname, rel, target)
        elif member.islnk():
            self.add_hardlink(member.linkname, rel, target)
        else:
            kind = (
                "device file" if member.ischr() or member.isblk()
                else "fifo" if member.isfifo()
                else "unsupported member type %r" % member.type
            )
            code = "device" if member.ischr() or member.isblk() else "fifo" if member.isfifo() else "type"
            raise Refused(code, "%s %s is not allowed" % (kind, show(rel)))

    def add_file(self, tar, member, rel, target):
        self.write_file(rel, target, tar.extractfile(member), member.mode & 0o111, member.size)

    def write_file(self, rel, target, source, executable, declared, digest=None):
        """Writes `source` (a file object) as regular file `rel`, never through a link, counting
        its bytes against the limits; `digest` (a hashlib object), when given, sees every byte."""
        limits = self.limits
        # The declared size refuses early; the count below holds whatever the headers claim.
        if declared > limits["maxFileBytes"]:
            raise Refused("file-too-large", self.too_large(rel))
        if self.bytes + declared > limits["maxBytes"]:
            raise Refused("too-many-bytes", "archive holds more than %d bytes" % limits["maxBytes"])
        self.check_parents(rel)
        self.replace(rel, target)
        mode = 0o755 if executable else 0o644
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        written = 0
        with os.fdopen(os.open(target, flags, mode), "wb") as out:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                self.bytes += len(chunk)
                if written > limits["maxFileBytes"]:
                    raise Refused("file-too-large", self.too_large(rel))
                if self.bytes > limits["maxBytes"]:
                    raise Refused("too-many-bytes", "archive holds more than %d bytes" % limits["maxBytes"])
                if digest is not None:
                    digest.update(chunk)
                out.write(chunk)
        self.regular.add(rel)
        return written

    def too_large(self, rel):
        return "file %s is larger than %d bytes" % (show(rel), self.limits["maxFileBytes"])

    def add_symlink(self, link, rel, target):
        self.count_link()
        check_symlink(rel, link, self.limits)
        self.check_parents(rel)
        self.replace(rel, target)
        os.symlink(link, target)
        self.symlinks[rel] = link

    def add_hardlink(self, link, rel, target):
        self.count_link()
        linked = clean_name(link, self.limits)
        if linked not in self.regular:
            raise Refused(
                "hardlink-target",
                "hardlink %s must point to a file extracted earlier, not %s" % (show(rel), show(link)),
            )
        self.check_parents(rel)
        source = os.path.join(self.dest, linked)
        if not stat.S_ISREG(os.lstat(source).st_mode):
            raise Refused("hardlink-target", "hardlink %s points to a non-file" % show(rel))
        self.replace(rel, target)
        os.link(source, target, follow_symlinks=False)
        self.regular.add(rel)

    def check_links(self):
        # Lexical checks at creation cannot see later members: resolve every link in the final tree.
        for rel in self.symlinks:
            resolve_link(self.symlinks, rel, self.limits["maxLinkDepth"])


def extract(archive, dest, limits):
    with open(archive, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            raise Refused("not-gzip", "not a gzip'd tar archive")
        raw.seek(0)
        # Each member adds at most a 512-byte header and 511 bytes of padding to its data, plus its
        # bounded extension headers; the end blocks add a little more. Beyond that: a bomb.
        slack = 1024 * limits["maxFiles"] + (1 << 20)
        stream = CountingReader(gzip.GzipFile(fileobj=raw), limits["maxBytes"] + slack)
        state = Extraction(dest, limits)
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo) as tar:
            for member in tar:
                state.add(tar, member)
        state.check_links()
        return state.members, state.bytes


# ---------------------------------------------------------------- content-addressed source (--plan)
# The plan (src/core/sourceManifest.ts SourcePlan) names the tree by its manifest and says where
# each content is: in which pack (gzip of concatenated contents), at which offset of its output.
# The builder keeps contents it fetched in a cache (<cache>/<sha256 hex>), so a build fetches only
# the packs holding what the cache lacks. The manifest meets the extraction rules (the same
# functions as an archive's members) before anything is fetched, and the tree is written through
# the Extraction class, so a manifest can no more write outside DEST_DIR than an archive can.

HEX64 = re.compile(r"^[0-9a-f]{64}$")
URL_CHARS = re.compile(r'^https?://[^\s"\\]+$')
# build.sh's rule for its own URLs: https, or plain http to a loopback test server only.
LOOPBACK_HTTP = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?/")
# Pack downloads: at most FETCH_THREADS at a time (packs are about 4 MiB, and a few parallel
# streams fill the VM's link without many requests to the store); ATTEMPTS per pack, BACKOFF
# seconds doubling between them, for the transient failures a blob store answers (5xx, 408, 429,
# resets, timeouts). A 4xx other than those (an expired or wrong SAS) does not get better by retrying.
FETCH_THREADS = 4
ATTEMPTS = 3
BACKOFF = 1.0
TIMEOUT_SECONDS = 60
# Exit code of a fetch that failed (the store could not be read): build.sh reports a download
# failure, not a refused source.
FETCH_FAILED = 4
# Temporary cache files older than this are a killed build's leftovers.
STALE_TEMP_SECONDS = 24 * 3600
# (variable, default, smallest): the cache's bound; src/core/extractLimits.ts CONTENT_CACHE_LIMIT
# holds the same default (a test compares).
CACHE_LIMIT = ("FASTBUILD_CONTENT_CACHE_MAX_BYTES", 8 << 30, 0)
# Compressed bytes fetched per build: build.sh sends its source size limit (one definition there).
DOWNLOAD_LIMIT_VARIABLE = "FASTBUILD_SOURCE_MAX_BYTES"


class FetchFailed(Exception):
    """The store could not be read (after retries where retrying helps)."""


class Transient(Exception):
    """A failure worth another attempt."""


class Stopped(Exception):
    """Another pack's fetch failed: this one stops too."""


def read_number(name, default, smallest):
    value = os.environ.get(name, "")
    if value == "" and default is not None:
        return default
    if value.isdigit() and int(value) >= smallest:
        return int(value)
    print("safe_extract: %s must be a whole number >= %d" % (name, smallest), file=sys.stderr)
    sys.exit(2)


def strict_json(text):
    """JSON with no duplicate keys and no NaN/Infinity (JavaScript's parser would read either
    differently, and the manifest's meaning must be the one its digest was taken of)."""

    def pairs(items):
        result = {}
        for key, value in items:
            if key in result:
                raise ValueError("duplicate key %r" % key)
            result[key] = value
        return result

    def constant(name):
        raise ValueError("%s is not JSON" % name)

    return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_text(value):
    return isinstance(value, str) and value != ""


def check_source_url(url, what):
    if not isinstance(url, str) or not URL_CHARS.match(url):
        raise Refused("bad-url", "%s is not an http(s) URL without spaces, quotes or backslashes" % what)
    if not (url.startswith("https://") or LOOPBACK_HTTP.match(url)):
        raise Refused("bad-url", "%s must use https (plain http is accepted for loopback only)" % what)


def read_plan(path, digest):
    """The plan file, its shape checked, and the manifest text it carries checked against DIGEST."""
    try:
        with open(path, "rb") as f:
            plan = strict_json(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise Refused("bad-plan", "the source plan is not JSON (%s)" % error)
    if (
        not isinstance(plan, dict)
        or set(plan) != {"version", "sourceDigest", "manifest", "packs"}
        or plan["version"] != 1
        or isinstance(plan["version"], bool)
        or not isinstance(plan["manifest"], str)
        or not isinstance(plan["sourceDigest"], str)
        or not isinstance(plan["packs"], list)
    ):
        raise Refused("bad-plan", "the source plan is not a version 1 plan {version, sourceDigest, manifest, packs}")
    for number, pack in enumerate(plan["packs"], 1):
        if not isinstance(pack, dict) or set(pack) != {"url", "contents"}:
            raise Refused("bad-plan", "pack %d of the plan is not {url, contents}" % number)
        check_source_url(pack["url"], "pack %d's URL" % number)
        contents = pack["contents"]
        if not isinstance(contents, list) or not contents:
            raise Refused("bad-plan", "pack %d of the plan lists no contents" % number)
        end = 0
        for content in contents:
            if (
                not isinstance(content, dict)
                or set(content) != {"sha256", "size", "offset"}
                or not isinstance(content["sha256"], str)
                or not HEX64.match(content["sha256"])
                or not is_count(content["size"])
                or not is_count(content["offset"])
            ):
                raise Refused("bad-plan", "pack %d lists a content that is not {sha256, size, offset}" % number)
            if content["offset"] < end:
                raise Refused("bad-plan", "pack %d lists overlapping or unordered contents" % number)
            end = content["offset"] + content["size"]
    if plan["sourceDigest"] != digest:
        raise Refused("digest-mismatch", "the plan is for source %s, not %s" % (show(plan["sourceDigest"]), digest))
    try:
        actual = "sha256:" + hashlib.sha256(plan["manifest"].encode("utf-8")).hexdigest()
    except UnicodeEncodeError:
        raise Refused("bad-plan", "the plan's manifest is not valid UTF-8 text")
    if actual != digest:
        raise Refused("digest-mismatch", "the plan's manifest has digest %s, not %s" % (actual, digest))
    return plan


FILE_KEYS = {"path", "type", "size", "sha256", "executable"}
LINK_KEYS = {"path", "type", "target"}


def read_manifest(text, limits):
    """The manifest's entries, after the shape and every rule of check_manifest."""
    try:
        manifest = strict_json(text)
    except ValueError as error:
        raise Refused("bad-manifest", "the manifest is not JSON (%s)" % error)
    if (
        not isinstance(manifest, dict)
        or set(manifest) != {"version", "entries"}
        or manifest["version"] != 1
        or isinstance(manifest["version"], bool)
        or not isinstance(manifest["entries"], list)
        or not manifest["entries"]
    ):
        raise Refused("bad-manifest", "the manifest is not a version 1 manifest with entries")
    for number, entry in enumerate(manifest["entries"], 1):
        kind = entry.get("type") if isinstance(entry, dict) else None
        good = (
            kind == "file"
            and set(entry) == FILE_KEYS
            and is_text(entry["path"])
            and is_count(entry["size"])
            and isinstance(entry["sha256"], str)
            and HEX64.match(entry["sha256"])
            and isinstance(entry["executable"], bool)
        ) or (kind == "symlink" and set(entry) == LINK_KEYS and is_text(entry["path"]) and is_text(entry["target"]))
        if not good:
            raise Refused("bad-manifest", "manifest entry %d is neither a file nor a symlink entry" % number)
    return manifest["entries"], check_manifest(manifest["entries"], limits)


def check_manifest(entries, limits):
    """src/core/sourceManifest.ts checkManifest, with the extractor's own functions: clean paths
    (a path must be what clean_name makes of it), strictly increasing byte order, the limits,
    nothing under a file or a symlink, and the link rules. Returns the tree's file bytes."""
    if len(entries) > limits["maxFiles"]:
        raise Refused(
            "too-many-files", "the manifest has %d entries, more than %d" % (len(entries), limits["maxFiles"])
        )
    previous = None
    total = 0
    # Targets as the CLI reads them (check_symlink): `\` is `/`.
    links = {}
    for entry in entries:
        rel = entry["path"]
        try:
            key = rel.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused("bad-path", "path %s is not valid UTF-8" % show(rel))
        if clean_name(rel, limits) != rel:
            raise Refused("unclean-path", "path %s is not clean (no empty or . parts, no backslash)" % show(rel))
        if previous is not None and key <= previous:
            raise Refused("manifest-order", "path %s is out of order: entries must be unique and in byte order" % show(rel))
        previous = key
        if entry["type"] == "file":
            if entry["size"] > limits["maxFileBytes"]:
                raise Refused("file-too-large", "file %s is larger than %d bytes" % (show(rel), limits["maxFileBytes"]))
            total += entry["size"]
            if total > limits["maxBytes"]:
                raise Refused("too-many-bytes", "the tree holds more than %d bytes" % limits["maxBytes"])
        else:
            if len(links) + 1 > limits["maxLinks"]:
                raise Refused("too-many-links", "the tree has more than %d links" % limits["maxLinks"])
            check_symlink(rel, entry["target"], limits)
            links[rel] = entry["target"].replace("\\", "/")
    names = set(entry["path"] for entry in entries)
    for entry in entries:
        parts = entry["path"].split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in names:
                raise Refused(
                    "through-link", "%s goes through a symlink or file (%s)" % (show(entry["path"]), show(parent))
                )
    for rel in links:
        resolve_link(links, rel, limits["maxLinkDepth"])
    return total


def locate(plan, sizes, limits):
    """Content sha256 -> (pack number, the plan's content record), the first pack listing it."""
    located = {}
    for number, pack in enumerate(plan["packs"], 1):
        for content in pack["contents"]:
            sha = content["sha256"]
            # A pack holds the contents of one accepted tree, which the extraction limit bounds: so
            # does what is decompressed to reach a content.
            if content["offset"] + content["size"] > limits["maxBytes"]:
                raise Refused("bad-plan", "pack %d lists a content beyond %d bytes" % (number, limits["maxBytes"]))
            if sha in sizes and sizes[sha] != content["size"]:
                raise Refused(
                    "bad-plan",
                    "pack %d lists content %s with %d bytes; the manifest says %d"
                    % (number, sha[:12], content["size"], sizes[sha]),
                )
            located.setdefault(sha, (number, content))
    for sha in sizes:
        if sha not in located:
            raise Refused("bad-plan", "the plan does not say where content %s is" % sha[:12])
    return located


class ContentCache:
    """<folder>/<sha256 hex>: contents verified when written (temp file + rename) and again each
    time they are copied; last use is the file's mtime (for eviction)."""

    def __init__(self, folder):
        self.folder = folder
        os.makedirs(folder, 0o755, exist_ok=True)
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            raise Refused("cache-folder", "the content cache %s is not a folder" % show(folder))

    def path(self, sha):
        return os.path.join(self.folder, sha)

    def has(self, sha, size):
        """Whether the cache holds a file of the right size for `sha` (a wrong one is dropped)."""
        try:
            st = os.lstat(self.path(sha))
        except FileNotFoundError:
            return False
        if stat.S_ISREG(st.st_mode) and st.st_size == size:
            return True
        self.drop(sha)
        return False

    def drop(self, sha):
        path = self.path(sha)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def open(self, sha):
        return os.fdopen(os.open(self.path(sha), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")

    def temporary(self):
        return tempfile.mkstemp(prefix=".tmp-", dir=self.folder)

    def touch(self, shas):
        for sha in shas:
            try:
                os.utime(self.path(sha))
            except FileNotFoundError:
                pass

    def evict(self, bound, keep):
        """Drops the least recently used entries until the cache holds at most `bound` bytes,
        never one in `keep` (this build's). Returns (bytes held, entries evicted)."""
        now = time.time()
        held = []
        for item in os.scandir(self.folder):
            st = item.stat(follow_symlinks=False)
            if item.name.startswith(".tmp-"):
                if now - st.st_mtime > STALE_TEMP_SECONDS:
                    os.unlink(item.path)
            elif HEX64.match(item.name) and stat.S_ISREG(st.st_mode):
                held.append((st.st_mtime, item.name, st.st_size))
        total = sum(size for _, _, size in held)
        evicted = 0
        for _, name, size in sorted(held):
            if total <= bound:
                break
            if name in keep:
                continue
            os.unlink(os.path.join(self.folder, name))
            total -= size
            evicted += 1
        return total, evicted


class PackStream:
    """A pack's decompressed bytes, read as far as asked and no further."""

    def __init__(self, response, fetcher, attempt):
        self.response = response
        self.fetcher = fetcher
        self.attempt = attempt
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.buffer = b""
        self.position = 0
        self.ended = False

    def fill(self):
        while not self.buffer:
            if self.ended:
                return False
            data = self.inflater.unconsumed_tail
            if not data:
                if self.fetcher.stop.is_set():
                    raise Stopped()
                try:
                    data = self.response.read(CHUNK)
                except (OSError, http.client.HTTPException) as error:
                    raise Transient("the download broke off (%s)" % (error or type(error).__name__))
                if not data:
                    self.ended = True
                    self.buffer = self.inflater.flush()
                    continue
                self.fetcher.count(len(data), self.attempt)
            try:
                # Bounded output per call: a small input may inflate a lot.
                self.buffer = self.inflater.decompress(data, CHUNK)
            except zlib.error as error:
                raise Refused("damaged-pack", "a pack is not a gzip stream (%s)" % error)
            if self.inflater.eof:
                self.ended = True
        return True

    def read(self, size):
        if not self.buffer and not self.fill():
            return b""
        chunk = self.buffer[:size]
        self.buffer = self.buffer[size:]
        self.position += len(chunk)
        return chunk

    def skip_to(self, offset):
        while self.position < offset:
            if not self.read(min(CHUNK, offset - self.position)):
                raise Refused("damaged-pack", "a pack ends at %d bytes, before offset %d" % (self.position, offset))


class Fetcher:
    def __init__(self, cache, max_bytes):
        self.cache = cache
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.stop = threading.Event()
        # Bytes of attempts that count against the limit (a failed attempt's are given back) and
        # bytes transferred in all (for the summary).
        self.counted = 0
        self.transferred = 0
        self.packs = 0
        self.contents = 0
        # No redirects: every URL the builder reads is one the plan names and the URL rule passed.
        self.opener = urllib.request.build_opener(NoRedirect)

    def count(self, size, attempt):
        with self.lock:
            self.counted += size
            self.transferred += size
            attempt[0] += size
            if self.counted > self.max_bytes:
                raise Refused(
                    "download-too-large",
                    "the packs to fetch hold more than %d bytes (FASTBUILD_SOURCE_MAX_BYTES)" % self.max_bytes,
                )

    def fetch(self, plan, located, shas):
        """Fetches the contents `shas` into the cache: only the packs holding them, each read up
        to the end of the last one it is fetched for."""
        wanted = {}
        for sha in shas:
            number, content = located[sha]
            wanted.setdefault(number, []).append(content)
        jobs = [(n, plan["packs"][n - 1]["url"], sorted(c, key=lambda c: c["offset"])) for n, c in sorted(wanted.items())]
        if not jobs:
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(jobs))) as pool:
            futures = [pool.submit(self.fetch_pack, *job) for job in jobs]
            try:
                for future in concurrent.futures.as_completed(futures):
                    future.result()
            except BaseException:
                self.stop.set()
                for future in futures:
                    future.cancel()
                raise

    def fetch_pack(self, number, url, contents):
        for attempt in range(1, ATTEMPTS + 1):
            remaining = [c for c in contents if not self.cache.has(c["sha256"], c["size"])]
            if not remaining or self.stop.is_set():
                return
            counted = [0]
            try:
                self.read_pack(number, url, remaining, counted)
                with self.lock:
                    self.packs += 1
                return
            except Transient as error:
                with self.lock:
                    self.counted -= counted[0]
                if attempt == ATTEMPTS:
                    raise FetchFailed("could not fetch pack %d of the plan: %s" % (number, error))
                print("pack %d: %s; trying again" % (number, error), file=sys.stderr)
                self.stop.wait(BACKOFF * 2 ** (attempt - 1))

    def read_pack(self, number, url, contents, counted):
        request = urllib.request.Request(url, headers={"User-Agent": "fast-build-builder"})
        try:
            response = self.opener.open(request, timeout=TIMEOUT_SECONDS)
        except urllib.error.HTTPError as error:
            if error.code in (408, 429) or error.code >= 500:
                raise Transient("HTTP %d" % error.code)
            raise FetchFailed(
                "could not fetch pack %d of the plan (HTTP %d): has the plan's read SAS expired?" % (number, error.code)
            )
        except (OSError, http.client.HTTPException) as error:
            raise Transient("no answer (%s)" % (getattr(error, "reason", None) or error or type(error).__name__))
        with response:
            stream = PackStream(response, self, counted)
            for content in contents:
                stream.skip_to(content["offset"])
                self.take(number, stream, content)

    def take(self, number, stream, content):
        sha, size = content["sha256"], content["size"]
        fd, temporary = self.cache.temporary()
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                left = size
                while left > 0:
                    chunk = stream.read(min(CHUNK, left))
                    if not chunk:
                        raise Refused(
                            "damaged-pack",
                            "pack %d ends before content %s (offset %d)" % (number, sha[:12], content["offset"]),
                        )
                    digest.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
            if digest.hexdigest() != sha:
                raise Refused(
                    "content-mismatch",
                    "pack %d's %d bytes at offset %d do not hash to %s: the store holds a damaged pack"
                    % (number, size, content["offset"], sha[:12]),
                )
            os.chmod(temporary, 0o644)
            os.rename(temporary, self.cache.path(sha))
            temporary = None
            with self.lock:
                self.contents += 1
        finally:
            if temporary is not None:
                os.unlink(temporary)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, "redirects are not followed", headers, fp)


def copy_files(state, cache, entries):
    """Writes the file entries from the cache through `state` (an Extraction: its checks, its
    limits), verifying each copy's bytes; returns the contents that no longer hash right (their
    copies removed) for fetching again."""
    bad = set()
    for entry in entries:
        rel, sha = entry["path"], entry["sha256"]
        if sha in bad:
            continue
        target = os.path.join(state.dest, rel)
        digest = hashlib.sha256()
        try:
            source = cache.open(sha)
        except FileNotFoundError:
            bad.add(sha)
            continue
        # Copies, never links into the cache: builds may change their tree.
        with source:
            written = state.write_file(rel, target, source, entry["executable"], entry["size"], digest)
        if written != entry["size"] or digest.hexdigest() != sha:
            os.unlink(target)
            state.bytes -= written
            state.regular.discard(rel)
            bad.add(sha)
    return bad


def materialize(plan_path, cache_folder, digest, dest, limits, max_download, cache_bound):
    plan = read_plan(plan_path, digest)
    entries, tree_bytes = read_manifest(plan["manifest"], limits)
    sizes = {}
    for entry in entries:
        if entry["type"] == "file":
            sizes.setdefault(entry["sha256"], entry["size"])
    located = locate(plan, sizes, limits)
    cache = ContentCache(cache_folder)
    missing = [sha for sha, size in sizes.items() if not cache.has(sha, size)]
    missing_bytes = sum(sizes[sha] for sha in missing)
    parent = os.path.dirname(os.path.abspath(dest))
    if os.stat(parent).st_dev == os.stat(cache_folder).st_dev:
        check_free_space(parent, tree_bytes + missing_bytes, "the %d bytes the tree and the contents to fetch need" % (tree_bytes + missing_bytes))
    else:
        check_free_space(parent, tree_bytes, "the %d bytes of the tree" % tree_bytes)
        check_free_space(cache_folder, missing_bytes, "the %d bytes of the contents to fetch" % missing_bytes)
    os.makedirs(dest, 0o755)
    fetcher = Fetcher(cache, max_download)
    fetcher.fetch(plan, located, missing)
    state = Extraction(dest, limits)
    files = [entry for entry in entries if entry["type"] == "file"]
    bad = copy_files(state, cache, files)
    if bad:
        # Cache entries damaged since they were written: fetched again (the plan says where).
        for sha in bad:
            cache.drop(sha)
        fetcher.fetch(plan, located, sorted(bad))
        again = copy_files(state, cache, [entry for entry in files if entry["sha256"] in bad])
        if again:
            raise Refused("cache-damaged", "contents fetched just now no longer hash right: the builder's disk is failing")
    for entry in entries:
        if entry["type"] == "symlink":
            state.add_symlink(entry["target"], entry["path"], os.path.join(dest, entry["path"]))
    state.check_links()
    cache.touch(sizes)
    held, evicted = cache.evict(cache_bound, set(sizes))
    fetched = len(set(missing) | bad)
    return (
        "source: %d files, %d symlinks, %d contents from the builder's cache, %d fetched (%d pack%s, %d bytes); "
        "the cache holds %d bytes (%d evicted)"
        % (
            len(files),
            len(entries) - len(files),
            len(sizes) - fetched,
            fetched,
            fetcher.packs,
            "" if fetcher.packs == 1 else "s",
            fetcher.transferred,
            held,
            evicted,
        )
    )


def terminate(_signum, _frame):
    # Run Command's timeout (or a cancel) ends the script: unwind so the folder is removed.
    sys.exit(143)


USAGE = (
    "usage: safe_extract.py ARCHIVE DEST_DIR\n"
    "       safe_extract.py --plan PLAN --cache CACHE_DIR --digest sha256:<hex> DEST_DIR\n"
    "       safe_extract.py --limits | --cache-limit"
)


def parse_plan_args(args):
    """--plan PLAN --cache DIR --digest D DEST (options in any order), or None."""
    options = {}
    rest = []
    while args:
        if args[0] in ("--plan", "--cache", "--digest") and len(args) > 1 and args[0] not in options:
            options[args[0]] = args[1]
            args = args[2:]
        else:
            rest.append(args[0])
            args = args[1:]
    if len(options) != 3 or len(rest) != 1 or not re.match(r"^sha256:[0-9a-f]{64}$", options["--digest"]):
        return None
    return options["--plan"], options["--cache"], options["--digest"], rest[0]


def main(argv):
    if argv[1:] == ["--limits"]:
        print(json.dumps(read_limits(), sort_keys=True))
        return 0
    if argv[1:] == ["--cache-limit"]:
        print(read_number(*CACHE_LIMIT))
        return 0
    plan_args = None
    if "--plan" in argv[1:]:
        plan_args = parse_plan_args(argv[1:])
        if plan_args is None:
            print(USAGE, file=sys.stderr)
            return 2
        dest = plan_args[3]
    elif len(argv) == 3:
        archive, dest = argv[1], argv[2]
    else:
        print(USAGE, file=sys.stderr)
        return 2
    limits = read_limits()
    if plan_args is not None:
        max_download = read_number(DOWNLOAD_LIMIT_VARIABLE, None, 1)
        cache_bound = read_number(*CACHE_LIMIT)
    if os.path.lexists(dest):
        print("safe_extract: %s already exists; give a fresh folder" % dest, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, terminate)
    done = False
    try:
        if plan_args is None:
            check_free_space(os.path.dirname(os.path.abspath(dest)), limits["maxBytes"])
            os.makedirs(dest, 0o755)
            files, total = extract(archive, dest, limits)
            summary = "extracted %d members, %d bytes" % (files, total)
        else:
            plan, cache, digest, _ = plan_args
            summary = materialize(plan, cache, digest, dest, limits, max_download, cache_bound)
        done = True
    except Refused as refused:
        print("refused: %s: %s" % (refused.code, refused), file=sys.stderr)
        return REFUSED
    except FetchFailed as failure:
        print("failed: %s" % failure, file=sys.stderr)
        return FETCH_FAILED
    except OSError as error:
        if error.errno == errno.ENOSPC:
            print("refused: disk-full: the builder's disk filled up during extraction", file=sys.stderr)
        elif plan_args is not None:
            traceback.print_exc()
            print("failed: the source could not be written (%s)" % error, file=sys.stderr)
            return 1
        else:
            print("refused: damaged: the archive is damaged or not a tar.gz (%s)" % error, file=sys.stderr)
        return REFUSED
    except (tarfile.TarError, EOFError, zlib.error) as error:
        print("refused: damaged: the archive is damaged or not a tar.gz (%s)" % error, file=sys.stderr)
        return REFUSED
    except Exception as error:  # a bug of ours: say so in one line (the traceback is for the log)
        traceback.print_exc()
        print("failed: the extractor stopped unexpectedly (%s)" % type(error).__name__, file=sys.stderr)
        return 1
    finally:
        if not done:
            shutil.rmtree(dest, ignore_errors=True)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
