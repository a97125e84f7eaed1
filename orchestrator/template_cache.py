"""Compiled template code kept on disk, so that a second `flows validate` or `simulate`
does not compile the same templates again.

Loading code from a file runs it, so the directory is a trust decision, taken
as Jinja's `FileSystemBytecodeCache` takes it: the directory is made 0700,
and one that is not a directory, is a symlink, is owned by another user or is
writable by group or others is refused (`UnsafeCacheDir`); a file is read
only if this user owns it. What is written is named by its key (a hash of
everything the code depends on: `templates._code_key`) and holds the key and
a hash of the code beside it, so a corrupt, truncated or foreign file is a
miss, never an error. Files are written to a temporary name and renamed, so
concurrent writers and readers never see half a file. The directory is
bounded (`max_bytes`): past it, the least recently used files go.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import stat
import tempfile
import threading
import types
from pathlib import Path

__all__ = ["DEFAULT_MAX_BYTES", "DiskCode", "UnsafeCacheDirError", "default_directory"]

# Every shipped template's code is about 20 KB: 64 MiB holds a few thousand.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# What a file starts with: the format, then the key (hex) and the code's sha256.
_MAGIC = b"orchestrator-template-code/1\n"
_SUFFIX = ".code"


class UnsafeCacheDirError(Exception):
    """The cache directory cannot be trusted (or made): code is not read from it."""


def default_directory() -> Path:
    """`$XDG_CACHE_HOME/orchestrator/templates` (`~/.cache/...` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "orchestrator" / "templates"


def _trusted(directory: Path) -> None:
    """Make `directory` (0700) if missing; raise `UnsafeCacheDirError` if another could write it."""
    try:
        with contextlib.suppress(FileExistsError):  # a file there is refused below
            directory.mkdir(mode=0o700, parents=True)
        found = os.lstat(directory)
    except OSError as exc:
        raise UnsafeCacheDirError(f"cannot make it ({exc.strerror})") from exc
    if not stat.S_ISDIR(found.st_mode):
        raise UnsafeCacheDirError("not a directory (or a symlink)")
    if found.st_uid != os.getuid():
        raise UnsafeCacheDirError("owned by another user")
    if found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeCacheDirError("writable by group or others")


class DiskCode:
    """Code objects by key, one file each under a directory this user alone can write."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """Raises `UnsafeCacheDirError` when `directory` cannot be trusted."""
        _trusted(directory)
        self.directory = directory
        self.max_bytes = max_bytes
        self._uid = os.getuid()
        self._bytes: int | None = None  # what the directory holds, counted at the first write
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}{_SUFFIX}"

    def load(self, key: str) -> types.CodeType | None:
        """The code stored under `key`; None when missing, foreign or damaged."""
        path = self._path(key)
        try:
            with open(path, "rb") as file:
                if os.fstat(file.fileno()).st_uid != self._uid:
                    return None
                data = file.read()
        except OSError:
            return None
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
        if not isinstance(code, types.CodeType):
            return None
        with contextlib.suppress(OSError):  # recently used: kept longest
            os.utime(path)
        return code

    def store(self, key: str, code: types.CodeType) -> None:
        """Write `code` under `key` (atomically: a temporary file renamed); errors are ignored."""
        payload = marshal.dumps(code)
        data = b"".join(
            (_MAGIC, key.encode(), b"\n", hashlib.sha256(payload).hexdigest().encode(), b"\n")
        )
        data += payload
        temporary = None
        try:
            handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=self.directory)
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, self._path(key))
            temporary = None
        except OSError:
            return
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
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
        """(last used, size, path) of every file in the directory."""
        found = []
        with contextlib.suppress(OSError), os.scandir(self.directory) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode):
                        found.append((info.st_mtime, info.st_size, entry.path))
        return found

    def _prune(self) -> None:
        """Remove the least recently used files until three quarters of the bound is left."""
        files = sorted(self._files())
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= self.max_bytes * 3 // 4:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size
        self._bytes = total
