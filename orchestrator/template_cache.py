"""Compiled template code kept on disk, so that a second `flows validate` or `simulate`
does not compile the same templates again.

Loading code from a file runs it, so the directory is a trust decision. It is
opened once, component by component from `/` without following a link
(`O_NOFOLLOW`), each directory checked on the descriptor just opened: a parent
must be this user's or root's and, unless sticky, writable by no one else
(someone who could write it could swap what lies below); the named directory
and the cache's own subdirectory in it (`SUBDIRECTORY`, made 0700) must be
this user's and writable by no one else. Missing directories are made 0700.
Anything else is refused (`UnsafeCacheDirError`). Every later operation is
relative to the subdirectory's descriptor, so swapping a directory after the
check changes nothing, and reads open files without following a link and
without blocking: an entry is read only if it is a regular file of this
user's, with no other link, writable by no one else.

The cache touches only names it makes, in its own subdirectory: entries named
by their key (a hash of everything the code depends on: `templates._code_key`)
and temporary files (`.tmp-` and 16 hex digits). An entry holds the key and a
hash of the code beside it, so a corrupt, truncated or foreign file is a miss,
never an error. Files are written to a temporary name and renamed, so
concurrent writers and readers never see half a file. The entries are bounded
(`max_bytes`): past it, the least recently used go, with temporary files left
over an hour (a writer that died).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import marshal
import os
import re
import secrets
import stat
import threading
import time
import types
from pathlib import Path

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SUBDIRECTORY",
    "DiskCode",
    "TemplateCacheError",
    "UnsafeCacheDirError",
    "default_directory",
]

# Every shipped template's code is about 20 KB: 64 MiB holds a few thousand.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# The cache's own directory inside the one named: the version is the format's.
SUBDIRECTORY = "template-code-1"
# What a file starts with: the format, then the key (hex) and the code's sha256.
_MAGIC = b"orchestrator-template-code/1\n"
_SUFFIX = ".code"
_ENTRY = re.compile(r"[0-9a-f]{64}\.code")
_TEMPORARY = re.compile(r"\.tmp-[0-9a-f]{16}")
# A temporary file this old was left by a writer that died.
_STALE_SECONDS = 3600
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# On the way down only a path is needed (Linux: a parent we may search but not list).
_WALK_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Never follow a link, never wait on a FIFO or a device.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class TemplateCacheError(Exception):
    """Compiled code cannot be kept on disk: the process carries on with memory only."""


class UnsafeCacheDirError(TemplateCacheError):
    """The cache directory cannot be trusted (or made): code is not read from it."""


def default_directory() -> Path:
    """`$XDG_CACHE_HOME/orchestrator/templates` (`~/.cache/...` when unset).

    Raises `RuntimeError` when the home directory cannot be found (as `Path.home`).
    """
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "orchestrator" / "templates"


def _enter(parent: int, name: str, shown: Path, flags: int = _WALK_FLAGS) -> int:
    """Open directory `name` in `parent` (made 0700 if missing) without following a link."""
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        return os.open(name, flags, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeCacheDirError(f"{shown}: not a directory (or a symlink)") from exc
        raise UnsafeCacheDirError(f"cannot make {shown} ({exc.strerror})") from exc


def _check_parent(fd: int, shown: Path) -> None:
    """Refuse a parent someone else could change what lies in (sticky: only their own)."""
    found = os.fstat(fd)
    if found.st_uid not in (os.getuid(), 0):
        raise UnsafeCacheDirError(f"parent {shown} owned by another user")
    if _others_may_write(found) and not found.st_mode & stat.S_ISVTX:
        raise UnsafeCacheDirError(
            f"parent {shown} writable by group or others (chmod go-w {shown})"
        )


def _check_own(fd: int) -> None:
    found = os.fstat(fd)
    if found.st_uid != os.getuid():
        raise UnsafeCacheDirError("owned by another user")
    if _others_may_write(found):
        raise UnsafeCacheDirError("writable by group or others")


def _others_may_write(found: os.stat_result) -> bool:
    """Whether anyone but this user may write it: by others' bit, or by a group of more.

    A user-private group (Debian's and Ubuntu's default, with umask 002) holds
    this user alone: its write bit lets no one else in.
    """
    if found.st_mode & stat.S_IWOTH:
        return True
    return bool(found.st_mode & stat.S_IWGRP) and not _private_group(found.st_gid)


def _private_group(gid: int) -> bool:
    """Whether `gid` is this user's own group: their primary one, named as they are,
    with no other member listed."""
    try:
        import grp
        import pwd

        user = pwd.getpwuid(os.getuid())
        group = grp.getgrgid(gid)
    except (ImportError, KeyError):
        return False
    return (
        gid == user.pw_gid and group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name}
    )


def _open_trusted(directory: Path) -> int:
    """A descriptor of `directory`/`SUBDIRECTORY`, every directory on the way checked.

    The parents are resolved first (`/home` may be a link), then walked from `/`
    without following a link: one that appears meanwhile is refused.
    """
    # `..` after a link means the link's parent, as the shell has it: not collapsed as text.
    named = Path(directory)
    if ".." in named.parts:
        named = Path(os.path.realpath(named.parent)) / named.name
    absolute = Path(os.path.abspath(named))
    if absolute.parent == absolute:
        raise UnsafeCacheDirError("the root directory")
    parents = Path(os.path.realpath(absolute.parent))
    fd = os.open("/", _WALK_FLAGS)
    try:
        walked = Path("/")
        for name in parents.parts[1:]:
            _check_parent(fd, walked)
            walked = walked / name
            fd, above = _enter(fd, name, walked), fd
            os.close(above)
        _check_parent(fd, walked)
        fd, above = _enter(fd, absolute.name, absolute), fd
        os.close(above)
        _check_own(fd)
        fd, above = _enter(fd, SUBDIRECTORY, absolute / SUBDIRECTORY, _DIRECTORY_FLAGS), fd
        os.close(above)
        _check_own(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


class DiskCode:
    """Code objects by key, one file each under a directory this user alone can write."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """Raises `UnsafeCacheDirError` when `directory` cannot be trusted."""
        # Never closed but with the object: a thread still using it keeps it (a number
        # closed and reused could name another directory).
        self._fd = _open_trusted(directory)
        self.directory = directory
        self.max_bytes = max_bytes
        self._uid = os.getuid()
        self._bytes: int | None = None  # what the entries weigh, counted at the first write
        self._lock = threading.Lock()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)  # None: __init__ refused the directory
        if fd is not None:
            os.close(fd)

    @property
    def entries(self) -> Path:
        """Where the entries are, as a path (for people: the cache itself never uses it)."""
        return self.directory / SUBDIRECTORY

    def _path(self, key: str) -> Path:
        return self.entries / f"{key}{_SUFFIX}"

    def load(self, key: str) -> types.CodeType | None:
        """The code stored under `key`; None when missing, foreign or damaged."""
        if not _ENTRY.fullmatch(f"{key}{_SUFFIX}"):
            return None
        try:
            handle = os.open(f"{key}{_SUFFIX}", _READ_FLAGS, dir_fd=self._fd)
        except OSError:
            return None
        with open(handle, "rb") as file:
            try:
                found = os.fstat(handle)
                if (
                    not stat.S_ISREG(found.st_mode)
                    or found.st_nlink > 1  # 0: replaced by a writer since opened, still whole
                    or found.st_uid != self._uid
                    or found.st_mode & _OTHERS_WRITE
                    or found.st_size > self.max_bytes
                ):
                    return None
                # Its size, not the bound: a read of n allocates n bytes first.
                data = file.read(found.st_size + 1)
            except OSError:
                return None
            code = _decode(key, data)
            if code is not None:
                with contextlib.suppress(OSError):  # recently used: kept longest
                    os.utime(handle)
        return code

    def store(self, key: str, code: types.CodeType) -> None:
        """Write `code` under `key` (atomically: a temporary file renamed); errors are ignored."""
        if not _ENTRY.fullmatch(f"{key}{_SUFFIX}"):
            return
        payload = marshal.dumps(code)
        data = b"".join(
            (_MAGIC, key.encode(), b"\n", hashlib.sha256(payload).hexdigest().encode(), b"\n")
        )
        data += payload
        temporary = f".tmp-{secrets.token_hex(8)}"
        try:
            handle = os.open(temporary, _WRITE_FLAGS, 0o600, dir_fd=self._fd)
        except OSError:
            return
        kept = False
        try:
            with open(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, f"{key}{_SUFFIX}", src_dir_fd=self._fd, dst_dir_fd=self._fd)
            kept = True
        except OSError:
            pass  # a full disk, say: a miss next time
        finally:
            if not kept:
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=self._fd)
        if kept:
            self._added(len(data))

    def _added(self, size: int) -> None:
        with self._lock:
            if self._bytes is None:
                self._bytes = sum(size for _, size, _ in self._files())
            else:
                self._bytes += size
            if self._bytes > self.max_bytes:
                self._prune()

    def _files(self) -> list[tuple[float, int, str]]:
        """(last used, size, name) of every entry; temporary files left by a writer that died
        count as used long ago."""
        found: list[tuple[float, int, str]] = []
        stale = time.time() - _STALE_SECONDS
        with contextlib.suppress(OSError), os.scandir(self._fd) as entries:
            for entry in entries:
                entry_kind = _ENTRY.fullmatch(entry.name)
                if not entry_kind and not _TEMPORARY.fullmatch(entry.name):
                    continue
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    if not stat.S_ISREG(info.st_mode):
                        continue
                    if entry_kind:
                        found.append((info.st_mtime, info.st_size, entry.name))
                    elif info.st_mtime < stale:
                        found.append((float("-inf"), info.st_size, entry.name))
        return found

    def _prune(self) -> None:
        """Remove the least recently used entries until three quarters of the bound is left."""
        files = sorted(self._files())
        total = sum(size for _, size, _ in files)
        for _, size, name in files:
            if total <= self.max_bytes * 3 // 4:
                break
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self._fd)
                total -= size
        self._bytes = total


def _decode(key: str, data: bytes) -> types.CodeType | None:
    """The code in an entry's bytes, if they are whole and are `key`'s."""
    header = _MAGIC + key.encode() + b"\n"
    digest_end = len(header) + 64
    if not data.startswith(header) or len(data) < digest_end + 1:
        return None
    payload = data[digest_end + 1 :]
    if data[len(header) : digest_end] != hashlib.sha256(payload).hexdigest().encode():
        return None
    try:
        code = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None
    return code if isinstance(code, types.CodeType) else None
