#!/usr/bin/env python3
"""Safely extract a gzip'd tar archive from an untrusted client.

Usage: safe_extract.py ARCHIVE DEST_DIR   (DEST_DIR must not exist yet)
       safe_extract.py --limits            (prints the limits in force, as JSON)
Limits (environment; the orchestration sets every one on every build from the app's settings,
src/core/extractLimits.ts, whose defaults these are):
  FASTBUILD_EXTRACT_MAX_BYTES       file bytes in all (default 2 GiB; the disk must have them free)
  FASTBUILD_EXTRACT_MAX_FILES       members (default 200000)
  FASTBUILD_EXTRACT_MAX_FILE_BYTES  bytes of one file (default 512 MiB)
  FASTBUILD_EXTRACT_MAX_PATH_BYTES  bytes of a member's path or a link's target (default 1024)
  FASTBUILD_EXTRACT_MAX_LINKS       symlinks + hardlinks (default 10000; 0 = none allowed)
  FASTBUILD_EXTRACT_MAX_LINK_DEPTH  symlinks followed to resolve one (default 40, Linux's own bound)
Exit codes: 0 extracted; 3 refused (the archive is unsafe or too big, or the disk too small:
`refused: <code>: <reason>` on stderr); 2 usage; 1 unexpected error (`failed: <reason>`). On every
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

import errno
import gzip
import json
import os
import posixpath
import shutil
import signal
import stat
import sys
import tarfile
import traceback
import zlib

REFUSED = 3
CHUNK = 1 << 20
# Our own archives' extension headers hold a path, a link target and an mtime: a few KB at most.
MAX_HEADER_BYTES = 64 << 10
# Extension headers before one member (pax, global pax, long name, long link): tarfile handles each
# by recursing into the next header, so an unbounded run of them is a RecursionError.
MAX_EXTENSION_HEADERS = 8

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


def check_free_space(folder, needed):
    info = os.statvfs(folder)
    free = info.f_bavail * info.f_frsize
    if free < needed:
        raise Refused(
            "disk-space",
            "the builder's work folder has %d bytes free, less than the extraction limit of %d: "
            "free space on the builder or lower FASTBUILD_EXTRACT_MAX_BYTES_FACTOR" % (free, needed),
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
        limits = self.limits
        # The declared size refuses early; the count below holds whatever the headers claim.
        if member.size > limits["maxFileBytes"]:
            raise Refused("file-too-large", self.too_large(rel))
        if self.bytes + member.size > limits["maxBytes"]:
            raise Refused("too-many-bytes", "archive holds more than %d bytes" % limits["maxBytes"])
        self.check_parents(rel)
        self.replace(rel, target)
        mode = 0o755 if member.mode & 0o111 else 0o644
        source = tar.extractfile(member)
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
                out.write(chunk)
        self.regular.add(rel)

    def too_large(self, rel):
        return "file %s is larger than %d bytes" % (show(rel), self.limits["maxFileBytes"])

    def add_symlink(self, link, rel, target):
        self.count_link()
        if "\x00" in link or link.startswith("/"):
            raise Refused("absolute-symlink", "symlink %s points to an absolute path %s" % (show(rel), show(link)))
        check_length(link, "symlink target", self.limits)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), link))
        if resolved == ".." or resolved.startswith("../"):
            raise Refused("symlink-escape", "symlink %s points outside the archive (%s)" % (show(rel), show(link)))
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


def terminate(_signum, _frame):
    # Run Command's timeout (or a cancel) ends the script: unwind so the folder is removed.
    sys.exit(143)


def main(argv):
    if argv[1:] == ["--limits"]:
        print(json.dumps(read_limits(), sort_keys=True))
        return 0
    if len(argv) != 3:
        print("usage: safe_extract.py ARCHIVE DEST_DIR", file=sys.stderr)
        return 2
    archive, dest = argv[1], argv[2]
    limits = read_limits()
    if os.path.lexists(dest):
        print("safe_extract: %s already exists; give a fresh folder" % dest, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, terminate)
    done = False
    try:
        check_free_space(os.path.dirname(os.path.abspath(dest)), limits["maxBytes"])
        os.makedirs(dest, 0o755)
        files, total = extract(archive, dest, limits)
        done = True
    except Refused as refused:
        print("refused: %s: %s" % (refused.code, refused), file=sys.stderr)
        return REFUSED
    except OSError as error:
        if error.errno == errno.ENOSPC:
            print("refused: disk-full: the builder's disk filled up during extraction", file=sys.stderr)
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
    print("extracted %d members, %d bytes" % (files, total))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
