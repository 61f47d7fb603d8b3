#!/usr/bin/env python3
"""Safely extract a gzip'd tar archive from an untrusted client.

Usage: safe_extract.py ARCHIVE DEST_DIR   (DEST_DIR must not exist yet)
Limits (environment): FASTBUILD_EXTRACT_MAX_BYTES (total uncompressed bytes, default 4 GiB),
FASTBUILD_EXTRACT_MAX_FILES (members, default 200000).
Exit codes: 0 extracted; 3 refused (the archive is unsafe or too big: message on stderr);
2 usage; 1 unexpected error. On any failure DEST_DIR is removed, so nothing half-extracted is
ever built.

Why our own checks rather than tarfile's filter="data": that filter exists only on Python >= 3.12
(and late patch releases), while the builder VM's python3 may be older; and it checks neither
limits (member count, total bytes, decompressed stream size) nor links created through earlier
symlinks. Here every member is checked while streaming, before any byte of it is written:
  * names: relative, no `..`, no NUL, no backslash tricks, not the archive root itself;
  * types: regular files, directories, symlinks and hardlinks only (no devices, fifos, sockets);
  * symlinks: the target must stay inside, checked lexically now and with realpath at the end
    (chains of in-tree links such as `a -> .` + `b -> a/..` are caught by the final check);
  * hardlinks: must name a regular file extracted earlier from this archive;
  * nothing is ever written through a symlink: every parent folder is checked with lstat;
  * the gzip stream itself is counted, so a bomb stops at the limit, not at the disk's end;
  * modes are reduced to rwx for the owner and r-x for others; no owners, no setuid; mtimes are
    NOT restored: the builder keeps cargo's target folder between builds and cargo decides
    freshness by mtime, so restored (e.g. zeroed, deterministic) mtimes could make cargo keep a
    stale binary.
"""

import gzip
import os
import posixpath
import shutil
import stat
import sys
import tarfile

REFUSED = 3
CHUNK = 1 << 20


class Refused(Exception):
    pass


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
                "archive expands beyond %d bytes (decompression bomb?)" % self.limit
            )
        return data


def env_int(name, default):
    value = os.environ.get(name, "")
    if value == "":
        return default
    if not value.isdigit() or int(value) <= 0:
        print("safe_extract: %s must be a positive integer" % name, file=sys.stderr)
        sys.exit(2)
    return int(value)


def clean_name(name):
    """The member name as a normalised relative POSIX path, or raise Refused."""
    if "\x00" in name:
        raise Refused("member name contains a NUL byte")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise Refused("absolute path %r" % name)
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise Refused("path traversal in %r" % name)
    return "/".join(parts)


# Folders already verified to be real folders. Safe to remember: a folder is never replaced
# (remove_existing refuses), so one checked once stays a folder. Saves an lstat per level per file.
known_dirs = set()


def check_parents(dest, rel):
    """Creates missing parent folders; refuses when any existing parent is not a real folder."""
    current = dest
    for part in rel.split("/")[:-1]:
        current = os.path.join(current, part)
        if current in known_dirs:
            continue
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            known_dirs.add(current)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise Refused("%r goes through a symlink or file (%s)" % (rel, part))
        known_dirs.add(current)


def remove_existing(path):
    """A later member replaces an earlier one of the same name, as tar does; never follows links."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise Refused("%r replaces a folder" % path)
    os.unlink(path)


def within(root, path):
    return path == root or path.startswith(root + os.sep)


def extract(archive, dest, max_bytes, max_files):
    with open(archive, "rb") as raw:
        magic = raw.read(2)
        if magic != b"\x1f\x8b":
            raise Refused("not a gzip'd tar archive")
        raw.seek(0)
        # Each member adds at most a 512-byte header and 511 bytes of padding to its data; the
        # end blocks add a little more. Anything beyond that is not file data: a bomb.
        slack = 1024 * max_files + (1 << 20)
        stream = CountingReader(gzip.GzipFile(fileobj=raw), max_bytes + slack)
        files = 0
        total = 0
        symlinks = []
        regular = set()
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                files += 1
                if files > max_files:
                    raise Refused("archive has more than %d members" % max_files)
                rel = clean_name(member.name)
                if rel == "":
                    if member.isdir():
                        continue
                    raise Refused("member %r names the archive root" % member.name)
                target = os.path.join(dest, rel)
                if member.isdir():
                    check_parents(dest, rel + "/x")
                    if not os.path.lexists(target):
                        os.mkdir(target, 0o755)
                    elif not os.path.isdir(target) or os.path.islink(target):
                        raise Refused("folder %r replaces a file or link" % rel)
                    continue
                if member.isreg():
                    total += member.size
                    if total > max_bytes:
                        raise Refused("archive holds more than %d bytes" % max_bytes)
                    check_parents(dest, rel)
                    remove_existing(target)
                    mode = 0o755 if member.mode & 0o111 else 0o644
                    source = tar.extractfile(member)
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
                    regular.add(rel)
                    continue
                if member.issym():
                    link = member.linkname
                    if "\x00" in link or link.startswith("/"):
                        raise Refused("symlink %r points to an absolute path %r" % (rel, link))
                    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), link))
                    if resolved == ".." or resolved.startswith("../"):
                        raise Refused("symlink %r points outside the archive (%r)" % (rel, link))
                    check_parents(dest, rel)
                    remove_existing(target)
                    os.symlink(link, target)
                    symlinks.append(rel)
                    continue
                if member.islnk():
                    linked = clean_name(member.linkname)
                    if linked not in regular:
                        raise Refused(
                            "hardlink %r must point to a file extracted earlier, not %r"
                            % (rel, member.linkname)
                        )
                    check_parents(dest, rel)
                    check_parents(dest, linked)
                    source = os.path.join(dest, linked)
                    if not stat.S_ISREG(os.lstat(source).st_mode):
                        raise Refused("hardlink %r points to a non-file" % rel)
                    remove_existing(target)
                    os.link(source, target, follow_symlinks=False)
                    continue
                kind = (
                    "device file" if member.ischr() or member.isblk()
                    else "fifo" if member.isfifo()
                    else "unsupported member type %r" % member.type
                )
                raise Refused("%s %r is not allowed" % (kind, rel))
        # Lexical checks cannot see through chains of links: resolve each one for real.
        root = os.path.realpath(dest)
        for rel in symlinks:
            real = os.path.realpath(os.path.join(dest, rel))
            if not within(root, real):
                raise Refused("symlink %r resolves outside the archive" % rel)
        return files, total


def main(argv):
    if len(argv) != 3:
        print("usage: safe_extract.py ARCHIVE DEST_DIR", file=sys.stderr)
        return 2
    archive, dest = argv[1], argv[2]
    max_bytes = env_int("FASTBUILD_EXTRACT_MAX_BYTES", 4 << 30)
    max_files = env_int("FASTBUILD_EXTRACT_MAX_FILES", 200000)
    if os.path.lexists(dest):
        print("safe_extract: %s already exists; give a fresh folder" % dest, file=sys.stderr)
        return 2
    os.makedirs(dest, 0o755)
    try:
        files, total = extract(archive, dest, max_bytes, max_files)
    except Refused as refused:
        shutil.rmtree(dest, ignore_errors=True)
        print("refused: %s" % refused, file=sys.stderr)
        return REFUSED
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as error:
        shutil.rmtree(dest, ignore_errors=True)
        print("refused: the archive is damaged or not a tar.gz (%s)" % error, file=sys.stderr)
        return REFUSED
    print("extracted %d members, %d bytes" % (files, total))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
