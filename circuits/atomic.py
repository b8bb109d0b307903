"""Atomic file writes: a temporary file in the target's folder, flushed, then renamed over it.

A reader (or a crash, a full disk, an interrupt) sees the old file or the new one, never a
part. The temporary's name is short whatever the target's (a valid 255-byte name stays
writable) and it is removed on any error or interrupt. A symbolic link is written through:
its target is replaced and the link kept. An existing file keeps its permission bits.

A target that exists and is not a regular file (a FIFO, a device node such as /dev/null) is
written in place: renaming over it would replace the node with a regular file.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

TEMP_PREFIX = ".ncd-"
TEMP_SUFFIX = ".tmp"


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically; returns `path`. Creates
    missing folders. Raises OSError as the file system reports it."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if isinstance(data, str):
        data = data.encode("utf-8")
    if _is_special(path):
        _write_in_place(path, data)
        return path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    tmp = target.parent / f"{TEMP_PREFIX}{secrets.token_hex(6)}{TEMP_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:  # reported for the file asked for, not the temporary's name
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)
    return path


def _is_special(path: Path) -> bool:
    """Whether `path` (through links) exists and is neither a regular file nor a folder."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _write_in_place(path: Path, data: bytes) -> None:
    """Write all of `data` into an existing special file (blocks until a FIFO has a reader).
    Errors (ENOSPC, EPIPE, ...) are raised as OSError naming `path`."""
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _sync_folder(folder: Path) -> None:
    """Makes the rename itself durable where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
